"""What a mined direction should look like: targets on the loss at chosen points of its line or plane.

Every objective is a list of :class:`Target` s, ``(coordinates, low | high, weight)``. A ``low``
target adds ``weight * L(theta + sum_i c_i d_i)`` to the mining loss (a basin there); a ``high``
target adds ``-weight * min(L(...), cap)`` (a barrier there, capped so the optimizer cannot win by
blowing the loss up at one point instead of shaping the curve). The presets are the shapes that
the seed paper says cannot be found by intuition (DESIGN.md section 4, mining):

- :class:`WPeak`: basins at ``lambda = +-a`` and a loss falling towards them, hence theta on the peak between;
- :class:`VVVBasin`: basins at ``+-a`` and barriers at ``+-a/2``: three basins with theta in the middle one;
- :class:`Template`: any list of targets, from the command line or a yaml file;
- :class:`Ring`: two directions with low loss on the circle of radius ``a`` in every angle (angles
  drawn afresh each step), so theta is a bump inside a ring valley: the wine-bottle bottom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

KINDS = ("low", "high")


@dataclass(frozen=True)
class Target:
    """A wish on the loss at ``theta + sum_i coordinates[i] * d_i``."""

    coordinates: tuple[float, ...]
    kind: str
    weight: float = 1.0


def parse_targets(spec: Any) -> list[Target]:
    """Targets of a 1D template from ``[[lambda, low|high, weight], ...]`` (weight optional) or
    ``"lambda:kind[:weight],..."``; one clear error for anything else."""
    if isinstance(spec, str):
        spec = [item.split(":") for item in spec.split(",") if item.strip()]
    if not isinstance(spec, Sequence) or isinstance(spec, (str, bytes)) or len(spec) == 0:
        raise ValueError(f"template targets must be a non-empty list of [lambda, low|high, weight], got {spec!r}")
    targets = []
    for item in spec:
        if isinstance(item, str):
            item = item.split(":")
        if isinstance(item, dict):
            fields = [item.get("lambda"), item.get("kind"), item.get("weight", 1.0)]
        elif not isinstance(item, Sequence):
            raise ValueError(f"template target {item!r} must be a list [lambda, low|high, weight] or a 'lambda:kind:weight' string")
        else:
            fields = list(item)
        if len(fields) not in (2, 3):
            raise ValueError(f"template target {item!r} needs 2 or 3 fields: lambda, low|high[, weight]")
        lam, kind, weight = (*fields, 1.0)[:3]
        try:
            lam, weight = float(lam), float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"template target {item!r}: lambda and weight must be numbers") from None
        kind = str(kind).strip()
        if kind not in KINDS:
            raise ValueError(f"template target {item!r}: kind must be low or high, got {kind!r}")
        if not (math.isfinite(lam) and math.isfinite(weight) and weight > 0):
            raise ValueError(f"template target {item!r}: lambda must be finite and weight a positive number")
        if lam == 0.0:
            raise ValueError(f"template target {item!r}: lambda = 0 is theta itself, which a direction cannot move")
        targets.append(Target((lam,), kind, weight))
    if not any(t.kind == "low" for t in targets):
        raise ValueError("a template needs at least one low target: with barriers alone the best direction is any steep one")
    return targets


class LineObjective:
    """Fixed targets along one direction; ``span`` is where the mined curve is scanned afterwards."""

    num_directions = 1
    target_label: str | None = None

    def __init__(self, targets: list[Target], cap: float = 1.0, scan_margin: float = 1.5):
        if not cap > 0:
            raise ValueError(f"the barrier cap must be a positive loss value, got {cap}")
        if not scan_margin >= 1.0:
            raise ValueError(f"scan_margin must be at least 1 (the scan must reach the targets), got {scan_margin}")
        self._targets, self.cap, self.scan_margin = targets, float(cap), float(scan_margin)

    def targets(self, generator: torch.Generator) -> list[Target]:
        return self._targets

    @property
    def reach(self) -> float:
        return max(abs(t.coordinates[0]) for t in self._targets)

    @property
    def span(self) -> tuple[float, float]:
        return (-self.scan_margin * self.reach, self.scan_margin * self.reach)

    def describe(self) -> dict[str, Any]:
        return {"type": type(self).__name__, "targets": [[t.coordinates[0], t.kind, t.weight] for t in self._targets],
                "cap": self.cap, "target_label": self.target_label, "level": getattr(self, "level", 0.0)}


class WPeak(LineObjective):
    """Basins at ``+-a`` and theta the peak between them.

    DESIGN.md's objective ``1/2 [L(theta + a d) + L(theta - a d)] - L(theta)`` alone finds the two
    basins but leaves theta where it was trained: at the bottom of a tiny basin of its own (positive
    curvature along d) or on a tilted floor, with the curve's maximum a few grid steps beside 0
    (label ``other``; 0 of 2 runs were w-peaks in our first measurement). Three additions make theta
    the peak, each a term of the same mining loss (see :func:`peak_targets`):

    - ``inner``: low targets at ``+-f a`` (total weight 0.5 shared equally, the basins at ``+-a`` get
      the other 0.5), so the loss falls all the way from theta to the basins;
    - ``peak``: the weight of low targets at ``+-peak_step * a``; with ``L(theta)`` constant this is
      the finite-difference curvature at 0, ``L(hd) + L(-hd) - 2 L(theta) ~ h^2 d^T H d``, pushed negative;
    - ``level``: the weight of the squared cosine between ``d`` and the gradient at theta, so the
      curve leaves theta level and its maximum is at 0, not beside it.
    """

    target_label = "w-peak"

    def __init__(self, a: float = 0.5, inner: Sequence[float] = (0.25, 0.5), peak: float = 50.0, peak_step: float = 0.1,
                 level: float = 10.0, cap: float = 1.0, scan_margin: float = 1.5):
        _check_radius(a)
        self.level = _check_peak_settings(inner, peak, peak_step, level)
        super().__init__(peak_targets([(1.0,), (-1.0,)], a, inner, peak, peak_step), cap, scan_margin)


def peak_targets(units: list[tuple[float, ...]], a: float, inner: Sequence[float], peak: float, peak_step: float) -> list[Target]:
    """Low targets along each unit vector (a line's two signs, a ring's sampled angles): at distance
    ``a`` (total weight 0.5, or 1 without ``inner``), at ``f a`` for each inner fraction (total 0.5),
    and at ``peak_step * a`` with weight ``peak`` per pair of opposite points (the curvature at 0)."""
    share = 1.0 / len(units)
    scaled = lambda u, r: tuple(r * c for c in u)  # noqa: E731
    targets = [Target(scaled(u, a), "low", share * (0.5 if inner else 1.0)) for u in units]
    targets += [Target(scaled(u, f * a), "low", share * 0.5 / len(inner)) for f in inner for u in units]
    if peak > 0:
        targets += [Target(scaled(u, peak_step * a), "low", 2 * share * float(peak)) for u in units]
    return targets


def _check_peak_settings(inner, peak, peak_step, level) -> float:
    if any(not 0 < float(f) < 1 for f in inner) or not 0 < float(peak_step) < 1:
        raise ValueError(f"inner fractions and peak_step must lie in (0, 1), got inner={list(inner)}, peak_step={peak_step}")
    if not (float(level) >= 0 and float(peak) >= 0):
        raise ValueError(f"the weights level and peak must be >= 0, got level={level}, peak={peak}")
    return float(level)


class VVVBasin(LineObjective):
    """Basins at ``+-a`` and barriers at ``+-a/2``: theta in the middle one of three basins."""

    target_label = "vvv-basin"

    def __init__(self, a: float = 1.0, barrier_weight: float = 0.5, cap: float = 1.0, scan_margin: float = 1.25):
        _check_radius(a)
        low = [Target((-a,), "low", 0.5), Target((a,), "low", 0.5)]
        high = [Target((-a / 2,), "high", barrier_weight / 2), Target((a / 2,), "high", barrier_weight / 2)]
        super().__init__(low + high, cap, scan_margin)


class Template(LineObjective):
    """Any targets; ``label`` is the curve shape counted as success (null: none, report the label only)."""

    def __init__(self, targets: Any, label: str | None = None, cap: float = 1.0, scan_margin: float = 1.5):
        super().__init__(parse_targets(targets), cap, scan_margin)
        from ..landscape.shapes import SHAPES

        if label is not None and label not in SHAPES:
            raise ValueError(f"template label {label!r} is not a curve shape: expected one of {', '.join(SHAPES)} or null")
        self.target_label = label


class Ring:
    """Two directions with low loss on the circle of radius ``a`` in every angle (``angles`` random
    diameters per step) and theta a peak on every line through it: a bump inside a ring valley, the
    wine-bottle bottom. ``inner``, ``peak`` and ``level`` act on every sampled line as in :class:`WPeak`
    (without them the ring forms but theta keeps its own small basin, measured: 0 of 12 lines w-peak).

    ``orthogonality`` weighs the squared cosine between the two directions, which keeps the
    plane two-dimensional while both stay on their normalization constraint.
    """

    num_directions = 2
    target_label = "wine-bottle"

    def __init__(self, a: float = 0.5, angles: int = 2, inner: Sequence[float] = (0.25, 0.5), peak: float = 50.0,
                 peak_step: float = 0.1, level: float = 10.0, orthogonality: float = 1.0, cap: float = 1.0, scan_margin: float = 1.5):
        _check_radius(a)
        if int(angles) < 2:
            raise ValueError(f"ring mining needs at least 2 angles per step, got {angles}")
        self.level = _check_peak_settings(inner, peak, peak_step, level)
        self.a, self.angles, self.orthogonality = float(a), int(angles), float(orthogonality)
        self.inner, self.peak, self.peak_step = [float(f) for f in inner], float(peak), float(peak_step)
        self.cap, self.scan_margin = float(cap), float(scan_margin)

    def targets(self, generator: torch.Generator) -> list[Target]:
        # stratified angles: one per sector of the half circle, both ends of each diameter
        offset = float(torch.rand((), generator=generator)) * math.pi / self.angles
        phis = [offset + k * math.pi / self.angles for k in range(self.angles)]
        units = [(s * math.cos(phi), s * math.sin(phi)) for phi in phis for s in (1, -1)]
        return peak_targets(units, self.a, self.inner, self.peak, self.peak_step)

    @property
    def reach(self) -> float:
        return self.a

    @property
    def span(self) -> tuple[float, float]:
        return (-self.scan_margin * self.a, self.scan_margin * self.a)

    def describe(self) -> dict[str, Any]:
        return {"type": "Ring", "a": self.a, "angles": self.angles, "inner": self.inner, "peak": self.peak,
                "peak_step": self.peak_step, "level": self.level, "orthogonality": self.orthogonality,
                "cap": self.cap, "target_label": self.target_label}


def _check_radius(a: float) -> None:
    if not (math.isfinite(float(a)) and float(a) > 0):
        raise ValueError(f"the mining distance a must be a positive number (units of the normalized direction), got {a}")
