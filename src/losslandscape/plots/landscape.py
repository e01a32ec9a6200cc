"""Figures of scans: 1D curves, 2D contours with labelled levels, 3D surfaces."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import patheffects

from .style import OKABE_ITO, SPLIT_COLORS, STYLE, plt, save_figure, scan_context

SPLIT_STYLES = {"train": "-", "test": "--"}


def _finite(values: np.ndarray) -> np.ndarray:
    """Non-finite losses (far from the minimum) become gaps instead of breaking the axes."""
    return np.where(np.isfinite(values), values, np.nan)


def loss_name(result) -> str:
    """The measured loss as an axis says it ("cross-entropy loss", "mean squared error"), from the file."""
    return getattr(result, "provenance", {}).get("loss", {}).get("name", "cross-entropy loss")


def metric_name(result) -> str | None:
    """The loss's second number stored in the result (``accuracy``, ``r2``, ...), or None."""
    return getattr(result, "provenance", {}).get("loss", {}).get("metric", "accuracy")


def error_band(axis, x: np.ndarray, result, key: str, scale: float = 1.0, z: float = 1.96, **style) -> None:
    """The ``z`` standard-error band of ``result.values[key]`` (95 % by default), where the file has errors."""
    errors = getattr(result, "errors", {}).get(key)
    if errors is None or not np.isfinite(errors).any():
        return
    values = _finite(result.values[key])
    axis.fill_between(x, scale * (values - z * errors), scale * (values + z * errors), alpha=0.25, linewidth=0,
                      color=style.get("color"))


def curve_name(result) -> str:
    """A curve as a legend says it: ``mined00`` is ``mined run 0``, ``line3`` is ``direction 3``."""
    if match := re.fullmatch(r"mined(\d+)", result.name):
        return f"mined run {int(match[1])}"
    if match := re.fullmatch(r"[a-z_]+?(\d+)", result.name):
        return f"direction {int(match[1])}"
    return result.name.replace("_", " ")


def plot_curves(
    results: Sequence, stem: str | Path, log_scale: bool = False, title: str | None = None, xlabel: str = r"$\lambda$",
    error_bands: bool = True,
) -> list[Path]:
    """Loss and its metric (accuracy, R^2, ...) against lambda, titled by model, data and direction; with
    ``error_bands``, the 95 % interval of every value as a shaded band (where the files have errors).

    One curve: a colour per split. Several: a colour per curve and a line style per split (train
    solid, test dashed), told once in one legend beside the panels, not repeated in each."""
    metric = metric_name(results[0])
    splits = list(dict.fromkeys(s for r in results for s in r.provenance.get("splits", ["train"])))
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, 2 if metric else 1, figsize=(8.0 if metric else 4.4, 3.2), squeeze=False)
        loss_axis, metric_axis = axes[0][0], (axes[0][1] if metric else None)
        scale = 100.0 if metric == "accuracy" else 1.0
        for index, result in enumerate(results):
            lam = result.axes["lambda"]
            for split in result.provenance.get("splits", ["train"]):
                color = SPLIT_COLORS.get(split) if len(results) == 1 else OKABE_ITO[index % len(OKABE_ITO)]
                style = dict(color=color, linestyle=SPLIT_STYLES.get(split, ":"), linewidth=1.2)
                loss_axis.plot(lam, _finite(result.values[f"{split}_loss"]), **style)
                if error_bands:
                    error_band(loss_axis, lam, result, f"{split}_loss", **style)
                if metric_axis is not None:
                    metric_axis.plot(lam, scale * _finite(result.values[f"{split}_{metric}"]), **style)
                    if error_bands:
                        error_band(metric_axis, lam, result, f"{split}_{metric}", scale, **style)
        loss_axis.set(xlabel=xlabel, ylabel=loss_name(results[0]))
        if metric_axis is not None:
            metric_axis.set(xlabel=xlabel, ylabel="accuracy (%)" if metric == "accuracy" else metric.replace("r2", "$R^2$"))
        if log_scale:
            log_axis(loss_axis, [r.values[f"{s}_loss"] for r in results for s in r.provenance.get("splits", ["train"])])
        for axis in axes[0]:
            axis.axvline(0.0, color="0.5", linewidth=0.8)
        figure.suptitle(f"{scan_context(results[0])}\n{title}" if title else scan_context(results[0]), fontsize=STYLE["axes.titlesize"])
        _curve_legend(figure, axes[0][-1], results, splits)
        figure.tight_layout()
        return save_figure(figure, stem)


def log_axis(axis, curves: Sequence[np.ndarray]) -> None:
    """A log y axis; within less than a decade its ticks read as plain numbers (2.1, 2.2), not 2.1 x 10^0."""
    from matplotlib.ticker import FuncFormatter, NullFormatter

    axis.set_yscale("log")
    values = np.concatenate([np.ravel(c) for c in curves])
    values = values[np.isfinite(values) & (values > 0)]
    if values.size and values.max() / values.min() < 10:
        plain = FuncFormatter(lambda value, _: f"{value:.3g}")
        axis.yaxis.set_major_formatter(plain)
        axis.yaxis.set_minor_formatter(plain)
    else:
        axis.yaxis.set_minor_formatter(NullFormatter())


def _curve_legend(figure, axis, results: Sequence, splits: list[str]) -> None:
    """One legend: the splits (by colour for one curve, by line style for several) and the curves (by colour)."""
    from matplotlib.lines import Line2D

    if len(results) == 1:
        handles = [Line2D([], [], color=SPLIT_COLORS.get(s), linestyle=SPLIT_STYLES.get(s, ":"), label=s) for s in splits]
        axis.legend(handles=handles)
        return
    handles = [Line2D([], [], color="0.2", linestyle=SPLIT_STYLES.get(s, ":"), label=s) for s in splits]
    handles += [Line2D([], [], color=OKABE_ITO[i % len(OKABE_ITO)], label=curve_name(r)) for i, r in enumerate(results)]
    axis.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=8)


def _grid(result, split: str, log_scale: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    x, y = np.meshgrid(result.axes["x"], result.axes["y"])
    z = _finite(result.values[f"{split}_loss"])
    if log_scale:
        return x, y, np.log10(np.where(z > 0, z, np.nan)), f"log10 {split} {loss_name(result)}"
    return x, y, z, f"{split} {loss_name(result)}"


def spans_decades(z: np.ndarray, decades: float = 2.0) -> bool:
    """Whether the finite positive losses span more than ``decades`` orders of magnitude: then linear
    levels put the whole basin floor into the lowest level."""
    finite = z[np.isfinite(z) & (z > 0)]
    return finite.size > 1 and np.log10(finite.max() / finite.min()) > decades


def contour_levels(z: np.ndarray, levels, log_scale: bool):
    """``levels`` as given, or (a count, linear heights that span decades) that many log-spaced losses."""
    if log_scale or not isinstance(levels, (int, np.integer)) or not spans_decades(z):
        return levels, None
    from matplotlib.colors import LogNorm

    finite = z[np.isfinite(z) & (z > 0)]
    return np.geomspace(finite.min(), finite.max(), int(levels)), LogNorm(finite.min(), finite.max())


def plot_contour(
    result, stem: str | Path, split: str = "train", levels: int = 20, log_scale: bool = False, path_xy: np.ndarray | None = None,
    axis_labels: tuple[str, str] = (r"$\alpha$ (direction 1)", r"$\beta$ (direction 2)"), equal_aspect: bool = True,
) -> list[Path]:
    """Filled contour of the named loss with a few labelled level lines (log-spaced where the loss spans
    decades); theta marked at the origin, an optional trajectory path."""
    x, y, z, label = _grid(result, split, log_scale)
    levels, norm = contour_levels(z, levels, log_scale)
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(4.8, 4.3))
        filled = axis.contourf(x, y, z, levels=levels, cmap="viridis", norm=norm)
        lines = axis.contour(x, y, z, levels=filled.levels, colors="white", linewidths=0.5, negative_linestyles="solid", norm=norm)  # log10 levels < 0 are not "negative" losses
        labelled = lines.levels[:: max(1, len(lines.levels) // 5)]  # about five labels: more crowd the corners, where levels bunch up
        axis.clabel(lines, labelled, fmt="%.3g", fontsize=7, inline_spacing=3)
        bar = figure.colorbar(filled, ax=axis, label=label + (" (log-spaced levels)" if norm is not None else ""))
        if norm is not None:
            bar.ax.set_yscale("log")
        if path_xy is not None:  # checkpoints in training order: the first is the initialization
            outline = [patheffects.withStroke(linewidth=2.6, foreground="black")]  # readable on light and dark levels
            axis.plot(path_xy[:, 0], path_xy[:, 1], marker="o", markersize=3, color="white", linewidth=1.2,
                      path_effects=outline, label="training path (saved epochs)")
            axis.plot(path_xy[:1, 0], path_xy[:1, 1], marker="s", markersize=6, linestyle="none", color="white",
                      markeredgecolor="black", label="initialization")
        axis.plot(0, 0, marker="*", linestyle="none", color="#D55E00", markersize=9, label=r"$\theta$")
        axis.set(xlabel=axis_labels[0], ylabel=axis_labels[1], title=f"{scan_context(result)}\n{label}")
        axis.title.set_fontsize(STYLE["axes.labelsize"])
        if equal_aspect:  # both directions in the same units: keep distances comparable
            axis.set_aspect("equal", adjustable="box")
        axis.grid(False)
        axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8)  # below the axes: never hides the path
        return save_figure(figure, stem)


def plot_surface(result, stem: str | Path, split: str = "train", log_scale: bool = False,
                 axis_labels: tuple[str, str] = (r"$\alpha$", r"$\beta$")) -> list[Path]:
    """3D surface of the loss over the plane."""
    x, y, z, label = _grid(result, split, log_scale)
    with plt.rc_context(STYLE):
        figure = plt.figure(figsize=(5.2, 4.2))
        axis = figure.add_subplot(projection="3d")
        axis.plot_surface(x, y, np.ma.masked_invalid(z), cmap="viridis", linewidth=0, antialiased=True)
        axis.set(xlabel=axis_labels[0], ylabel=axis_labels[1], zlabel=label, title=f"{scan_context(result)}\n{label}")
        axis.title.set_fontsize(STYLE["axes.labelsize"])
        axis.view_init(elev=30, azim=-60)
        return save_figure(figure, stem)


def plot_ring(result, stem: str | Path, split: str = "train", log_scale: bool = False) -> list[Path]:
    """Loss against the angle on every circle of a ring scan."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(5.0, 3.2))
        degrees = np.degrees(result.axes["phi"])
        for radius, row in zip(result.axes["radius"], result.values[f"{split}_loss"]):
            axis.plot(degrees, _finite(row), label=f"r = {radius:g}")
        axis.set(xlabel=r"angle $\varphi$ (degrees)", ylabel=f"{split} {loss_name(result)}", xlim=(0, 360),
                 title=f"{scan_context(result)}\n{split} loss on circles around " + r"$\theta$")
        axis.title.set_fontsize(STYLE["axes.labelsize"])
        if log_scale:
            log_axis(axis, [result.values[f"{split}_loss"]])
        axis.legend()
        return save_figure(figure, stem)
