"""The gradient of the training loss at theta, normalized like any other direction."""

from __future__ import annotations

import torch

from .context import DirectionContext
from .normalization import ParamDict, normalize_direction


class GradientDirection:
    """``d = -grad L(theta)`` (descent) or ``+grad`` (``ascent: true``) over the whole training split."""

    def __init__(self, ascent: bool = False, normalization: str = "filter", bias_bn: str = "ignore", scale: float = 1.0):
        self.ascent = bool(ascent)
        self.normalization, self.bias_bn, self.scale = normalization, bias_bn, float(scale)
        normalize_direction({}, {}, normalization, bias_bn)

    def __call__(self, context: DirectionContext, index: int) -> ParamDict:
        params = {n: t.detach().clone().requires_grad_(True) for n, t in context.theta.items()}
        with torch.enable_grad():
            grads = torch.autograd.grad(context.loss(params), list(params.values()))
        sign = 1.0 if self.ascent else -1.0
        d = {n: sign * g.detach() for n, g in zip(params, grads)}
        return normalize_direction(d, context.theta, self.normalization, self.bias_bn, self.scale)

    def describe(self) -> dict:
        return {"type": "GradientDirection", "ascent": self.ascent, "normalization": self.normalization,
                "bias_bn": self.bias_bn, "scale": self.scale}
