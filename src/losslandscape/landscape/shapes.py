"""The paper's taxonomy of 1D loss curves ``L(lambda)``, read precisely (DESIGN.md section 4).

A *basin* is a local minimum of the sampled curve whose prominence is at least the threshold
``p = prominence * (finite range)``; a *maximum* likewise. An extremum "is at 0" when its
``lambda`` lies within one grid step of 0 (the spacing of the grid interval(s) containing 0).
A basin also holds 0 when 0 lies on its *floor*: every loss from 0 to the basin's minimum is
within ``p`` of that minimum. A trained model sits on a wide, almost level floor whose lowest
sample, by a hair, may be several steps away; the paper's "the model lies on the basin" means
that, and without this rule such curves flip between v-basin and v-side with grid and noise.

Boundaries. ``scipy.signal.find_peaks`` never reports endpoints, so minima are searched on the
curve padded with a wall (a value above every finite loss) beyond each end. An endpoint is then a
basin exactly when the curve rises away from it by at least ``p`` before dropping below it again:
a monotone curve has one basin, at its low end. Such a *boundary basin* may be a minimum beyond the
span seen at its edge; a sampled curve cannot tell the two apart, so it counts like any basin
(it is what makes a monotone curve the "possibly at a boundary" case of ``v-side``, and lets a
scan that starts at ``lambda = 0`` have its basin there). Endpoints are never *maxima*: a curve
that starts at 0 and descends has 0 on a slope, not at a peak.

Non-finite losses (``+inf``, ``nan``, and ``-inf``, which no loss should produce) act as walls:
they are replaced by that same value above the finite maximum, so they can bound a basin but never
form one. The threshold and the flatness test use the finite values only.

Rules, in order:
1. fewer than 3 finite points -> ``other``;
2. ``flat``: every value finite and finite range < ``flat_tolerance * max(1, |mean|)``
   (relative for large losses, absolute near 0; a curve with walls is not flat);
3. loss at the grid point nearest 0 non-finite -> ``other``;
4. ``w-peak``: exactly two basins, one strictly on each side of 0, and the highest prominent
   maximum between them is at 0 (checked before the basin-at-0 rules, being the most specific);
5. a basin at 0: one basin -> ``v-basin``, two -> ``w-basin``, three or more -> ``vvv-basin``;
6. no basin and no maximum at 0, at most one basin -> ``v-side``;
7. anything else (two basins with 0 at neither, 0 at a maximum not between two basins) -> ``other``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import find_peaks

SHAPES = ("v-basin", "v-side", "w-basin", "w-peak", "vvv-basin", "flat", "other")

# Relative slack when comparing |lambda| with the grid step (float round-off on linspace grids).
_STEP_RTOL = 1e-9


@dataclass
class CurveShape:
    """The label of a 1D curve and the evidence for it (grid indices into the curve)."""

    label: str
    minima: list[int]
    maxima: list[int]
    center_index: int
    prominence: float
    reason: str

    uncertain: bool = False  # a prominence decision lies within the error bars (:func:`shape_within_error`)

    def to_dict(self) -> dict:
        """Plain JSON-serializable values."""
        return asdict(self)


def classify_curve(
    lambdas: np.ndarray,
    losses: np.ndarray,
    prominence: float = 0.05,
    flat_tolerance: float = 1e-6,
) -> CurveShape:
    """Label the curve ``losses[i] = L(lambdas[i])`` with one of :data:`SHAPES`.

    ``prominence`` is relative to the finite range of ``losses``; the absolute threshold used is
    stored in the result. See the module docstring for the rules, boundaries and non-finite values.
    """
    lam, y = _check_inputs(lambdas, losses, prominence, flat_tolerance)
    center = int(np.argmin(np.abs(lam)))
    finite = np.isfinite(y)

    def result(label, reason, minima=(), maxima=(), threshold=0.0):
        as_list = [int(i) for i in minima], [int(i) for i in maxima]
        return CurveShape(label, *as_list, center, float(threshold), reason)

    if finite.sum() < 3:
        return result("other", f"only {int(finite.sum())} finite points, need 3")
    low, high = float(y[finite].min()), float(y[finite].max())
    height = high - low
    threshold = prominence * height
    if finite.all() and height < flat_tolerance * max(1.0, abs(float(y.mean()))):
        return result("flat", f"range {height:.3g} below tolerance", threshold=threshold)
    if not finite[center]:
        reason = f"loss at lambda={lam[center]:.3g} (nearest 0) is not finite"
        return result("other", reason, threshold=threshold)

    # Non-finite losses become walls strictly above every finite loss.
    walled = np.where(finite, y, high + (height if height > 0 else 1.0))
    minima, maxima = _extrema(walled, threshold)
    label, reason = _apply_rules(lam, walled, minima, maxima, _step_at_zero(lam), threshold)
    return result(label, reason, minima, maxima, threshold)


def _check_inputs(lambdas, losses, prominence, flat_tolerance) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 copies; ValueError with the reason otherwise."""
    lam = np.asarray(lambdas, dtype=np.float64)
    y = np.asarray(losses, dtype=np.float64)
    if lam.ndim != 1 or y.ndim != 1:
        raise ValueError(f"lambdas and losses must be 1-D, got shapes {lam.shape} and {y.shape}")
    if lam.shape != y.shape:
        raise ValueError(f"lambdas and losses must have the same length, got {lam.size} and {y.size}")
    if lam.size < 2 or not np.all(np.isfinite(lam)) or not np.all(np.diff(lam) > 0):
        raise ValueError("lambdas must be finite and strictly increasing, with at least 2 points")
    if not lam[0] <= 0.0 <= lam[-1]:
        raise ValueError(
            f"lambda=0 must lie within the span [{lam[0]:.3g}, {lam[-1]:.3g}]: "
            "the shapes are relative to the model at 0"
        )
    if not 0.0 <= prominence <= 1.0:
        raise ValueError(f"prominence is a fraction of the curve's range in [0, 1], got {prominence}")
    if not flat_tolerance >= 0.0:
        raise ValueError(f"flat_tolerance must be >= 0, got {flat_tolerance}")
    return lam, y


def _extrema(walled: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the prominent minima (endpoints included, via the padding) and interior maxima."""
    wall = walled.max()
    # The pad is a wall beyond each end: an endpoint's prominence is then how far the curve rises
    # away from it on its one side, and the global minimum always has the full prominence.
    padded = np.concatenate([[wall], walled, [wall]])
    minima, _ = find_peaks(-padded, prominence=threshold)
    maxima, _ = find_peaks(walled, prominence=threshold)
    return minima - 1, maxima


def _step_at_zero(lam: np.ndarray) -> float:
    """The grid step near 0: the longest grid interval that contains 0 (two when 0 is a grid point)."""
    steps = np.diff(lam)
    touching = (lam[:-1] <= 0.0) & (lam[1:] >= 0.0)
    return float(steps[touching].max())


def _apply_rules(lam, walled, minima, maxima, step, threshold) -> tuple[str, str]:
    """Rules 4-7 of the module docstring: the label and a one-sentence reason."""
    def at_zero(i):
        return abs(lam[i]) <= step * (1 + _STEP_RTOL)

    def where(indices):
        return ", ".join(f"{lam[i]:.3g}" for i in indices)

    def on_floor(i):
        low, high = sorted((i, int(np.argmin(np.abs(lam)))))
        return walled[low : high + 1].max() <= walled[i] + threshold

    n = len(minima)
    zero_min = [i for i in minima if at_zero(i) or on_floor(i)]
    zero_max = [i for i in maxima if at_zero(i)]
    basins = f"{n} basin{'s' if n != 1 else ''} (lambda={where(minima)})"

    if n == 2 and lam[minima[0]] < 0.0 < lam[minima[1]]:
        between = [i for i in maxima if minima[0] < i < minima[1]]
        if between:
            top = max(between, key=lambda i: walled[i])
            if at_zero(top):
                between_at = f"the maximum between them at lambda={lam[top]:.3g}"
                return "w-peak", f"{basins}, one on each side of 0, and {between_at}"
    if zero_min:
        label = {1: "v-basin", 2: "w-basin"}.get(n, "vvv-basin")
        return label, f"{basins}, lambda=0 at the one at lambda={lam[zero_min[0]]:.3g}"
    if not zero_max and n <= 1:
        edge = " at the boundary" if n == 1 and minima[0] in (0, len(lam) - 1) else ""
        return "v-side", f"lambda=0 on a slope, {basins}{edge}"
    if zero_max:
        peak = f"lambda=0 at a maximum (lambda={where(zero_max)})"
        return "other", f"{peak} that is not between exactly two basins, {basins}"
    return "other", f"{basins}, lambda=0 at none of them"


def center_is_local_maximum(grid: np.ndarray) -> bool:
    """Theta (the middle of an odd grid) is above its 8 neighbours."""
    j, i = grid.shape[0] // 2, grid.shape[1] // 2
    neighbours = grid[j - 1 : j + 2, i - 1 : i + 2].copy()
    center = neighbours[1, 1]
    neighbours[1, 1] = -np.inf
    return bool(np.all(center > neighbours))


def shape_within_error(lambdas: np.ndarray, losses: np.ndarray, errors: np.ndarray, prominence: float = 0.05,
                       flat_tolerance: float = 1e-6, z: float = 1.96) -> CurveShape:
    """:func:`classify_curve`, marked ``uncertain`` when its label rests on a decision the error bars
    cannot make: an extremum whose prominence is within ``z`` standard errors of the threshold (it
    could be a basin or not), or a label that changes when the curve moves by ``z`` errors towards
    a flat curve. A prominence is the difference of two values: its error is ``sqrt(2)`` times
    theirs (the largest error on the curve, a conservative bound)."""
    shape = classify_curve(lambdas, losses, prominence, flat_tolerance)
    y, se = np.asarray(losses, dtype=np.float64), np.asarray(errors, dtype=np.float64)
    finite = np.isfinite(y) & np.isfinite(se)
    if finite.sum() < 3:
        return shape
    margin = z * np.sqrt(2.0) * float(se[finite].max())
    candidates = _all_prominences(np.where(np.isfinite(y), y, np.nanmax(y[np.isfinite(y)])))
    close = [p for p in candidates if abs(p - shape.prominence) <= margin]
    shrunk = classify_curve(lambdas, _towards_mean(y, se, z), prominence, flat_tolerance)
    if close or shrunk.label != shape.label:
        shape.uncertain = True
        why = f"{len(close)} extrema within {margin:.3g} of the prominence threshold" if close else \
            f"the curve moved {z:g} errors towards its mean is {shrunk.label}"
        shape.reason += f" (within the error bars: {why})"
    return shape


def _all_prominences(y: np.ndarray) -> list[float]:
    """Prominence of every local minimum (endpoints included, as in :func:`classify_curve`) and maximum."""
    wall = y.max() + 1.0
    padded = np.concatenate([[wall], y, [wall]])
    _, low = find_peaks(-padded, prominence=0)
    _, high = find_peaks(y, prominence=0)
    return [*low["prominences"], *high["prominences"]]


def _towards_mean(y: np.ndarray, se: np.ndarray, z: float) -> np.ndarray:
    """Every value moved by ``z`` of its errors towards the curve's mean (at most onto it): the flattest curve the errors allow."""
    mean = float(np.nanmean(y[np.isfinite(y)]))
    step = np.minimum(np.abs(y - mean), z * np.nan_to_num(se))
    return y - np.sign(y - mean) * step

