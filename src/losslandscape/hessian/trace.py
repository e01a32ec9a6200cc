"""Stochastic trace estimates of the Hessian, each with a standard error.

- Hutchinson (1989): ``tr(H) = E[z^T H z]`` for Rademacher z; the estimate is the sample mean and
  its standard error the sample standard deviation over sqrt(n).
- Hutch++ (Meyer, Musco, Musco & Woodruff 2021, "Hutch++: Optimal Stochastic Trace Estimation"):
  a third of the products sketch the dominant range (Q = orth(H S)), whose trace tr(Q^T H Q) is
  taken exactly with another third; Hutchinson with the last third estimates only the deflated
  remainder tr((I - QQ^T) H (I - QQ^T)). Hessians have a few large outlier eigenvalues, so the
  remainder's variance is much smaller than H's: O(1/m) error instead of O(1/sqrt(m)).

Quadratic forms are accumulated in float64 whatever the operator's dtype.
"""

from __future__ import annotations

import math
import time

import torch

from .operator import LinearOperator


def rademacher_probes(dim: int, count: int, seed: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """``(count, dim)`` float64 entries +-1, drawn on the CPU so that a seed means the same everywhere."""
    generator = torch.Generator().manual_seed(int(seed))
    signs = torch.randint(0, 2, (count, dim), generator=generator, dtype=torch.int8)
    return (2.0 * signs.to(torch.float64) - 1.0).to(device)


def hutchinson_trace(operator: LinearOperator, num_samples: int, seed: int = 0) -> dict:
    """Hutchinson's estimate of ``tr(H)`` from ``num_samples`` Rademacher probes (one product each)."""
    if int(num_samples) < 1:
        raise ValueError(f"Hutchinson needs at least one sample, got num_samples={num_samples}")
    started, products_before = time.perf_counter(), operator.num_products
    probes = rademacher_probes(operator.dim, int(num_samples), seed, operator.device)
    samples = _quadratic_forms(operator, probes)
    estimate, standard_error = _mean_and_standard_error(samples)
    return {
        "method": "hutchinson",
        "estimate": estimate,
        "standard_error": standard_error,
        "num_samples": int(num_samples),
        "num_products": operator.num_products - products_before,
        "wall_time": time.perf_counter() - started,
        "seed": seed,
    }


def hutchpp_trace(operator: LinearOperator, num_products: int, seed: int = 0) -> dict:
    """Hutch++ with ``num_products`` Hessian-vector products in all (at least 3).

    ``s = num_products // 3`` sketch probes (capped at ``dim``), ``s`` products for tr(Q^T H Q),
    and the remaining ``num_products - 2 s`` for Hutchinson on the deflated operator; the
    ``standard_error`` is that residual part's (the low-rank part is exact given Q).
    """
    if int(num_products) < 3:
        raise ValueError(f"Hutch++ needs at least 3 products (sketch, exact part, residual), got {num_products}")
    started, products_before = time.perf_counter(), operator.num_products
    sketch_size = min(int(num_products) // 3, operator.dim)
    num_residual = int(num_products) - 2 * sketch_size
    probes = rademacher_probes(operator.dim, sketch_size + num_residual, seed, operator.device)
    basis = _range_basis(operator, probes[:sketch_size])  # (rank, dim), orthonormal rows
    low_rank_trace = float(_quadratic_forms(operator, basis).sum())
    deflated = probes[sketch_size:] - (probes[sketch_size:] @ basis.T) @ basis
    residual_mean, residual_error = _mean_and_standard_error(_quadratic_forms(operator, deflated))
    return {
        "method": "hutch++",
        "estimate": low_rank_trace + residual_mean,
        "standard_error": residual_error,
        "low_rank_trace": low_rank_trace,
        "residual_estimate": residual_mean,
        "sketch_size": sketch_size,
        "num_residual_samples": num_residual,
        "num_products": operator.num_products - products_before,
        "wall_time": time.perf_counter() - started,
        "seed": seed,
    }


def _range_basis(operator: LinearOperator, sketch: torch.Tensor) -> torch.Tensor:
    """An orthonormal basis (rows) of the range of ``H S``: Q of its reduced QR decomposition."""
    images = torch.stack([operator.matvec(s).to(torch.float64) for s in sketch], dim=1)
    q, _ = torch.linalg.qr(images, mode="reduced")
    return q.T


def _quadratic_forms(operator: LinearOperator, vectors: torch.Tensor) -> torch.Tensor:
    """``v^T H v`` for each row v, in float64 (one product each)."""
    if len(vectors) == 0:
        return torch.zeros(0, dtype=torch.float64)
    return torch.stack([v @ operator.matvec(v).to(torch.float64) for v in vectors])


def _mean_and_standard_error(samples: torch.Tensor) -> tuple[float, float]:
    """Sample mean and its standard error (unbiased std / sqrt(n)); 0 samples give 0 +- 0, 1 gives NaN error."""
    n = len(samples)
    if n == 0:
        return 0.0, 0.0
    error = float(samples.std(correction=1)) / math.sqrt(n) if n > 1 else float("nan")
    return float(samples.mean()), error
