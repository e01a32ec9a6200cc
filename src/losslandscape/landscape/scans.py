"""Scan geometries (config group ``scan``) and the resumable runner that evaluates them.

A scan is a set of coordinate vectors ``a`` (one entry per direction); the runner evaluates
``theta + sum_i a_i d_i`` on every split with the one :class:`Evaluator` and writes the grid.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..store import content_digest, load_arrays, read_arrays, result_key, save_arrays
from ..progress import progress_bar
from .certified import CERTIFIED_COLUMNS, Precision
from .evaluator import Evaluator, ParamDict
from .refine import Refine, interpolate, refine_plane

# numbers per point and split: the loss and the loss's metric, their standard errors, the units read
VALUES_PER_POINT = len(CERTIFIED_COLUMNS)


def metric_names(evaluators: dict[str, Evaluator]) -> tuple[str, ...]:
    """The names of the numbers stored per split (``loss`` and e.g. ``accuracy`` or ``r2``)."""
    return next(iter(evaluators.values())).metric_names


def loss_record(evaluators: dict[str, Evaluator]) -> dict[str, Any]:
    """What a result file says about the loss it measured: its name, metric and settings."""
    return next(iter(evaluators.values())).criterion.describe()


def _check_span(span: Sequence[float], points: int, what: str) -> tuple[float, float]:
    span = tuple(float(v) for v in span)
    if len(span) != 2 or not span[0] < span[1]:
        raise ValueError(f"{what} span must be [low, high] with low < high, got {list(span)}")
    if int(points) < 2:
        raise ValueError(f"{what} needs at least 2 points, got {points}")
    return span


def settings_record(scan: Any) -> dict[str, Any]:
    """What a scan's ``describe`` adds for ``precision`` and ``refine`` (nothing when unset, so an
    exact scan keeps the fingerprint it had before these settings existed)."""
    record = {}
    for key in ("precision", "refine"):
        if getattr(scan, key, None) is not None:
            record[key] = getattr(scan, key).describe()
    return record


class LineScan:
    """1D curve ``L(theta + lambda d)`` for ``lambda`` in ``span``, ``points`` evenly spaced."""

    kind = "line"
    num_directions = 1

    def __init__(self, name: str = "line", span: Sequence[float] = (-1.0, 1.0), points: int = 51, curves: int = 1,
                 precision: Any = None):
        self.name = name
        self.precision = Precision.from_config(precision)  # None: the exact full pass
        self.span = _check_span(span, points, f"line scan {name!r}")
        self.points = int(points)
        self.curves = int(curves)  # directions scanned one by one, drawn on one figure
        if self.curves < 1:
            raise ValueError(f"line scan {name!r} needs at least 1 curve, got curves={curves}")

    def axes(self) -> dict[str, np.ndarray]:
        return {"lambda": np.linspace(*self.span, self.points)}

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return (self.points,)

    def coordinates(self) -> torch.Tensor:
        return torch.from_numpy(self.axes()["lambda"])[:, None]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "span": list(self.span), "points": self.points, **settings_record(self)}


class PlaneScan:
    """2D surface ``L(theta + alpha d1 + beta d2)`` on an ``x_points`` x ``y_points`` grid.

    Grids are stored as ``(y_points, x_points)`` arrays, ``Z[j, i] = L(alpha=x[i], beta=y[j])``,
    which is what ``matplotlib.contour(x, y, Z)`` expects.
    """

    kind = "plane"
    num_directions = 2

    def __init__(
        self,
        name: str = "plane",
        x_span: Sequence[float] = (-1.0, 1.0),
        y_span: Sequence[float] = (-1.0, 1.0),
        x_points: int = 21,
        y_points: int = 21,
        orthogonalize: bool = True,
        precision: Any = None,
        refine: Any = None,
    ):
        self.name = name
        self.precision = Precision.from_config(precision)
        self.refine = Refine.from_config(refine)
        if self.refine and ((int(x_points) - 1) % self.refine.stride or (int(y_points) - 1) % self.refine.stride):
            raise ValueError(f"plane scan {name!r}: refine.stride={self.refine.stride} must divide x_points - 1 and "
                             f"y_points - 1 (got {x_points} x {y_points}); e.g. 21 points with stride 4")
        self.x_span = _check_span(x_span, x_points, f"plane scan {name!r} x")
        self.y_span = _check_span(y_span, y_points, f"plane scan {name!r} y")
        self.x_points, self.y_points = int(x_points), int(y_points)
        self.orthogonalize = bool(orthogonalize)

    def axes(self) -> dict[str, np.ndarray]:
        return {"x": np.linspace(*self.x_span, self.x_points), "y": np.linspace(*self.y_span, self.y_points)}

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return (self.y_points, self.x_points)

    def coordinates(self) -> torch.Tensor:
        axes = self.axes()
        beta, alpha = np.meshgrid(axes["y"], axes["x"], indexing="ij")
        return torch.from_numpy(np.stack([alpha.ravel(), beta.ravel()], axis=1))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "x_span": list(self.x_span),
            "y_span": list(self.y_span),
            "x_points": self.x_points,
            "y_points": self.y_points,
            "orthogonalize": self.orthogonalize,
            **settings_record(self),
        }


class InterpolationScan(LineScan):
    """``L((1 - t) theta_start + t theta_end)`` for ``t`` in ``span`` (beyond [0, 1] allowed).

    A line scan centred at ``start`` along ``end - start``: the task resolves the two checkpoint
    references (``init``, ``final``, ``epoch:N``, ``seed:S`` or a path) into theta and the direction.
    """

    kind = "interpolation"

    def __init__(self, name: str = "interpolation", start: str = "final", end: str = "seed:1",
                 span: Sequence[float] = (-0.25, 1.25), points: int = 31, precision: Any = None):
        super().__init__(name, span, points, curves=1, precision=precision)
        self.start, self.end = str(start), str(end)
        if self.start == self.end:
            raise ValueError(f"interpolation scan {name!r} needs two different checkpoints, got start=end={start!r}")

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "start": self.start, "end": self.end}


class RingScan:
    """``L(theta + r cos(phi) d1 + r sin(phi) d2)`` on circles of the given radii, ``angles`` per circle.

    Grids are ``(len(radii), angles)``; phi runs over ``[0, 2 pi)``.
    """

    kind = "ring"
    num_directions = 2
    orthogonalize = True

    def __init__(self, name: str = "ring", radii: Sequence[float] = (0.5, 1.0), angles: int = 72, orthogonalize: bool = True,
                 precision: Any = None):
        self.name = name
        self.precision = Precision.from_config(precision)
        self.radii = [float(r) for r in radii]
        if not self.radii or min(self.radii) <= 0:
            raise ValueError(f"ring scan {name!r} needs positive radii, got {self.radii}")
        if int(angles) < 3:
            raise ValueError(f"ring scan {name!r} needs at least 3 angles, got {angles}")
        self.angles, self.orthogonalize = int(angles), bool(orthogonalize)

    def axes(self) -> dict[str, np.ndarray]:
        return {"phi": np.linspace(0.0, 2 * np.pi, self.angles, endpoint=False), "radius": np.asarray(self.radii)}

    @property
    def grid_shape(self) -> tuple[int, ...]:
        return (len(self.radii), self.angles)

    def coordinates(self) -> torch.Tensor:
        axes = self.axes()
        radius, phi = np.meshgrid(axes["radius"], axes["phi"], indexing="ij")
        return torch.from_numpy(np.stack([(radius * np.cos(phi)).ravel(), (radius * np.sin(phi)).ravel()], axis=1))

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "radii": self.radii, "angles": self.angles,
                "orthogonalize": self.orthogonalize, **settings_record(self)}


# how a result file names its arrays besides the value grids (``train_loss``): prefix -> ScanResult field
ARRAY_PREFIXES = {"axis_": "axes", "se_": "errors", "examples_": "examples", "evaluated_": "evaluated"}


@dataclass
class ScanResult:
    """A finished scan: its axes, one grid per ``{split}_{metric}``, and where it came from.

    ``errors`` has the standard error of every value grid (same keys; NaN where the loss gives
    sums only), ``examples`` the units each point read per split (all of them, unless early
    stopped), ``evaluated`` (refined planes only, key ``grid``) which grid points were evaluated
    rather than interpolated."""

    kind: str
    name: str
    axes: dict[str, np.ndarray]
    values: dict[str, np.ndarray]
    provenance: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, np.ndarray] = field(default_factory=dict)
    examples: dict[str, np.ndarray] = field(default_factory=dict)
    evaluated: dict[str, np.ndarray] = field(default_factory=dict)

    def save(self, path: str | Path) -> None:
        """Into the result store, under the key it was computed with (``provenance["fingerprint"]``)."""
        arrays = {f"{prefix}{k}": v for prefix, name in ARRAY_PREFIXES.items() for k, v in getattr(self, name).items()}
        save_arrays(path, {**arrays, **self.values}, {**self.provenance, "kind": self.kind, "name": self.name},
                    self.provenance.get("fingerprint"))

    @classmethod
    def load(cls, path: str | Path) -> "ScanResult":
        """A saved scan, checksum verified (:class:`~losslandscape.store.CorruptResult` if damaged)."""
        arrays, provenance, _ = read_arrays(path)
        return cls.from_arrays(arrays, provenance)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], provenance: dict[str, Any]) -> "ScanResult":
        fields: dict[str, dict[str, np.ndarray]] = {name: {} for name in ARRAY_PREFIXES.values()}
        values = {}
        for key, array in arrays.items():
            prefix = next((p for p in ARRAY_PREFIXES if key.startswith(p)), None)
            (fields[ARRAY_PREFIXES[prefix]] if prefix else values)[key[len(prefix or ""):]] = array
        return cls(provenance["kind"], provenance["name"], fields.pop("axes"), values, provenance, **fields)

    def plot(self, stem: str | Path, split: str | None = None, log_scale: bool = False) -> list[Path]:
        """The CLI's figures of this result (curve; contour and 3D surface; rings) at ``stem``.png/.pdf."""
        from ..plots.landscape import plot_contour, plot_curves, plot_ring, plot_surface

        stem, split = Path(stem), split or self.provenance.get("splits", ["train"])[0]
        if self.kind in ("line", "interpolation"):
            return plot_curves([self], stem, log_scale=log_scale, xlabel="t" if self.kind == "interpolation" else r"$\lambda$")
        if self.kind == "ring":
            return plot_ring(self, stem, split, log_scale)
        return (plot_contour(self, stem.with_name(stem.name + "_contour"), split, log_scale=log_scale)
                + plot_surface(self, stem.with_name(stem.name + "_surface"), split, log_scale))

    def center_value(self, key: str) -> float:
        """The value at the grid point nearest to the origin (theta itself when 0 is on the grid).

        A ring has no center: its value is the mean over the smallest circle."""
        if self.kind == "ring":
            return float(np.mean(self.values[key][0]))
        index = tuple(int(np.argmin(np.abs(axis))) for axis in reversed(list(self.axes.values())))
        return float(self.values[key][index if len(index) > 1 else index[0]])


# A scan saves its partial file about this often: a killed scan loses about that much work at most,
# and a fast scan is not slowed down by saving after every few points.
SAVE_EVERY_S = 5.0


def next_block(seconds: float, points: int, points_per_batch: int, save_every_s: float) -> int:
    """Points in the next block: about ``save_every_s`` of work at the pace of the last block, in
    whole vmap batches (every block then starts on a multiple of ``points_per_batch``)."""
    batches = int(save_every_s / max(seconds, 1e-9) * points / points_per_batch)
    return points_per_batch * max(1, batches)


def evaluate_in_blocks(
    coordinates: torch.Tensor,
    theta: ParamDict,
    directions: Sequence[ParamDict],
    evaluators: dict[str, Evaluator],
    partial: Path,
    fingerprint: str,
    points_per_batch: int,
    bar: Any,
    save_every_s: float = SAVE_EVERY_S,
    precision: Precision | None = None,
) -> np.ndarray:
    """``(points, splits, CERTIFIED_COLUMNS)`` values at ``coordinates``, resumed from and saved to ``partial``.

    The first block is one vmap batch, which measures the pace; each later block is sized to take
    about ``save_every_s``. The partial file is rewritten after a block when ``save_every_s`` have
    passed since the last save, never after the last block (the caller saves the result).
    """
    splits = list(evaluators)
    values, done = _resume(partial, fingerprint, (len(coordinates), len(splits), VALUES_PER_POINT))
    bar.update(done)  # the bar's total is len(coordinates)
    block, saved = points_per_batch, time.perf_counter()
    with torch.inference_mode():
        while done < len(coordinates):
            started = time.perf_counter()
            chunk = coordinates[done : done + block]
            for s, split in enumerate(splits):
                values[done : done + len(chunk), s] = (
                    evaluators[split].certified_at(theta, directions, chunk, points_per_batch, precision).double().cpu().numpy()
                )
            done += len(chunk)
            bar.update(len(chunk))
            finished = time.perf_counter()
            if done < len(coordinates) and finished - saved >= save_every_s:
                save_arrays(partial, {"values": values, "done": done}, {}, fingerprint)
                saved = finished
            block = next_block(finished - started, len(chunk), points_per_batch, save_every_s)
    return values


def scan_fingerprint(scan: Any, theta: ParamDict, directions: Sequence[ParamDict], evaluators: dict[str, Evaluator]) -> str:
    """The result store's key of a scan: its geometry, theta and the directions by content, and each
    split's objective (:meth:`Evaluator.fingerprint`: data, loss, BatchNorm policy, ...). A finished or
    partial file is reused only under the same key."""
    return result_key(
        {
            "measure": "scan",
            "scan": scan.describe(),
            "theta": content_digest(theta),
            "directions": [content_digest(d) for d in directions],
            "evaluation": {split: evaluator.fingerprint for split, evaluator in evaluators.items()},
        }
    )


def partial_path(path: str | Path, rank: int | None = None) -> Path:
    """The partial file of a scan (``scan.npz -> scan.partial.npz``) or of one rank's share (``scan.rank1.partial.npz``)."""
    path = Path(path)
    tag = "" if rank is None else f".rank{rank}"
    return path.with_name(path.name.replace(".npz", "") + f"{tag}.partial.npz")


def run_scan(
    scan: LineScan | PlaneScan | RingScan,
    theta: ParamDict,
    directions: Sequence[ParamDict],
    evaluators: dict[str, Evaluator],
    path: str | Path,
    provenance: dict[str, Any] | None = None,
    points_per_batch: int = 1,
    progress: bool = True,
    save_every_s: float = SAVE_EVERY_S,
) -> ScanResult:
    """Evaluate ``scan`` and save it to ``path``: the finished file if ``path`` already holds this very
    scan, else resumed from ``path.partial.npz`` if present.

    Both files carry the scan's key (:func:`scan_fingerprint`: everything that determines the
    numbers); a restart with the same inputs continues after the last saved block and recomputes
    nothing, a restart with other inputs starts over. The partial file is saved about every
    ``save_every_s`` seconds (0: after every vmap batch).
    """
    if len(directions) != scan.num_directions:
        raise ValueError(f"{scan.kind} scan needs {scan.num_directions} direction(s), got {len(directions)}")
    path = Path(path)
    partial = partial_path(path)
    splits = list(evaluators)
    fingerprint = scan_fingerprint(scan, theta, directions, evaluators)
    if (done := load_arrays(path, fingerprint)) is not None:
        return ScanResult.from_arrays(*done)
    coordinates = scan.coordinates()
    precision, refine = getattr(scan, "precision", None), getattr(scan, "refine", None)
    bar = progress_bar(total=len(coordinates), desc=f"scan {scan.name}", disable=not progress, leave=False)
    evaluated = {}
    if refine is None:
        values = evaluate_in_blocks(coordinates, theta, directions, evaluators, partial, fingerprint,
                                    points_per_batch, bar, save_every_s, precision)
    else:
        values, evaluated["grid"] = refined_values(scan, theta, directions, evaluators, partial, fingerprint,
                                                   points_per_batch, bar, precision)
    bar.close()
    names = metric_names(evaluators)
    grid = {f"{split}_{metric}": (s, m) for s, split in enumerate(splits) for m, metric in enumerate(names)}
    result = ScanResult(
        scan.kind,
        scan.name,
        scan.axes(),
        {key: values[:, s, m].reshape(scan.grid_shape) for key, (s, m) in grid.items()},
        {**(provenance or {}), "scan": scan.describe(), "fingerprint": fingerprint, "splits": splits,
         "loss": loss_record(evaluators)},
        errors={key: values[:, s, 2 + m].reshape(scan.grid_shape) for key, (s, m) in grid.items()},
        examples={split: values[:, s, 4].reshape(scan.grid_shape) for s, split in enumerate(splits)},
        evaluated=evaluated,
    )
    result.save(path)
    partial.unlink(missing_ok=True)
    return result


def _resume(partial: Path, fingerprint: str, shape: tuple[int, ...]) -> tuple[np.ndarray, int]:
    found = load_arrays(partial, fingerprint)
    if found is not None and found[0]["values"].shape == shape:
        return found[0]["values"], int(found[0]["done"])
    return np.full(shape, np.nan), 0


def refined_values(scan: PlaneScan, theta: ParamDict, directions: Sequence[ParamDict], evaluators: dict[str, Evaluator],
                   partial: Path, fingerprint: str, points_per_batch: int, bar: Any,
                   precision: Precision | None) -> tuple[np.ndarray, np.ndarray]:
    """``(points, splits, CERTIFIED_COLUMNS)`` values of a refined plane and its ``(y, x)`` mask of
    evaluated points (:mod:`.refine`; the first split's loss decides where to refine). The points
    evaluated so far are saved after every round, so a killed scan resumes without re-evaluating
    them (the refinement is deterministic given the values, and retraces its steps)."""
    shape, splits = scan.grid_shape, list(evaluators)
    coordinates = scan.coordinates().reshape(*shape, 2)
    width = len(splits) * VALUES_PER_POINT
    stored, have = _resume_refined(partial, fingerprint, (*shape, width))

    def evaluate(indices: np.ndarray) -> np.ndarray:
        missing = indices[~have[indices[:, 0], indices[:, 1]]]
        if len(missing):
            chunk = coordinates[missing[:, 0], missing[:, 1]]
            with torch.inference_mode():
                rows = [evaluators[split].certified_at(theta, directions, chunk, points_per_batch, precision)
                        .double().cpu().numpy() for split in splits]
            stored[missing[:, 0], missing[:, 1]] = np.concatenate(rows, axis=1)
            have[missing[:, 0], missing[:, 1]] = True
            save_arrays(partial, {"values": stored, "have": have}, {}, fingerprint)
            bar.update(len(missing))
        return stored[indices[:, 0], indices[:, 1]]

    rows, known, cells = refine_plane(shape, evaluate, scan.refine)
    filled = interpolate(rows, known, cells).reshape(-1, len(splits), VALUES_PER_POINT)
    filled[~known.reshape(-1), :, 4] = 0.0  # an interpolated point read no examples
    return filled, known


def _resume_refined(partial: Path, fingerprint: str, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    found = load_arrays(partial, fingerprint)
    if found is not None and found[0]["values"].shape == shape and "have" in found[0]:
        return found[0]["values"], found[0]["have"].astype(bool)
    return np.full(shape, np.nan), np.zeros(shape[:2], dtype=bool)

