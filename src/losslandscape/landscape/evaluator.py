"""The one evaluation core: loss and accuracy of a model at ``theta + sum_i a_i d_i`` on resident data.

Scans call it under ``torch.inference_mode``; mining and Hessian-vector products differentiate
through :meth:`Evaluator.metrics`. Data lives on the model's device for the whole scan, so a grid
point costs one forward pass over the split and nothing else.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch.func import functional_call, replace_all_batch_norm_modules_, vmap

from .first_layer import FirstLayerShortcut

ParamDict = dict[str, torch.Tensor]

BN_MODES = ("eval", "recompute", "train")


def parameters_of(model: torch.nn.Module) -> ParamDict:
    """A detached copy of the model's parameters: the ``theta`` every measure is taken around."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def point(theta: ParamDict, directions: Sequence[ParamDict], coordinates: torch.Tensor) -> ParamDict:
    """``theta + sum_i coordinates[i] * directions[i]``."""
    return {
        name: value + sum(c * d[name] for c, d in zip(coordinates, directions))
        for name, value in theta.items()
    }


def has_batch_norm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


class Evaluator:
    """Mean cross-entropy loss and accuracy of ``model`` on one split, at any parameters.

    BatchNorm at a perturbed point (DESIGN.md section 4) follows ``bn_mode``:
    ``eval`` uses theta's running statistics (a pure function of the parameters, the default);
    ``recompute`` re-estimates the statistics at every point from ``bn_x`` (a few training batches)
    before evaluating; ``train`` normalizes every evaluation batch by its own statistics.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int | None = None,
        bn_mode: str = "eval",
        bn_x: torch.Tensor | None = None,
        first_layer_mb: float = 0.0,
    ):
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"evaluation data needs as many labels as inputs, got {len(x)} inputs and {len(y)} labels")
        if bn_mode not in BN_MODES:
            raise ValueError(f"unknown BatchNorm mode {bn_mode!r}: expected one of {', '.join(BN_MODES)}")
        if bn_mode == "recompute" and bn_x is None:
            raise ValueError("bn_mode='recompute' needs bn_x, the training inputs the statistics are estimated on")
        self.model = model.eval()
        self.bn_mode = bn_mode if has_batch_norm(model) else "eval"
        self.buffers = {name: b.detach() for name, b in model.named_buffers()}
        device = next(model.parameters()).device
        self.x, self.y = x.to(device), y.to(device)
        self.bn_x = None if bn_x is None else bn_x.to(device)
        self.batch_size = int(batch_size or len(x))
        self.first_layer_budget = float(first_layer_mb) * 2**20  # memory for precomputed first-layer outputs
        if self.batch_size < 1:
            raise ValueError(f"evaluation batch_size must be positive, got {batch_size}")
        if self.bn_mode == "train":
            # batch statistics without touching running buffers: safe under vmap and autograd
            self.model = copy.deepcopy(model).train()
            replace_all_batch_norm_modules_(self.model)
            self.buffers = {name: b.detach() for name, b in self.model.named_buffers()}
        if self.bn_mode == "recompute":
            self.model = copy.deepcopy(model).eval()
            for layer in self.model.modules():
                if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                    layer.momentum = None  # a cumulative average over bn_x instead of an exponential one

    def __len__(self) -> int:
        return len(self.y)

    def metrics(self, params: ParamDict) -> torch.Tensor:
        """``[mean loss, accuracy]`` over the whole split, summed batch by batch with exact weights."""
        return self._metrics(params)

    def _metrics(self, params: ParamDict, shortcut: FirstLayerShortcut | None = None, coordinates=None) -> torch.Tensor:
        loss_sum, correct = 0.0, 0.0
        buffers = self.recomputed_buffers(params) if self.bn_mode == "recompute" else self.buffers
        if shortcut is not None:  # the first layer's parameters are not needed: its output is precomputed
            params = {name: value for name, value in params.items() if name not in shortcut.param_names}
        state = {**params, **buffers}
        for index, start in enumerate(range(0, len(self.y), self.batch_size)):
            xb, yb = self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
            if shortcut is None:
                logits = functional_call(self.model, state, (xb,))
            else:
                with shortcut.replaced(index, coordinates):
                    logits = functional_call(self.model, state, (xb,))
            loss_sum = loss_sum + F.cross_entropy(logits, yb, reduction="sum")
            correct = correct + (logits.argmax(dim=1) == yb).sum().to(logits.dtype)
        return torch.stack([loss_sum, correct]) / len(self.y)

    def recomputed_buffers(self, params: ParamDict) -> dict[str, torch.Tensor]:
        """BatchNorm running statistics re-estimated at ``params``: a cumulative average over ``bn_x``."""
        buffers = {name: b.clone() for name, b in self.buffers.items()}
        for name, buffer in buffers.items():
            if name.endswith("running_mean") or name.endswith("num_batches_tracked"):
                buffer.zero_()
            elif name.endswith("running_var"):
                buffer.fill_(1.0)
        self.model.train()
        try:
            for start in range(0, len(self.bn_x), self.batch_size):
                functional_call(self.model, {**params, **buffers}, (self.bn_x[start : start + self.batch_size],))
        finally:
            self.model.eval()
        return buffers

    def loss(self, params: ParamDict) -> torch.Tensor:
        return self.metrics(params)[0]

    def batch_loss(self, params: ParamDict, indices: torch.Tensor) -> torch.Tensor:
        """Mean loss on the examples ``indices`` of the split: the differentiable mini-batch loss of mining."""
        buffers = self.recomputed_buffers(params) if self.bn_mode == "recompute" else self.buffers
        logits = functional_call(self.model, {**params, **buffers}, (self.x[indices.to(self.x.device)],))
        return F.cross_entropy(logits, self.y[indices.to(self.y.device)])

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
        shortcut = None
        if self.first_layer_budget > 0 and self.bn_mode != "recompute":
            shortcut = FirstLayerShortcut.build(self.model, self.x, self.batch_size, theta, directions, self.first_layer_budget)

        def at(c: torch.Tensor) -> torch.Tensor:
            return self._metrics(point(theta, directions, c), shortcut, c)

        if points_per_batch <= 1 or self.bn_mode == "recompute":  # re-estimation updates buffers in place: no vmap
            return torch.stack([at(c) for c in coordinates])
        return torch.cat([vmap(at)(chunk) for chunk in coordinates.split(points_per_batch)])
