"""Figures of mining: the loss traces of the runs, and the wine-bottle bottom in contour and 3D."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .landscape import _grid
from .style import STYLE, plt, save_figure


def plot_mining_traces(traces: list[dict[str, np.ndarray]], stem: str | Path, objective: str) -> list[Path]:
    """Mining loss against step (left) and the mean loss at the low targets (right), one line per run."""
    with plt.rc_context(STYLE):
        figure, (objective_axis, low_axis) = plt.subplots(1, 2, figsize=(8.0, 3.0))
        for run, trace in enumerate(traces):
            steps = np.arange(1, len(trace["objective"]) + 1)
            objective_axis.plot(steps, trace["objective"], linewidth=1, label=f"run {run}")
            low_axis.plot(steps, trace["low"], linewidth=1, label=f"run {run}")
        objective_axis.set(xlabel="step", ylabel="mining loss", title=f"{objective}: objective (mini-batch)")
        low_axis.set(xlabel="step", ylabel="mean loss", yscale="log", title="mean loss at the low targets")
        objective_axis.legend(fontsize=7)
        figure.tight_layout()
        return save_figure(figure, stem)


def plot_wine_bottle(result, radius: float, stem: str | Path, split: str = "train", title: str | None = None) -> list[Path]:
    """The mined plane on the disk of radius 1.25 ``radius``: log10 loss in contour (with the target
    ring) and 3D, side by side. The bump at theta is a factor of about two above the ring valley
    while the corners of the square grid are orders of magnitude higher: the disk and the log scale
    keep the bump and the ring visible."""
    x, y, z, label = _grid(result, split, True)
    z = np.where(np.hypot(x, y) <= 1.25 * radius, z, np.nan)
    phi = np.linspace(0, 2 * np.pi, 200)
    with plt.rc_context(STYLE):
        figure = plt.figure(figsize=(9.6, 4.0))
        contour_axis = figure.add_subplot(1, 2, 1)
        filled = contour_axis.contourf(x, y, z, levels=20, cmap="viridis")
        contour_axis.contour(x, y, z, levels=filled.levels, colors="white", linewidths=0.4, negative_linestyles="solid")
        figure.colorbar(filled, ax=contour_axis, label=label)
        contour_axis.plot(radius * np.cos(phi), radius * np.sin(phi), color="#D55E00", linestyle="--", linewidth=1,
                          label=f"target ring r = {radius:g}")
        contour_axis.plot(0, 0, marker="*", linestyle="none", color="red", markersize=9, label=r"$\theta$")
        contour_axis.set(xlabel=r"$\alpha$ (mined direction 1)", ylabel=r"$\beta$ (mined direction 2)", title="contour")
        contour_axis.set_aspect("equal", adjustable="box")
        contour_axis.grid(False)
        contour_axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=2, fontsize=8)
        surface_axis = figure.add_subplot(1, 2, 2, projection="3d")
        surface_axis.plot_surface(x, y, np.ma.masked_invalid(z), cmap="viridis", linewidth=0, antialiased=True,
                                  vmin=np.nanmin(z), vmax=np.nanmax(z))
        surface_axis.set(xlabel=r"$\alpha$", ylabel=r"$\beta$", zlabel=label, title="surface")
        surface_axis.view_init(elev=25, azim=-60)
        figure.suptitle(title or result.name)
        return save_figure(figure, stem)
