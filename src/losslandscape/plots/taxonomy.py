"""Figures of the taxonomy (Yang et al. 2021): loss along the mode-connecting curve, and phase heat maps."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .style import STYLE, plt, save_figure

# Measures whose sign means something (a barrier below 0, a dip above): a diverging map centred at 0.
SIGNED = {"mode_connectivity", "linear_mode_connectivity"}

LABELS = {
    "test_accuracy": "test accuracy",
    "train_accuracy": "train accuracy",
    "test_loss": "test loss (nats)",
    "train_loss": "train loss (nats)",
    "generalization_gap": "train - test accuracy",
    "hessian_top_eigenvalue": r"Hessian top eigenvalue $\lambda_{max}$",
    "hessian_trace": "Hessian trace",
    "mode_connectivity": "mode connectivity mc (Bezier)",
    "linear_mode_connectivity": "mc of the linear path",
    "linear_barrier": "linear-path barrier (nats)",
    "cka": "CKA of penultimate features",
    "l2_distance": r"$\|\theta_A - \theta_B\|$",
    "relative_l2_distance": r"$\|\theta_A - \theta_B\| / \|\theta_A\|$",
}


def plot_mode_connectivity(curves: dict[str, dict], stem: str | Path, title: str = "") -> list[Path]:
    """Loss E(t) along the trained Bezier curve (solid) and the linear path (dashed) for every pair,
    with the endpoints' mean (dotted) and t* marked: mc is the signed gap between the two at t*."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(5.6, 3.6))
        for index, (name, c) in enumerate(curves.items()):
            color = f"C{index % 10}"
            axis.plot(c["t"], c["bezier"], color=color, label=f"{name}: Bezier curve (mc = {c['mc']:+.3g})")
            axis.plot(c["t"], c["linear"], color=color, linestyle="--", label=f"{name}: linear path")
            axis.axhline((c["bezier"][0] + c["bezier"][-1]) / 2, color=color, linestyle=":", linewidth=0.8)
            at = int(np.argmin(np.abs(np.asarray(c["t"]) - c["t_star"])))
            axis.plot([c["t_star"]], [c["bezier"][at]], marker="o", color=color)
        axis.set(xlabel="t (0: model A, 1: model B)", ylabel="loss E(t) (nats)", title=title or "mode connectivity")
        if any(np.nanmax(c["linear"]) > 20 * max(np.nanmax(c["bezier"]), 1e-12) for c in curves.values()):
            axis.set_yscale("log")  # a high linear barrier would flatten the curve
        axis.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)
        return save_figure(figure, stem)


def plot_phase(
    loads: Sequence, temperatures: Sequence, means: np.ndarray, counts: np.ndarray,
    measure: str, load_label: str, temperature_label: str, stem: str | Path,
) -> list[Path]:
    """One heat map: load on x, temperature on y, the mean over seeds in each cell (NaN: no job)."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(1.2 * len(loads) + 2.6, 0.8 * len(temperatures) + 1.8))
        _heat_map(axis, figure, loads, temperatures, means, counts, measure, load_label, temperature_label)
        return save_figure(figure, stem)


def plot_phase_grid(
    loads: Sequence, temperatures: Sequence, tables: dict[str, np.ndarray], counts: np.ndarray,
    load_label: str, temperature_label: str, stem: str | Path, title: str = "",
) -> list[Path]:
    """All measures' heat maps side by side (three per row): the phase diagram at a glance."""
    names = list(tables)
    columns = min(3, len(names))
    rows = -(-len(names) // columns)
    with plt.rc_context(STYLE):
        width, height = 1.1 * len(loads) + 2.4, 0.7 * len(temperatures) + 1.6
        figure, axes = plt.subplots(rows, columns, figsize=(columns * width, rows * height), squeeze=False)
        for axis, name in zip(axes.flat, names):
            _heat_map(axis, figure, loads, temperatures, tables[name], counts, name, load_label, temperature_label)
        for axis in list(axes.flat)[len(names):]:
            axis.set_visible(False)
        if title:
            figure.suptitle(title)
        figure.tight_layout(rect=(0, 0, 1, 0.97 if title else 1))
        return save_figure(figure, stem)


def _heat_map(axis, figure, loads, temperatures, means, counts, measure, load_label, temperature_label) -> None:
    means = np.asarray(means, dtype=float)
    finite = means[np.isfinite(means)]
    if measure in SIGNED and finite.size:
        bound = float(np.abs(finite).max()) or 1.0
        image = axis.imshow(means, origin="lower", cmap="RdBu", vmin=-bound, vmax=bound, aspect="auto")
    else:
        image = axis.imshow(means, origin="lower", cmap="viridis", aspect="auto")
    figure.colorbar(image, ax=axis, fraction=0.046, pad=0.04)
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    for row in range(means.shape[0]):
        for column in range(means.shape[1]):
            value = means[row, column]
            text = "no job" if counts[row, column] == 0 else f"{value:.3g}\nn={int(counts[row, column])}"
            if measure in SIGNED:  # dark at both ends of the diverging map
                dark = np.isfinite(value) and abs(value) > 0.6 * max(abs(low), abs(high))
            else:  # viridis is dark at the low end
                dark = np.isfinite(value) and value < low + 0.5 * (high - low)
            axis.text(column, row, text, ha="center", va="center", fontsize=7, color="white" if dark else "black")
    axis.set_xticks(range(len(loads)), [_tick(v) for v in loads])
    axis.set_yticks(range(len(temperatures)), [_tick(v) for v in temperatures])
    axis.grid(False)
    axis.set(xlabel=f"load: {load_label}", ylabel=f"temperature: {temperature_label}", title=LABELS.get(measure, measure))


def _tick(value) -> str:
    return f"{value:g}" if isinstance(value, (int, float)) else str(value)
