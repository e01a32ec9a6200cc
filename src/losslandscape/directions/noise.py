"""Random directions: Gaussian, uniform or Rademacher noise, normalized against theta."""

from __future__ import annotations

import torch

from .normalization import ParamDict, check_choice, normalize_direction

DISTRIBUTIONS = ("gaussian", "uniform", "rademacher")


class NoiseDirection:
    """Noise of one distribution, rescaled by :func:`normalize_direction`.

    The noise is drawn on the CPU in float32 from a generator seeded with ``seed``, parameter by
    parameter in name order, so a direction is the same on every device and in every process.
    """

    def __init__(
        self,
        distribution: str = "gaussian",
        normalization: str = "filter",
        bias_bn: str = "ignore",
        scale: float = 1.0,
    ):
        self.distribution = check_choice(distribution, DISTRIBUTIONS, "noise distribution")
        self.normalization = normalization
        self.bias_bn = bias_bn
        self.scale = float(scale)
        normalize_direction({}, {}, normalization, bias_bn)  # validates the names before any work

    def __call__(self, theta: ParamDict, seed: int) -> ParamDict:
        generator = torch.Generator().manual_seed(seed)
        noise = {name: self._draw(theta[name].shape, generator) for name in sorted(theta)}
        noise = {name: v.to(device=theta[name].device, dtype=theta[name].dtype) for name, v in noise.items()}
        return normalize_direction(noise, theta, self.normalization, self.bias_bn, self.scale)

    def _draw(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        if self.distribution == "gaussian":
            return torch.randn(shape, generator=generator)
        if self.distribution == "uniform":
            return torch.rand(shape, generator=generator) * 2 - 1
        return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1

    def describe(self) -> dict:
        """The recipe, saved next to the direction so it can be rebuilt."""
        return {
            "type": "noise",
            "distribution": self.distribution,
            "normalization": self.normalization,
            "bias_bn": self.bias_bn,
            "scale": self.scale,
        }
