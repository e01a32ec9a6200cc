"""Adaptive planes (``scan.plane.refine``): a coarse grid, refined only where the contours need it.

A contour drawn from a grid moves by ``interpolation error / |gradient|``. Linear interpolation
over a cell of width ``H`` errs by about ``|second difference at spacing H| / 8``, so a cell is split
(its edge midpoints and centre evaluated, halving ``H``) only where a contour level passes through it
*and* that displacement exceeds half a step of the requested grid. Flat stretches, straight slopes
and cells no level crosses stay coarse. Cells are split most-displaced first, level by level,
until every cell is fine enough or the budget (a fraction of the requested grid's points) is
spent; the requested grid is then filled by bilinear interpolation within each final cell, and
the evaluated points are marked.

Pure numpy over grid indices: ``evaluate(indices)`` gives the rows of the requested points, so the
planner is tested on analytic surfaces and the scan runner plugs the evaluator in.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

Cell = tuple[int, int, int]  # (row, column, width) in steps of the requested grid, corner at (row, column)


@dataclass(frozen=True)
class Refine:
    """``scan.plane.refine``: the coarse grid's spacing (in requested steps, a power of 2), the budget
    (at most this fraction of the requested grid's points evaluated) and the contour levels it protects."""

    stride: int = 4
    budget: float = 0.5
    levels: int = 20

    def __post_init__(self):
        if self.stride < 2 or self.stride & (self.stride - 1):
            raise ValueError(f"refine.stride must be a power of 2 >= 2, got {self.stride}")
        if not 0 < self.budget <= 1:
            raise ValueError(f"refine.budget is a fraction of the grid's points in (0, 1], got {self.budget}")
        if self.levels < 1:
            raise ValueError(f"refine.levels must be >= 1, got {self.levels}")

    @classmethod
    def from_config(cls, value: Any) -> "Refine | None":
        if value is None or value is False:
            return None
        return value if isinstance(value, Refine) else cls(**dict(value))

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def coarse_axis(points: int, stride: int) -> list[int]:
    """Every ``stride``-th index (a grid of 21 at stride 4: 0, 4, ..., 20)."""
    return list(range(0, points, stride))


def coarse_cells(shape: tuple[int, int], stride: int) -> list[Cell]:
    """The coarse grid's square cells (``stride`` must divide both grid spans: checked by the scan)."""
    rows, columns = coarse_axis(shape[0], stride), coarse_axis(shape[1], stride)
    return [(r, c, stride) for r in rows[:-1] for c in columns[:-1]]


def corners(cell: Cell) -> list[tuple[int, int]]:
    r, c, w = cell
    return [(r, c), (r, c + w), (r + w, c), (r + w, c + w)]


def children(cell: Cell) -> list[Cell]:
    r, c, w = cell
    h = w // 2
    return [(r, c, h), (r, c + h, h), (r + h, c, h), (r + h, c + h, h)]


def midpoints(cell: Cell) -> list[tuple[int, int]]:
    r, c, w = cell
    h = w // 2
    return [(r, c + h), (r + h, c), (r + h, c + h), (r + h, c + w), (r + w, c + h)]


def contour_levels(values: np.ndarray, count: int) -> np.ndarray:
    """``count`` evenly spaced levels strictly inside the finite range of ``values``."""
    finite = values[np.isfinite(values)]
    if finite.size < 2 or finite.min() == finite.max():
        return np.empty(0)
    return np.linspace(finite.min(), finite.max(), count + 2)[1:-1]


def displacement(cell: Cell, z: np.ndarray, known: np.ndarray, levels: np.ndarray) -> float:
    """How far, in requested grid steps, a contour through ``cell`` may be misplaced by interpolating
    it linearly (0 where no level crosses it). From the second differences at the cell's spacing
    through its corners, along both axes, wherever the three points are evaluated."""
    r, c, w = cell
    values = [z[p] for p in corners(cell)]
    if not np.all(np.isfinite(values)):
        return 0.0  # a wall (non-finite loss): no contour to place
    error = max((abs(d) / 8 for d in _second_differences(cell, z, known)), default=0.0)
    if not np.any((levels >= min(values) - error) & (levels <= max(values) + error)):
        return 0.0
    gx = abs(values[1] - values[0] + values[3] - values[2]) / (2 * w)  # per requested step
    gy = abs(values[2] - values[0] + values[3] - values[1]) / (2 * w)
    return error / max(np.hypot(gx, gy), 1e-300)


def _second_differences(cell: Cell, z: np.ndarray, known: np.ndarray):
    r, c, w = cell
    for pr, pc in corners(cell):
        for dr, dc in ((0, w), (w, 0)):
            a, b = (pr - dr, pc - dc), (pr + dr, pc + dc)
            if _inside(a, z.shape) and _inside(b, z.shape) and known[a] and known[b]:
                yield z[a] - 2 * z[pr, pc] + z[b]


def _inside(point: tuple[int, int], shape: tuple[int, ...]) -> bool:
    return 0 <= point[0] < shape[0] and 0 <= point[1] < shape[1]


def refine_plane(shape: tuple[int, int], evaluate: Callable[[np.ndarray], np.ndarray], refine: Refine
                 ) -> tuple[np.ndarray, np.ndarray, list[Cell]]:
    """``(rows, evaluated, cells)``: ``rows[j, i]`` holds what ``evaluate`` returned for the evaluated
    points (the first column is the loss the refinement follows), NaN elsewhere; ``evaluated`` marks
    them; ``cells`` is the final partition. ``evaluate`` gets an ``(n, 2)`` array of (row, column)."""
    rows: np.ndarray | None = None
    known = np.zeros(shape, dtype=bool)
    budget = int(refine.budget * shape[0] * shape[1])

    def add(points: list[tuple[int, int]]) -> None:
        nonlocal rows
        new = np.asarray(sorted({p for p in points if not known[p]}), dtype=int).reshape(-1, 2)
        if len(new):
            got = np.asarray(evaluate(new), dtype=float)
            rows = np.full((*shape, got.shape[1]), np.nan) if rows is None else rows
            rows[new[:, 0], new[:, 1]] = got
            known[new[:, 0], new[:, 1]] = True

    cells = coarse_cells(shape, refine.stride)
    add([p for cell in cells for p in corners(cell)])
    width = refine.stride
    while width >= 2:
        z = rows[..., 0]
        levels = contour_levels(z[known], refine.levels)
        scored = [(displacement(cell, z, known, levels), cell) for cell in cells if cell[2] == width]
        chosen = []
        for score, cell in sorted(scored, key=lambda item: -item[0]):
            cost = sum(not known[p] for p in midpoints(cell))
            if score <= 0.5 or known.sum() + len(chosen) * 5 + cost > budget:
                break
            chosen.append(cell)
        add([p for cell in chosen for p in midpoints(cell)])
        cells = [child for cell in cells for child in (children(cell) if cell in chosen else [cell])]
        width //= 2
    return rows, known, cells


def interpolate(rows: np.ndarray, known: np.ndarray, cells: list[Cell]) -> np.ndarray:
    """The requested grid from the evaluated points: bilinear within every final cell, the evaluated
    points themselves where known (widest cells first, so finer cells overwrite shared edges)."""
    filled = np.full(rows.shape, np.nan)
    for r, c, w in sorted(cells, key=lambda cell: -cell[2]):
        t = np.linspace(0.0, 1.0, w + 1)
        ty, tx = t[:, None, None], t[None, :, None]
        a, b, d, e = (rows[p] for p in corners((r, c, w)))
        filled[r : r + w + 1, c : c + w + 1] = (1 - ty) * ((1 - tx) * a + tx * b) + ty * ((1 - tx) * d + tx * e)
    filled[known] = rows[known]
    return filled


def contour_agreement(reference: np.ndarray, other: np.ndarray, levels: np.ndarray, tolerance: float = 1.0) -> float:
    """The fraction of the contour crossings of both surfaces (level ``l`` between two neighbouring
    grid points, placed linearly) that have a crossing of the same level in the other surface within
    ``tolerance`` grid steps: 1.0 when every contour of either lies within that of the other."""
    from scipy.spatial import cKDTree

    matched, total = 0, 0
    for level in levels:
        a, b = _crossings(reference, level), _crossings(other, level)
        for mine, theirs in ((a, b), (b, a)):
            total += len(mine)
            if len(mine) and len(theirs):
                distance, _ = cKDTree(theirs).query(mine)
                matched += int((distance <= tolerance).sum())
    return matched / total if total else 1.0


def _crossings(z: np.ndarray, level: float) -> np.ndarray:
    """Points (row, column), in grid steps, where ``z`` crosses ``level`` along a grid line."""
    points = []
    for axis in (0, 1):
        low = z.take(range(z.shape[axis] - 1), axis=axis)
        high = z.take(range(1, z.shape[axis]), axis=axis)
        with np.errstate(invalid="ignore", divide="ignore"):
            t = (level - low) / (high - low)
        where = np.argwhere((t >= 0) & (t < 1) & np.isfinite(t))
        offset = t[tuple(where.T)]
        step = np.zeros((len(where), 2))
        step[:, axis] = offset
        points.append(where + step)
    return np.concatenate(points) if points else np.empty((0, 2))
