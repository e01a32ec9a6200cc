"""Directions between models: towards initialization, between two checkpoints, trajectory PCA."""

from __future__ import annotations

import torch

from .context import DirectionContext
from .normalization import ParamDict, normalize_direction


def difference(end: ParamDict, start: ParamDict) -> ParamDict:
    return {name: end[name] - start[name] for name in start}


class BetweenCheckpoints:
    """``d = theta_end - theta_start``, scanned around ``start``: lambda = 0 is start, 1 is end.

    ``start: null`` means the scanned model. With ``start=epoch:5 end=final`` this is the
    intermediate-to-final direction of the seed paper's v-side curves; with ``end=seed:1`` it
    points at an independently trained model (w-basin curves); with ``end=init`` it points back
    to the initialization. References: ``init``, ``final``, ``epoch:N``, ``seed:S`` or a file path.
    """

    def __init__(self, end: str = "init", start: str | None = None, normalization: str = "none", bias_bn: str = "include", scale: float = 1.0):
        self.end, self.origin = str(end), (None if start is None else str(start))
        self.normalization, self.bias_bn, self.scale = normalization, bias_bn, float(scale)
        normalize_direction({}, {}, normalization, bias_bn)

    def __call__(self, context: DirectionContext, index: int) -> ParamDict:
        start = context.theta if self.origin is None else context.checkpoint(self.origin)
        d = difference(context.checkpoint(self.end), start)
        return normalize_direction(d, start, self.normalization, self.bias_bn, self.scale)

    def describe(self) -> dict:
        return {"type": "BetweenCheckpoints", "start": self.origin, "end": self.end,
                "normalization": self.normalization, "bias_bn": self.bias_bn, "scale": self.scale}


class TrajectoryPCA:
    """The principal components of the training trajectory (Li et al. 2018, section 7).

    The matrix has one row ``theta_k - theta`` per saved checkpoint; direction ``i`` is its
    ``i``-th right singular vector, scaled to the norm of theta (so lambda is in the same units as
    for filter-normalized noise) unless ``unit_norm``. Signs are fixed so that the trajectory's
    start has a negative coordinate, which makes plots of different runs comparable.
    """

    def __init__(self, unit_norm: bool = False):
        self.unit_norm = bool(unit_norm)
        self.explained: torch.Tensor | None = None  # of the last trajectory decomposed: the figures' axes say it

    def components(self, context: DirectionContext, count: int) -> tuple[list[ParamDict], torch.Tensor]:
        """``count`` components and the explained-variance ratios of all components."""
        names = sorted(context.theta)
        center = torch.cat([context.theta[n].flatten().double() for n in names])
        rows = torch.stack([torch.cat([p[n].flatten().double() for n in names]) - center for p in context.trajectory()])
        if len(rows) < count + 1:
            raise ValueError(f"trajectory PCA needs at least {count + 1} saved checkpoints, found {len(rows)}; lower train.checkpoint_every")
        _, singular, vt = torch.linalg.svd(rows, full_matrices=False)
        explained = self.explained = singular**2 / (singular**2).sum()
        directions = []
        for i in range(count):
            v = vt[i] * (-1.0 if (rows[0] @ vt[i]) > 0 else 1.0)
            v = v if self.unit_norm else v * center.norm()
            directions.append(_unflatten(v, context.theta, names))
        return directions, explained

    def __call__(self, context: DirectionContext, index: int) -> ParamDict:
        return self.components(context, index + 1)[0][index]

    def describe(self) -> dict:
        return {"type": "TrajectoryPCA", "unit_norm": self.unit_norm}


def _unflatten(vector: torch.Tensor, like: ParamDict, names: list[str]) -> ParamDict:
    out, offset = {}, 0
    for name in names:
        size = like[name].numel()
        out[name] = vector[offset : offset + size].view_as(like[name]).to(like[name].dtype)
        offset += size
    return out
