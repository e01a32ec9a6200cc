"""Linear interpolation between two models and its barrier (Frankle et al. 2020; Fort et al. 2020;
DESIGN.md section 4): ``L(t) = L((1 - t) theta_A + t theta_B)``.

The barrier ``max_{t in [0, 1]} L(t) - ((1 - t) L(0) + t L(1))`` is how far the path rises above
the chord between the end points: 0 when the two models are linearly connected (the max includes
the end points, where the difference is exactly 0, so the barrier is never negative), large when
a ridge separates them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

ParamDict = dict[str, torch.Tensor]

_ON_GRID = 1e-9  # how close a grid point must be to t = 0 or t = 1 to count as the end point


def path_direction(theta_a: ParamDict, theta_b: ParamDict) -> ParamDict:
    """``d = theta_B - theta_A``: the point ``theta_A + t d`` is the interpolation at ``t``."""
    missing = sorted(set(theta_a) ^ set(theta_b))
    if missing:
        raise ValueError(f"the two models have different parameters: {missing[:3]}")
    return {n: theta_b[n] - theta_a[n] for n in theta_a}


def check_end_points(ts: np.ndarray) -> tuple[int, int]:
    """Indices of ``t = 0`` and ``t = 1`` on the grid; an error if either is missing."""
    ts = np.asarray(ts, dtype=float)
    ends = []
    for target in (0.0, 1.0):
        index = int(np.argmin(np.abs(ts - target)))
        if abs(ts[index] - target) > _ON_GRID:
            raise ValueError(f"the t grid must contain t = {target:g} to measure a barrier; got t from {ts.min():g} to {ts.max():g} "
                             f"with {len(ts)} points (a span [0, 1], or [a, b] whose step divides both ends, works)")
        ends.append(index)
    return ends[0], ends[1]


def barrier(ts: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """``max_{t in [0, 1]} L(t) - ((1 - t) L(0) + t L(1))`` on the sampled grid, and where it is.

    Points outside [0, 1] are ignored (they show the curve, not the barrier). Returns the barrier,
    its ``t``, the end values and the largest raw value ``max L(t)`` on [0, 1].
    """
    ts, values = np.asarray(ts, dtype=float), np.asarray(values, dtype=float)
    if ts.shape != values.shape or ts.ndim != 1:
        raise ValueError(f"barrier needs one value per t, got shapes {ts.shape} and {values.shape}")
    start, end = check_end_points(ts)
    inside = (ts >= -_ON_GRID) & (ts <= 1 + _ON_GRID)
    t = np.clip(ts[inside], 0.0, 1.0)
    excess = values[inside] - ((1 - t) * values[start] + t * values[end])
    at = int(np.argmax(np.nan_to_num(excess, nan=-np.inf)))
    return {  # np.max propagates NaN: a diverged point on the path is reported, not skipped
        "barrier": float(np.max(excess)),
        "t": float(t[at]),
        "start": float(values[start]),
        "end": float(values[end]),
        "max": float(np.max(values[inside])),
    }


def barrier_within_error(ts: np.ndarray, values: np.ndarray, errors: np.ndarray, z: float = 1.96) -> dict[str, Any]:
    """:func:`barrier` with its standard error and whether it is distinguishable from none.

    The excess at the barrier's ``t`` combines three values, ``L(t) - (1-t) L(0) - t L(1)``; their
    errors are combined as if independent (conservative under common random numbers). The
    decision "there is a barrier" is within the error bars when the barrier is below ``z`` of them."""
    found = barrier(ts, values)
    ts, errors = np.asarray(ts, dtype=float), np.asarray(errors, dtype=float)
    start, end = check_end_points(ts)
    t = found["t"]
    at = int(np.argmin(np.abs(ts - t)))
    se = float(np.sqrt(errors[at] ** 2 + ((1 - t) * errors[start]) ** 2 + (t * errors[end]) ** 2))
    return {**found, "barrier_se": se, "within_error": bool(np.isfinite(se) and found["barrier"] <= z * se)}


def barriers(ts: np.ndarray, curves: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """Barrier of the loss and of the error (1 - accuracy) of every split of a scan's curves.

    ``curves`` holds ``{split}_loss`` and ``{split}_accuracy`` arrays (a :class:`ScanResult`'s values).
    """
    out = {}
    for key, values in curves.items():
        if key.endswith("_loss"):
            out[key] = barrier(ts, values)
        elif key.endswith("_accuracy"):
            out[key.removesuffix("_accuracy") + "_error"] = barrier(ts, 1.0 - np.asarray(values, dtype=float))
    return out
