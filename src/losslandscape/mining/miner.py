"""Projected gradient descent on directions: the directions are the trainable parameters.

Each step draws a mini-batch of the mining split, evaluates the loss at every target point
``theta + sum_i c_i d_i`` of the objective through the one evaluator (``Evaluator.batch_loss``),
takes an optimizer step on the directions, and projects them back onto their normalization
constraint (:func:`normalize_direction`: every filter of ``d`` gets the norm of theta's filter
times ``scale``; biases and BatchNorm parameters stay zero under ``bias_bn=ignore``). The
projection is exact, so every mined direction is on the same footing as a filter-normalized
random one and ``lambda`` means the same on both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch

from ..directions.normalization import ParamDict, dot, global_norm, normalize_direction
from ..landscape.evaluator import Evaluator, point
from ..progress import progress_bar
from .objectives import Target


@dataclass
class MiningResult:
    """The mined directions and the trace of the mining loss (one row per step)."""

    directions: list[ParamDict]
    trace: dict[str, list[float]] = field(default_factory=dict)
    wall_time: float = 0.0


class DirectionMiner:
    """Optimizer, steps and mini-batches of mining; the constraint every step is projected onto.

    ``optimizer`` is a partial ``torch.optim`` class (Hydra ``_partial_``); the learning rate
    follows a cosine schedule to 0 so the last steps settle instead of rattling around the
    constraint surface.
    """

    def __init__(
        self,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        steps: int = 300,
        batch_size: int | None = 256,
        normalization: str = "filter",
        bias_bn: str = "ignore",
        scale: float = 1.0,
    ):
        if int(steps) < 1:
            raise ValueError(f"mining needs at least 1 step, got steps={steps}")
        if batch_size is not None and int(batch_size) < 1:
            raise ValueError(f"mining batch_size must be positive or null (the whole split), got {batch_size}")
        normalize_direction({}, {}, normalization, bias_bn)  # validates the names before any work
        self.optimizer = optimizer or (lambda params: torch.optim.Adam(params, lr=0.01))
        self.steps, self.batch_size = int(steps), None if batch_size is None else int(batch_size)
        self.normalization, self.bias_bn, self.scale = normalization, bias_bn, float(scale)

    def project(self, direction: ParamDict, theta: ParamDict) -> ParamDict:
        """The nearest direction on the constraint: each filter rescaled to theta's filter norm times ``scale``."""
        return normalize_direction(direction, theta, self.normalization, self.bias_bn, self.scale)

    def mine(
        self,
        objective,
        evaluator: Evaluator,
        theta: ParamDict,
        initial: Sequence[ParamDict],
        seed: int,
        progress: bool = False,
        label: str = "",
    ) -> MiningResult:
        """Minimize ``objective``'s loss over directions starting from ``initial`` (projected first);
        ``label`` (e.g. ``run 2/5``) says in the progress bar which of several runs this is."""
        if len(initial) != objective.num_directions:
            raise ValueError(f"{type(objective).__name__} mines {objective.num_directions} direction(s), got {len(initial)} to start from")
        generator = torch.Generator().manual_seed(int(seed))
        directions = [{n: v.detach().clone().requires_grad_(True) for n, v in self.project(d, theta).items()} for d in initial]
        optimizer = self.optimizer([v for d in directions for v in d.values()])
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, self.steps)
        trace: dict[str, list[float]] = {"objective": [], "low": [], "high": []}
        if objective.num_directions == 2:
            trace["cosine"] = []
        level = float(getattr(objective, "level", 0.0))
        gradient = self._gradient(evaluator, theta) if level > 0 else None
        if gradient is not None:
            trace["gradient_cosine"] = []
        batch = len(evaluator) if self.batch_size is None else min(self.batch_size, len(evaluator))
        start = time.perf_counter()
        for _ in progress_bar(range(self.steps), desc=" ".join(filter(None, ["mining", type(objective).__name__, label])), disable=not progress, leave=False):
            indices = torch.randperm(len(evaluator), generator=generator)[:batch]
            loss, parts = self._objective_loss(objective, evaluator, theta, directions, objective.targets(generator), indices)
            if objective.num_directions == 2:
                cosine = dot(*directions) / (global_norm(directions[0]) * global_norm(directions[1]))
                loss = loss + objective.orthogonality * cosine.to(loss.dtype) ** 2
                trace["cosine"].append(float(cosine.detach()))
            if gradient is not None:  # the curves leave theta level: their slopes g.d at 0 are pushed to 0
                cosines = [dot(gradient, d) / (global_norm(gradient) * global_norm(d)) for d in directions]
                loss = loss + level * sum(c.to(loss.dtype) ** 2 for c in cosines)
                trace["gradient_cosine"].append(max(abs(float(c.detach())) for c in cosines))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            with torch.no_grad():
                for d in directions:
                    for name, value in self.project({n: v.detach() for n, v in d.items()}, theta).items():
                        d[name].copy_(value)
            trace["objective"].append(float(loss.detach()))
            trace["low"].append(parts["low"])
            trace["high"].append(parts["high"])
        mined = [{n: v.detach().clone() for n, v in d.items()} for d in directions]
        return MiningResult(mined, trace, time.perf_counter() - start)

    @staticmethod
    def _gradient(evaluator: Evaluator, theta: ParamDict) -> ParamDict:
        """Full-split gradient of the loss at theta (fixed during mining)."""
        params = {n: v.detach().clone().requires_grad_(True) for n, v in theta.items()}
        grads = torch.autograd.grad(evaluator.loss(params), list(params.values()))
        return dict(zip(params, (g.detach() for g in grads)))

    @staticmethod
    def _objective_loss(objective, evaluator, theta, directions, targets: list[Target], indices) -> tuple[torch.Tensor, dict]:
        """Weighted low-target losses minus weighted capped high-target losses, on one mini-batch."""
        total, low, high = 0.0, [], []
        for target in targets:
            coordinates = torch.tensor(target.coordinates, dtype=next(iter(theta.values())).dtype)
            value = evaluator.batch_loss(point(theta, directions, coordinates), indices)
            if target.kind == "low":
                total = total + target.weight * value
                low.append(float(value.detach()))
            else:
                total = total - target.weight * torch.clamp(value, max=objective.cap)
                high.append(float(value.detach()))
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")  # noqa: E731
        return total, {"low": mean(low), "high": mean(high)}
