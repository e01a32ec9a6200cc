"""The Hessian's spectral density by stochastic Lanczos quadrature (SLQ).

For a unit probe v, ``v^T f(H) v = sum_i f(lambda_i) (u_i . v)^2`` is an integral against the
probe's spectral measure; m Lanczos steps started at v give its m-point Gauss quadrature: the
nodes are the eigenvalues of T, the weights the squared first components of T's eigenvectors
(Golub & Meurant 1994), exact for polynomials f of degree <= 2m - 1. Averaging over random
probes estimates the density ``(1/D) sum_i delta(t - lambda_i)`` (Ubaru, Chen & Saad 2017,
"Fast estimation of tr(f(A)) via stochastic Lanczos quadrature"; Ghorbani, Krishnan & Xiao 2019,
"An investigation into neural net optimization via Hessian eigenvalue density").
The raw nodes and weights are the result; a smoothed density is only a view of them.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from ..progress import progress_bar
from .lanczos import LanczosProcess, ritz_pairs
from .operator import LinearOperator
from .trace import rademacher_probes


def slq(
    operator: LinearOperator,
    num_runs: int,
    lanczos_steps: int,
    seed: int = 0,
    return_probes: bool = False,
    progress: bool = False,
) -> dict:
    """``num_runs`` Lanczos runs of ``lanczos_steps`` (at most ``dim``) from normalized Rademacher probes.

    Returns ``nodes`` and ``weights``, float64 arrays (num_runs, steps), each run's weights summing
    to 1; ``num_products``; ``wall_time``; and the unit ``probes`` (num_runs, dim) when asked.
    """
    if int(num_runs) < 1 or int(lanczos_steps) < 1:
        raise ValueError(f"SLQ needs num_runs >= 1 and lanczos_steps >= 1, got {num_runs} and {lanczos_steps}")
    steps = min(int(lanczos_steps), operator.dim)
    started, products_before = time.perf_counter(), operator.num_products
    probes = rademacher_probes(operator.dim, int(num_runs), seed, operator.device) / operator.dim**0.5
    nodes, weights = np.empty((int(num_runs), steps)), np.empty((int(num_runs), steps))
    for run in progress_bar(range(int(num_runs)), desc="slq", disable=not progress, leave=False):
        nodes[run], weights[run] = _quadrature(operator, probes[run], steps, seed + run)
    result = {
        "method": "slq",
        "nodes": nodes,
        "weights": weights,
        "num_runs": int(num_runs),
        "lanczos_steps": steps,
        "num_products": operator.num_products - products_before,
        "wall_time": time.perf_counter() - started,
        "seed": seed,
    }
    if return_probes:
        result["probes"] = probes
    return result


def _quadrature(operator: LinearOperator, probe: torch.Tensor, steps: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss quadrature nodes and weights of the probe's spectral measure."""
    process = LanczosProcess(operator, start=probe, seed=seed)  # seed: only for restarts after breakdown
    process.extend(steps)
    nodes, vectors = ritz_pairs(*process.tridiagonal())
    return nodes, vectors[0] ** 2


def slq_moments(nodes: np.ndarray, weights: np.ndarray, order: int) -> np.ndarray:
    """Per-run ``sum_j w_j node_j^order``: estimates of ``v^T H^order v`` (so, on average, tr(H^order) / D)."""
    return (weights * nodes**order).sum(axis=1)


def spectral_density(
    nodes: np.ndarray,
    weights: np.ndarray,
    grid: np.ndarray,
    sigma: float | None = None,
    relative_sigma: float = 0.01,
) -> np.ndarray:
    """Gaussian-kernel density on ``grid``, averaged over runs: a probability density in t.

    ``sigma`` defaults to ``relative_sigma`` (1 %) times the range of the nodes (max - min), so the
    smoothing scales with the spectrum; neural-network spectra have a bulk near 0 and a few large
    outliers, so pass an absolute ``sigma`` to resolve the bulk. The density integrates to 1 over
    any grid that extends a few sigma beyond the extreme nodes (see :func:`density_grid`).
    """
    nodes, weights, grid = np.atleast_2d(nodes), np.atleast_2d(weights), np.asarray(grid, dtype=float)
    sigma = default_sigma(nodes, relative_sigma) if sigma is None else float(sigma)
    if not sigma > 0:
        raise ValueError(f"the kernel width sigma must be positive, got {sigma}")
    offsets = (grid[:, None, None] - nodes[None]) / sigma  # (grid, runs, steps)
    kernels = np.exp(-0.5 * offsets**2) / (sigma * np.sqrt(2 * np.pi))
    return (kernels * weights[None]).sum(axis=2).mean(axis=1)


def default_sigma(nodes: np.ndarray, relative_sigma: float = 0.01) -> float:
    """``relative_sigma`` times the spread of the nodes (or of their magnitude, when all coincide)."""
    spread = float(np.max(nodes) - np.min(nodes))
    return relative_sigma * (spread if spread > 0 else max(float(np.max(np.abs(nodes))), 1.0))


def density_grid(nodes: np.ndarray, sigma: float | None = None, num_points: int = 1000, padding: float = 5.0) -> np.ndarray:
    """Evenly spaced points from ``padding`` kernel widths below the smallest node to as far above the largest."""
    sigma = default_sigma(nodes) if sigma is None else float(sigma)
    return np.linspace(np.min(nodes) - padding * sigma, np.max(nodes) + padding * sigma, int(num_points))
