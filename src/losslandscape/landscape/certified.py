"""Every scanned number with its precision, and points that stop once they are precise enough.

A loss reports, per batch, the sums of its per-unit loss and metric and of their squares
(:meth:`losslandscape.losses.Loss.sums_and_squares`; a unit is an example, or a counted token).
From the running totals a point gets, for free in its one pass, the mean and its standard error
over the units read: ``se = s / sqrt(n)`` with ``s`` the sample standard deviation. That is the
precision of the number as an estimate of the expected loss over the data distribution the split
was drawn from (no finite-population correction: for the split's own mean it is conservative).

With a :class:`Precision`, a point reads its split batch by batch in a fixed, seeded permutation
of the examples and stops once ``z * se <= max(relative * |mean|, absolute)`` (a fixed-width
sequential confidence interval, Chow and Robbins 1965: its coverage tends to the nominal level as
the width shrinks; ``min_units`` guards the start, where ``s`` is itself noisy). Every point reads
the same examples in the same order (common random numbers): neighbouring points err alike, so
their differences, hence the contour shapes, are much more precise than either value.

Everything here works over an iterator of batches (``batch_sums`` is called once per batch, in
reading order), so a resident split and a streamed loader stop the same way.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Callable, Iterable

import torch

# per point and split: mean loss, mean metric, their standard errors, and the units read
CERTIFIED_COLUMNS = ("loss", "metric", "loss_se", "metric_se", "units")
# per batch: [summed loss, summed metric, summed squared loss, summed squared metric]
SUMS = 4


@dataclass(frozen=True)
class Precision:
    """``scan.<name>.precision``: stop a point once its ``confidence`` interval is this narrow.

    The half-width must be within ``relative * |mean loss|`` or ``absolute`` (whichever is larger);
    both 0 means the exact full pass (the same numbers as ``precision: null``)."""

    relative: float = 0.01
    absolute: float = 0.0
    confidence: float = 0.95
    min_units: int = 256  # below this many units s is too noisy to trust a stop
    seed: int = 0  # the permutation of the examples, the same at every point

    def __post_init__(self):
        if not (self.relative >= 0 and self.absolute >= 0):
            raise ValueError(f"precision.relative and precision.absolute must be >= 0, got {self.relative}, {self.absolute}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"precision.confidence must lie in (0, 1), got {self.confidence}")
        if int(self.min_units) < 2:
            raise ValueError(f"precision.min_units must be at least 2, got {self.min_units}")

    @classmethod
    def from_config(cls, value: Any) -> "Precision | None":
        """``None`` (exact), or a mapping of the fields; a request that can never stop early is exact too."""
        if value is None:
            return None
        precision = value if isinstance(value, Precision) else cls(**dict(value))
        return None if precision.exact else precision

    @property
    def exact(self) -> bool:
        return self.relative == 0 and self.absolute == 0

    @property
    def z(self) -> float:
        """The two-sided normal quantile of ``confidence`` (1.96 at 95 %)."""
        return NormalDist().inv_cdf(0.5 + self.confidence / 2)

    def reached(self, sums: torch.Tensor, units: int) -> bool:
        """Whether every point of ``sums`` (``(..., 4)`` running totals over ``units``) is precise enough."""
        return units >= self.min_units and bool(self.reached_each(sums, units).all())

    def reached_each(self, sums: torch.Tensor, units: int) -> torch.Tensor:
        """Per point of ``sums`` (``(..., 4)`` running totals over ``units``): precise enough yet?"""
        if units < self.min_units:
            return torch.zeros(sums.shape[:-1], dtype=torch.bool, device=sums.device)
        mean, se = loss_mean_and_se(sums, units)
        width = torch.clamp(self.relative * mean.abs(), min=self.absolute)
        return self.z * se <= width

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def loss_mean_and_se(sums: torch.Tensor, units: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean loss and its standard error from running totals (float64: the variance is a difference)."""
    means, errors = means_and_errors(sums, units)
    return means[..., 0], errors[..., 0]


def means_and_errors(sums: torch.Tensor, units: int | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``([mean loss, mean metric], [their standard errors])`` from ``(..., 4)`` totals over ``units``."""
    means = sums[..., :2].double() / units
    return means, standard_errors(means, sums[..., 2:].double() / units, units)


def standard_errors(means: torch.Tensor, second_moments: torch.Tensor, units: int | torch.Tensor) -> torch.Tensor:
    """``s / sqrt(n)`` from the mean and the mean square over ``n`` units (float64: the variance is a difference)."""
    units = torch.as_tensor(units, dtype=torch.float64, device=means.device)
    variance = (second_moments - means.square()).clamp(min=0) * units / (units - 1).clamp(min=1)  # sample variance
    return (variance / units).sqrt()


def read_batches(batch_sums: Callable[[int], torch.Tensor], order: Iterable[int], batch_units: list[int],
                 precision: Precision | None) -> torch.Tensor:
    """A point's raw row ``[mean loss, mean metric, mean squared loss, mean squared metric, units]``,
    reading batches in ``order`` (``batch_sums(index)`` gives a batch's :data:`SUMS` totals).

    Means are ``summed / units`` exactly as the evaluator's full pass computes them (same sums, in
    the same order, one division), so the exact path keeps its numbers bit for bit; with
    ``precision`` it stops after the first batch at which the point is precise enough. The errors
    are finished for all points at once by :func:`certified_columns` (per point they would cost
    as much as the bookkeeping of a small model's forward pass)."""
    sums, units = None, 0
    for index in order:
        batch = batch_sums(index)
        sums = batch if sums is None else sums + batch
        units += batch_units[index]
        if precision is not None and precision.reached(sums, units):
            break
    return _raw_row(sums, units)


def read_batches_together(batch_sums: Callable[[int, torch.Tensor], torch.Tensor], order: Iterable[int],
                          batch_units: list[int], points: int, precision: Precision) -> torch.Tensor:
    """:func:`read_batches` for ``points`` points at once (``(points, 5)`` raw rows), as vmap reads them:
    ``batch_sums(index, active)`` gives the :data:`SUMS` totals of batch ``index`` at the points
    ``active`` (indices into the P points), ``(len(active), 4)``.

    A point leaves the group at the first batch at which it is precise enough, with the totals it
    would have had alone: every point still reading has read the same batches, so each stops where
    :func:`read_batches` stops it, and the reading ends with the last point. Without this, a group
    would read as far as its least precise point."""
    rows: list[torch.Tensor | None] = [None] * points
    active = torch.arange(points)
    sums, units = None, 0
    for index in order:
        batch = batch_sums(index, active)
        sums = batch if sums is None else sums + batch
        units += batch_units[index]
        stopped = precision.reached_each(sums, units)
        if stopped.any():
            for row, point in zip(sums[stopped], active[stopped.cpu()].tolist()):
                rows[point] = _raw_row(row, units)
            active, sums = active[~stopped.cpu()], sums[~stopped]
            if len(active) == 0:
                break
    for row, point in zip(sums, active.tolist()):  # read to the end of the split
        rows[point] = _raw_row(row, units)
    return torch.stack(rows)


def _raw_row(sums: torch.Tensor, units: int) -> torch.Tensor:
    return torch.cat([sums / units, sums.new_full((1,), units)])


def certified_columns(rows: torch.Tensor) -> torch.Tensor:
    """``(P, 5)`` :data:`CERTIFIED_COLUMNS` from the raw rows of :func:`read_batches`."""
    means, units = rows[:, :2], rows[:, 4:].double()
    errors = standard_errors(means.double(), rows[:, 2:4].double(), units)
    return torch.cat([means, errors.to(means.dtype), rows[:, 4:]], dim=1)


def example_permutation(count: int, seed: int) -> torch.Tensor:
    """The fixed order in which an early-stopped point reads the examples (the same at every point)."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(int(seed)))


def interval(mean: float, se: float, confidence: float = 0.95) -> tuple[float, float]:
    """The normal ``confidence`` interval ``mean -+ z se``."""
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return mean - z * se, mean + z * se


def within_error(a: float, b: float, se_a: float, se_b: float, z: float = 1.96) -> bool:
    """Whether two values cannot be told apart at ``z`` standard errors (a decision within the error bars).

    Conservative: the errors are combined as if independent; with common random numbers the
    difference of neighbouring points is more precise than this."""
    if not all(map(math.isfinite, (a, b))):
        return False
    return abs(a - b) <= z * math.hypot(se_a if math.isfinite(se_a) else 0.0, se_b if math.isfinite(se_b) else 0.0)
