"""Figures of curve-shape statistics: every curve coloured by its label, and the label fractions."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .style import STYLE, plt, save_figure

SHAPE_COLORS = {  # Okabe-Ito: the five shapes stay apart with every common colour-vision deficiency
    "v-basin": "#0072B2", "v-side": "#E69F00", "w-basin": "#009E73", "w-peak": "#D55E00",
    "vvv-basin": "#CC79A7", "flat": "#999999", "other": "#000000",
}


def plot_shape_statistics(lambdas: np.ndarray, curves: np.ndarray, labels: list[str], fractions: dict[str, float],
                          stem: str | Path, title: str = "") -> list[Path]:
    with plt.rc_context(STYLE):
        figure, (curve_axis, bar_axis) = plt.subplots(1, 2, figsize=(8.5, 3.2), gridspec_kw={"width_ratios": [3, 2]})
        for curve, label in zip(curves, labels):
            curve_axis.plot(lambdas, np.where(np.isfinite(curve), curve, np.nan), color=SHAPE_COLORS[label], alpha=0.5, linewidth=0.8)
        curve_axis.set(xlabel=r"$\lambda$", ylabel="loss", title="curves, coloured by shape")
        names = list(fractions)
        bars = bar_axis.bar(range(len(names)), [100 * fractions[n] for n in names], color=[SHAPE_COLORS[n] for n in names])
        bar_axis.bar_label(bars, fmt="%.0f", fontsize=8)
        bar_axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
        bar_axis.set(ylabel="directions (%)", ylim=(0, 110), title="shape fractions")
        figure.suptitle(title)
        figure.tight_layout()
        return save_figure(figure, stem)
