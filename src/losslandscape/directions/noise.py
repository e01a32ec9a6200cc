"""Random directions: Gaussian, uniform or Rademacher noise, and the sign-consistent noise of the
asymmetric-valley paper (arXiv:2405.12489), normalized against theta."""

from __future__ import annotations

import torch

from .context import DirectionContext
from .normalization import ParamDict, check_choice, normalize_direction

DISTRIBUTIONS = ("gaussian", "uniform", "rademacher")


class NoiseDirection:
    """Noise of one distribution, rescaled by :func:`normalize_direction`.

    The noise is drawn on the CPU in float32 from a generator seeded per direction index,
    parameter by parameter in name order, so a direction is the same on every device and process.
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

    def __call__(self, context: DirectionContext, index: int) -> ParamDict:
        return self.sample(context.theta, context.seed_for(index))

    def sample(self, theta: ParamDict, seed: int) -> ParamDict:
        generator = torch.Generator().manual_seed(seed)
        noise = {name: self._shape_noise(theta[name], generator) for name in sorted(theta)}
        noise = {name: v.to(device=theta[name].device, dtype=theta[name].dtype) for name, v in noise.items()}
        return normalize_direction(noise, theta, self.normalization, self.bias_bn, self.scale)

    def _shape_noise(self, value: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self._draw(value.shape, generator)

    def _draw(self, shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
        if self.distribution == "gaussian":
            return torch.randn(shape, generator=generator)
        if self.distribution == "uniform":
            return torch.rand(shape, generator=generator) * 2 - 1
        return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1

    def describe(self) -> dict:
        """The recipe, saved next to the direction so it can be rebuilt."""
        return {
            "type": type(self).__name__,
            "distribution": self.distribution,
            "normalization": self.normalization,
            "bias_bn": self.bias_bn,
            "scale": self.scale,
        }


class SignConsistentDirection(NoiseDirection):
    """Noise whose sign agrees with theta on a random fraction ``ratio`` of the coordinates.

    On the chosen coordinates the noise becomes ``|eps| * sign(theta)``; elsewhere it is plain
    ``eps``. ``ratio = 0`` is plain noise, ``ratio = 1`` is fully sign-consistent: the asymmetric-valley
    paper finds the valley flatter on the sign-consistent side (lambda > 0).
    """

    def __init__(self, ratio: float = 1.0, **noise):
        super().__init__(**noise)
        if not 0.0 <= float(ratio) <= 1.0:
            raise ValueError(f"sign-consistency ratio must lie in [0, 1], got {ratio}")
        self.ratio = float(ratio)

    def _shape_noise(self, value: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        eps = self._draw(value.shape, generator)
        chosen = torch.rand(value.shape, generator=generator) < self.ratio
        return torch.where(chosen, eps.abs() * torch.sign(value.detach().cpu().float()), eps)

    def describe(self) -> dict:
        return {**super().describe(), "ratio": self.ratio}
