"""What a direction type may build its direction from, handed over by the task."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..files import stable_hash
from .normalization import ParamDict


def direction_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th random direction of a run: independent of the training seed's stream."""
    return int(stable_hash({"seed": int(seed), "direction": int(index)}), 16) % (2**31)


@dataclass
class DirectionContext:
    """The scanned model and the ways to reach everything else a direction may need.

    ``checkpoint(ref)`` returns the parameters of ``init``, ``final``, ``epoch:N``, ``seed:S`` (the
    final model of this config trained with seed S, through the cache) or a checkpoint file path;
    ``trajectory()`` the saved checkpoints in training order; ``loss(params)`` the differentiable
    loss on the training split.
    """

    theta: ParamDict
    seed: int
    checkpoint: Callable[[str], ParamDict]
    trajectory: Callable[[], list[ParamDict]]
    loss: Callable[[ParamDict], torch.Tensor]

    def seed_for(self, index: int) -> int:
        return direction_seed(self.seed, index)
