"""Figures of valley asymmetry (against the sign-consistency ratio r), of linear interpolation
between models, and of the spawning barrier against the spawn epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .style import OKABE_ITO, SPLIT_COLORS, STYLE, plt, save_figure

DISTRIBUTION_COLORS = {"gaussian": OKABE_ITO[0], "uniform": OKABE_ITO[2], "rademacher": OKABE_ITO[5]}
SPLIT_STYLES = {"train": "-", "test": "--"}


def _finite(values) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


def plot_asymmetry(ratios: list[float], table: dict[str, dict[str, dict[str, list[float]]]], split: str,
                   directions: int, stem: str | Path, context: str = "") -> list[Path]:
    """Asymmetry (mean over lambda > 0 minus mean over lambda < 0) of the loss and of the error against r:
    one line per noise distribution, error bars = standard deviation over the K directions."""
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, 2, figsize=(8.5, 3.3))
        for axis, metric, unit in ((axes[0], "loss", "loss"), (axes[1], "error", "error (percentage points)")):
            scale = 100.0 if metric == "error" else 1.0
            for distribution, rows in table.items():
                stats = rows[f"{split}_{metric}"]
                axis.errorbar(ratios, scale * _finite(stats["mean"]), yerr=scale * _finite(stats["std"]), marker="o", capsize=3,
                              color=DISTRIBUTION_COLORS.get(distribution), label=distribution)
            axis.axhline(0.0, color="0.4", linewidth=0.8)
            axis.set(xlabel="sign-consistency ratio r", ylabel=f"asymmetry of the {unit}",
                     title=f"{split} {metric}: mean(" + r"$\lambda>0$" + ") - mean(" + r"$\lambda<0$" + ")")
            axis.legend(title=f"noise (K = {directions})")
        if context:
            figure.suptitle(f"Asymmetric valleys: {context}")
        figure.tight_layout()
        return save_figure(figure, stem)


def plot_valley_curves(lambdas: np.ndarray, curves: dict[str, dict[float, np.ndarray]], split: str, stem: str | Path,
                       context: str = "") -> list[Path]:
    """Example curves: for each distribution, the loss along its first direction at every ratio r."""
    distributions = list(curves)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, len(distributions), figsize=(3.2 * len(distributions) + 0.6, 3.2), squeeze=False, sharey=True)
        for axis, distribution in zip(axes[0], distributions):
            ratios = sorted(curves[distribution])
            colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(ratios)))
            for color, ratio in zip(colors, ratios):
                axis.plot(lambdas, _finite(curves[distribution][ratio]), color=color, label=f"r = {ratio:g}")
            axis.axvline(0.0, color="0.5", linewidth=0.8)
            axis.set(xlabel=r"$\lambda$ (> 0: sign-consistent side)", title=f"{distribution} noise, direction 0")
        axes[0][0].set_ylabel(f"{split} loss")
        axes[0][-1].legend()
        if context:
            figure.suptitle(f"Sign-consistent noise of ratio r: {context}")
        figure.tight_layout()
        return save_figure(figure, stem)


def plot_interpolation(ts: np.ndarray, pairs: dict[str, dict[str, np.ndarray]], stem: str | Path, title: str = "",
                       ends: dict[str, tuple[str, str]] | None = None) -> list[Path]:
    """Loss and error along ``(1 - t) theta_A + t theta_B`` for every pair: a colour per pair, train solid,
    test dashed; the legend says what each pair's A and B are (``ends``: ``{name: (model A, model B)}``)."""
    from matplotlib.lines import Line2D

    ends = ends or {}
    with plt.rc_context(STYLE):
        figure, (loss_axis, error_axis) = plt.subplots(1, 2, figsize=(9.6, 3.4))
        splits = []
        for index, (name, values) in enumerate(pairs.items()):
            color = OKABE_ITO[index % len(OKABE_ITO)]
            for key, curve in values.items():
                split, metric = key.rsplit("_", 1)
                splits += [split] if split not in splits else []
                style = dict(linestyle=SPLIT_STYLES.get(split, ":"), color=color)
                if metric == "loss":
                    loss_axis.plot(ts, _finite(curve), **style)
                elif metric == "accuracy":
                    error_axis.plot(ts, 100 * (1 - _finite(curve)), **style)
        for axis, ylabel in ((loss_axis, "loss"), (error_axis, "error (%)")):
            for end in (0.0, 1.0):
                axis.axvline(end, color="0.6", linewidth=0.8)
            axis.set(xlabel="t  (0 = model A, 1 = model B)", ylabel=ylabel)
        handles = [Line2D([], [], color="0.2", linestyle=SPLIT_STYLES.get(s, ":"), label=s) for s in splits]
        handles += [Line2D([], [], color=OKABE_ITO[i % len(OKABE_ITO)],
                           label=name.replace("_", " ") + (f": A = {ends[name][0]}, B = {ends[name][1]}" if name in ends else ""))
                    for i, name in enumerate(pairs)]
        error_axis.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)
        figure.suptitle(title)
        figure.tight_layout()
        return save_figure(figure, stem)


def plot_spawning_barrier(epochs: list[int], barriers: dict[str, list[float]], stem: str | Path, total_epochs: int) -> list[Path]:
    """Interpolation barrier between two children against the epoch they were spawned at (Fort et al. 2020)."""
    with plt.rc_context(STYLE):
        figure, (loss_axis, error_axis) = plt.subplots(1, 2, figsize=(8.5, 3.3))
        for key, values in barriers.items():
            split, metric = key.rsplit("_", 1)
            axis, scale = (loss_axis, 1.0) if metric == "loss" else (error_axis, 100.0)
            axis.plot(epochs, scale * _finite(values), marker="o", linestyle=SPLIT_STYLES.get(split, ":"),
                      color=SPLIT_COLORS.get(split), label=split)
        for axis, ylabel in ((loss_axis, "loss barrier"), (error_axis, "error barrier (percentage points)")):
            axis.axhline(0.0, color="0.4", linewidth=0.8)
            axis.set(xlabel=f"spawn epoch s (of {total_epochs})", ylabel=ylabel)
            axis.legend()
        figure.suptitle("barrier between two children spawned at epoch s")
        figure.tight_layout()
        return save_figure(figure, stem)


def plot_spawning_curves(ts: np.ndarray, curves: dict[int, np.ndarray], split: str, stem: str | Path) -> list[Path]:
    """The loss along the line between the two children, one curve per spawn epoch."""
    epochs = sorted(curves)
    colors = plt.cm.viridis(np.linspace(0.0, 0.9, len(epochs)))
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(5.2, 3.3))
        for color, epoch in zip(colors, epochs):
            axis.plot(ts, _finite(curves[epoch]), color=color, label=f"s = {epoch}")
        axis.set(xlabel="t  (0 = child 1, 1 = child 2)", ylabel=f"{split} loss", title="interpolation between the children")
        axis.legend()
        return save_figure(figure, stem)
