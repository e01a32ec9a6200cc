"""Curvature along a direction: from the Hessian, and fitted to a measured 1D loss curve.

Scaling (why the two numbers are compared the way they are): along a direction d,

    L(theta + lambda d) ~ L0 + lambda g.d + lambda^2 / 2 * d^T H d,

so the second derivative in lambda of the measured curve is ``d^T H d`` (:func:`hessian_quadratic_form`),
*not* divided by ||d||^2. :func:`directional_curvature` is the normalized ``d^T H d / ||d||^2``, a
Rayleigh quotient between H's smallest and largest eigenvalue, comparable across directions of
different size (a random direction sees about tr(H) / D). To compare with :func:`fitted_curvature`
multiply it back by ||d||^2 (over the same parameter subset).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from .operator import HessianOperator

ParamDict = dict[str, torch.Tensor]
HvpFn = Callable[[ParamDict], ParamDict]


def hessian_quadratic_form(operator_or_hvp: HessianOperator | HvpFn, direction: ParamDict) -> tuple[float, float]:
    """``(d^T H d, ||d||^2)`` in float64, over the operator's parameter subset (one product).

    With a :class:`HessianOperator`, entries of ``direction`` outside its subset are ignored (the
    curvature *within* the subset); a plain ``hvp`` function (dict -> dict) sees every entry.
    """
    if isinstance(operator_or_hvp, HessianOperator):
        vector = operator_or_hvp.flatten(direction)
        product = operator_or_hvp.matvec(vector).to(torch.float64)
        vector = vector.to(torch.float64)
        return float(vector @ product), float(vector @ vector)
    product = operator_or_hvp(direction)  # its keys are the subset the hvp differentiates
    pairs = [(direction[n].double(), product[n].double()) for n in product]
    return float(sum((d * h).sum() for d, h in pairs)), float(sum((d * d).sum() for d, _ in pairs))


def directional_curvature(operator_or_hvp: HessianOperator | HvpFn, direction: ParamDict) -> float:
    """``d^T H d / ||d||^2``: the Hessian's Rayleigh quotient along ``direction``."""
    form, squared_norm = hessian_quadratic_form(operator_or_hvp, direction)
    if squared_norm == 0:
        raise ValueError("directional curvature of a zero direction (on the operator's parameter subset) is undefined")
    return form / squared_norm


def fitted_curvature(lambdas, losses, window: float | None = None) -> float:
    """Second derivative at lambda = 0 of a least-squares quadratic through the curve's points with |lambda| <= window.

    Non-finite losses are left out. The result estimates ``d^T H d`` of the scanned direction (see
    the module docstring); on a grid symmetric about 0 the cubic term does not bias it, so the
    error shrinks like window^2.
    """
    lambdas, losses = np.asarray(lambdas, dtype=float), np.asarray(losses, dtype=float)
    if lambdas.shape != losses.shape:
        raise ValueError(f"lambdas {lambdas.shape} and losses {losses.shape} need the same shape")
    keep = np.isfinite(losses) & np.isfinite(lambdas)
    if window is not None:
        keep &= np.abs(lambdas) <= float(window) * (1 + 1e-12)  # grid points exactly at the window count
    if keep.sum() < 3:
        raise ValueError(f"a quadratic fit needs at least 3 finite points within the window, got {int(keep.sum())}")
    quadratic_coefficient = np.polyfit(lambdas[keep], losses[keep], 2)[0]
    return float(2 * quadratic_coefficient)


def hessian_lens(operator, evaluator, theta, direction_maker, context, settings, trace) -> dict:
    """Curvature of K random directions, d^T H d / ||d||^2, next to tr(H)/D and to the curvature
    fitted to each direction's measured 1D curve at 0 (the seed paper's Hessian explanation of v-basins)."""
    lambdas = np.linspace(-float(settings.window), float(settings.window), int(settings.points))
    rows = []
    start = time.perf_counter()
    for index in range(int(settings.directions)):
        d = direction_maker(context, index)
        subset = set(operator.names)  # outside the operator's parameters the direction is zero
        d = {n: v if n in subset else torch.zeros_like(v) for n, v in d.items()}
        curvature = directional_curvature(operator, {n: d[n] for n in operator.names})
        norm2 = float(sum((d[n].double() ** 2).sum() for n in operator.names))
        with torch.inference_mode():
            losses = evaluator.metrics_at(theta, [d], torch.from_numpy(lambdas)[:, None])[:, 0].double().cpu().numpy()
        rows.append({"curvature": curvature, "fitted_curvature": fitted_curvature(lambdas, losses) / norm2 if norm2 else float("nan")})
    curvatures = np.array([r["curvature"] for r in rows])
    return {
        "directions": rows,
        "positive_fraction": float((curvatures > 0).mean()),
        "mean_curvature": float(curvatures.mean()),
        "trace_over_dim": None if trace is None else trace / operator.dim,
        "window": float(settings.window),
        "wall_time": time.perf_counter() - start,
    }
