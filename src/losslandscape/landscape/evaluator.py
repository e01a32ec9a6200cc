"""The one evaluation core: loss and accuracy of a model at ``theta + sum_i a_i d_i`` on resident data.

Scans call it under ``torch.inference_mode``; mining and Hessian-vector products differentiate
through :meth:`Evaluator.metrics`. Data lives on the model's device for the whole scan, so a grid
point costs one forward pass over the split and nothing else.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, vmap

ParamDict = dict[str, torch.Tensor]

BN_MODES = ("eval",)


def parameters_of(model: torch.nn.Module) -> ParamDict:
    """A detached copy of the model's parameters: the ``theta`` every measure is taken around."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def point(theta: ParamDict, directions: Sequence[ParamDict], coordinates: torch.Tensor) -> ParamDict:
    """``theta + sum_i coordinates[i] * directions[i]``."""
    return {
        name: value + sum(c * d[name] for c, d in zip(coordinates, directions))
        for name, value in theta.items()
    }


class Evaluator:
    """Mean cross-entropy loss and accuracy of ``model`` on one split, at any parameters.

    BatchNorm uses theta's running statistics (policy ``eval``), which keeps the evaluation a pure
    function of the parameters.
    """

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None):
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"evaluation data needs as many labels as inputs, got {len(x)} inputs and {len(y)} labels")
        self.model = model.eval()
        self.buffers = {name: b.detach() for name, b in model.named_buffers()}
        device = next(model.parameters()).device
        self.x, self.y = x.to(device), y.to(device)
        self.batch_size = int(batch_size or len(x))
        if self.batch_size < 1:
            raise ValueError(f"evaluation batch_size must be positive, got {batch_size}")

    def __len__(self) -> int:
        return len(self.y)

    def metrics(self, params: ParamDict) -> torch.Tensor:
        """``[mean loss, accuracy]`` over the whole split, summed batch by batch with exact weights."""
        loss_sum, correct = 0.0, 0.0
        state = {**params, **self.buffers}
        for start in range(0, len(self.y), self.batch_size):
            xb, yb = self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            logits = functional_call(self.model, state, (xb,))
            loss_sum = loss_sum + F.cross_entropy(logits, yb, reduction="sum")
            correct = correct + (logits.argmax(dim=1) == yb).sum().to(logits.dtype)
        return torch.stack([loss_sum, correct]) / len(self.y)

    def loss(self, params: ParamDict) -> torch.Tensor:
        return self.metrics(params)[0]

    def metrics_at(
        self,
        theta: ParamDict,
        directions: Sequence[ParamDict],
        coordinates: torch.Tensor,
        points_per_batch: int = 1,
    ) -> torch.Tensor:
        """``(P, 2)`` metrics at the P points ``theta + coordinates[p] @ directions``.

        ``points_per_batch > 1`` evaluates that many points at once with ``torch.func.vmap``
        (one wide forward pass instead of several narrow ones; it pays off for small models on GPUs).
        """
        coordinates = coordinates.to(device=self.x.device, dtype=next(iter(theta.values())).dtype)
        if points_per_batch <= 1:
            return torch.stack([self.metrics(point(theta, directions, c)) for c in coordinates])
        batched = vmap(lambda c: self.metrics(point(theta, directions, c)))
        return torch.cat([batched(chunk) for chunk in coordinates.split(points_per_batch)])
