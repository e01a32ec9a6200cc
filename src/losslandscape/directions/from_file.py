"""Directions saved earlier (by any run) and loaded again, checked against the scanned model."""

from __future__ import annotations

from .context import DirectionContext
from .normalization import ParamDict
from .store import load_direction


class FileDirection:
    """Direction ``i`` is the ``i``-th file of ``paths`` (files written by ``save_direction``)."""

    def __init__(self, paths: list[str]):
        self.paths = [str(p) for p in paths]
        if not self.paths:
            raise ValueError("direction=from_file needs direction.paths=[file, ...] (files from a run's directions/ folder)")

    def __call__(self, context: DirectionContext, index: int) -> ParamDict:
        if index >= len(self.paths):
            raise ValueError(f"the scan needs direction {index + 1} but direction.paths lists only {len(self.paths)} file(s)")
        direction, _ = load_direction(self.paths[index], next(iter(context.theta.values())).device)
        expected = {n: tuple(t.shape) for n, t in context.theta.items()}
        found = {n: tuple(t.shape) for n, t in direction.items()}
        if expected != found:
            raise ValueError(
                f"direction file {self.paths[index]} does not fit the scanned model: "
                f"{sorted(set(expected) ^ set(found))[:3] or [n for n in expected if expected[n] != found.get(n)][:3]} differ"
            )
        return {n: direction[n].to(context.theta[n].dtype) for n in context.theta}

    def describe(self) -> dict:
        return {"type": "FileDirection", "paths": self.paths}
