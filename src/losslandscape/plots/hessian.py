"""Figures of the Hessian: spectral density on a symmetric-log axis, and the Hessian lens."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .style import STYLE, plt, save_figure


def plot_spectral_density(grid: np.ndarray, density: np.ndarray, nodes: np.ndarray, stem: str | Path, context: str = "") -> list[Path]:
    """SLQ density of the eigenvalues; a symmetric-log x axis shows the bulk near 0 and the outliers.
    ``context`` (e.g. ``SmallCNN on digits, train loss``) heads the title."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(5.2, 3.2))
        axis.semilogy(grid, np.maximum(density, 1e-12), color="#0072B2")
        axis.set_xscale("symlog", linthresh=max(1e-3, 1e-3 * float(np.abs(nodes).max())))
        axis.set(xlabel="eigenvalue", ylabel="density", title="\n".join(filter(None, [context, "Hessian spectral density (SLQ)"])), ylim=(max(1e-8, density.max() * 1e-8), density.max() * 2))
        axis.axvline(0.0, color="0.5", linewidth=0.8)
        return save_figure(figure, stem)


def plot_hessian_lens(lens: dict, stem: str | Path, context: str = "") -> list[Path]:
    """Curvature d^T H d / ||d||^2 of every random direction against tr(H)/D, and against the curve fit;
    ``context`` (model, data, loss) as the figure's title."""
    curvatures = np.array([r["curvature"] for r in lens["directions"]])
    fitted = np.array([r["fitted_curvature"] for r in lens["directions"]])
    with plt.rc_context(STYLE):
        figure, (hist_axis, fit_axis) = plt.subplots(1, 2, figsize=(8.5, 3.2))
        hist_axis.hist(curvatures, bins=max(5, len(curvatures) // 3), color="#0072B2", alpha=0.8)
        if lens.get("trace_over_dim") is not None:
            hist_axis.axvline(lens["trace_over_dim"], color="#D55E00", label=r"tr$(H)/D$")
        hist_axis.axvline(0.0, color="0.3", linewidth=0.8)
        hist_axis.set(xlabel=r"$d^\top H d / \|d\|^2$", ylabel="directions",
                      title="\n".join(filter(None, [context, f"{100 * lens['positive_fraction']:.0f} % of random directions curve up"])))
        hist_axis.legend()
        low, high = float(min(curvatures.min(), fitted.min())), float(max(curvatures.max(), fitted.max()))
        fit_axis.plot([low, high], [low, high], color="0.5", linewidth=0.8, label="equal")
        fit_axis.scatter(curvatures, fitted, s=12, color="#0072B2", label="directions")
        fit_axis.set(xlabel=r"$d^\top H d / \|d\|^2$ (Hessian)", ylabel="fitted to the 1D curve", title="curvature at $\\lambda = 0$")
        fit_axis.legend()
        figure.tight_layout()
        return save_figure(figure, stem)
