"""Figures of scans: 1D curves, 2D contours with labelled levels, 3D surfaces."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from matplotlib import patheffects

from .style import SPLIT_COLORS, STYLE, plt, save_figure


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


def plot_curves(
    results: Sequence, stem: str | Path, log_scale: bool = False, title: str | None = None, xlabel: str = r"$\lambda$",
    error_bands: bool = True,
) -> list[Path]:
    """Loss and its metric (accuracy, R^2, ...) against lambda; one colour per split, one line style per curve;
    with ``error_bands``, the 95 % interval of every value as a shaded band (where the files have errors)."""
    styles = ["-", "--", ":", "-."]
    metric = metric_name(results[0])
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(1, 2 if metric else 1, figsize=(8.0 if metric else 4.4, 3.2), squeeze=False)
        loss_axis, metric_axis = axes[0][0], (axes[0][1] if metric else None)
        scale = 100.0 if metric == "accuracy" else 1.0
        for index, result in enumerate(results):
            lam = result.axes["lambda"]
            for split in result.provenance.get("splits", ["train"]):
                label = f"{split}" if len(results) == 1 else f"{result.name} ({split})"
                style = dict(color=SPLIT_COLORS.get(split), linestyle=styles[index % len(styles)], label=label)
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
            loss_axis.set_yscale("log")
        for axis in axes[0]:
            axis.axvline(0.0, color="0.5", linewidth=0.8)
            axis.legend()
        figure.suptitle(title or ", ".join(r.name for r in results))
        figure.tight_layout()
        return save_figure(figure, stem)


def _grid(result, split: str, log_scale: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    x, y = np.meshgrid(result.axes["x"], result.axes["y"])
    z = _finite(result.values[f"{split}_loss"])
    if log_scale:
        return x, y, np.log10(np.where(z > 0, z, np.nan)), f"log10 {split} {loss_name(result)}"
    return x, y, z, f"{split} {loss_name(result)}"


def plot_contour(
    result, stem: str | Path, split: str = "train", levels: int = 20, log_scale: bool = False, path_xy: np.ndarray | None = None,
    axis_labels: tuple[str, str] = (r"$\alpha$ (direction 1)", r"$\beta$ (direction 2)"), equal_aspect: bool = True,
) -> list[Path]:
    """Filled contour with labelled level lines; theta marked at the origin, an optional trajectory path."""
    x, y, z, label = _grid(result, split, log_scale)
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(4.6, 4.0))
        filled = axis.contourf(x, y, z, levels=levels, cmap="viridis")
        lines = axis.contour(x, y, z, levels=filled.levels, colors="white", linewidths=0.5, negative_linestyles="solid")  # log10 levels < 0 are not "negative" losses
        axis.clabel(lines, lines.levels[::2], fmt="%.2f", fontsize=7)
        figure.colorbar(filled, ax=axis, label=label)
        if path_xy is not None:  # checkpoints in training order: the first is the initialization
            outline = [patheffects.withStroke(linewidth=2.6, foreground="black")]  # readable on light and dark levels
            axis.plot(path_xy[:, 0], path_xy[:, 1], marker="o", markersize=3, color="white", linewidth=1.2,
                      path_effects=outline, label="training path (saved epochs)")
            axis.plot(path_xy[:1, 0], path_xy[:1, 1], marker="s", markersize=6, linestyle="none", color="white",
                      markeredgecolor="black", label="initialization")
        axis.plot(0, 0, marker="*", linestyle="none", color="red", markersize=9, label=r"$\theta$")
        axis.set(xlabel=axis_labels[0], ylabel=axis_labels[1], title=f"{result.name}: {label}")
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
        axis.set(xlabel=axis_labels[0], ylabel=axis_labels[1], zlabel=label, title=f"{result.name}: {label}")
        axis.view_init(elev=30, azim=-60)
        return save_figure(figure, stem)


def plot_ring(result, stem: str | Path, split: str = "train", log_scale: bool = False) -> list[Path]:
    """Loss against the angle on every circle of a ring scan."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(5.0, 3.2))
        degrees = np.degrees(result.axes["phi"])
        for radius, row in zip(result.axes["radius"], result.values[f"{split}_loss"]):
            axis.plot(degrees, _finite(row), label=f"r = {radius:g}")
        axis.set(xlabel=r"angle $\varphi$ (degrees)", ylabel=f"{split} loss", title=f"{result.name}: loss on circles", xlim=(0, 360))
        if log_scale:
            axis.set_yscale("log")
        axis.legend()
        return save_figure(figure, stem)
