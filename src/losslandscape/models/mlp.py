"""Fully connected network: the smallest model, for vector data and quick checks of the core."""

from __future__ import annotations

from collections.abc import Sequence
from math import prod

import torch
from torch import nn

from losslandscape.models.cnn import as_shape, check_num_classes, check_width, scaled_width

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


def activation_type(name: str) -> type[nn.Module]:
    if name not in ACTIVATIONS:
        valid = ", ".join(ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r}: expected one of {valid}")
    return ACTIVATIONS[name]


class MLP(nn.Module):
    """Flatten -> (Linear -> activation) per entry of ``hidden`` -> Linear head.

    The classic multilayer perceptron (Rumelhart, Hinton & Williams 1986); ``features`` is the
    output of the last hidden activation (the flattened input when ``hidden`` is empty).
    ``width`` multiplies every hidden size (rounded, at least 1), the load axis of width sweeps.
    With ``residual`` a hidden layer whose input and output widths agree adds its input,
    ``h + act(W h + b)``: the MLP of the MNIST-1D paper (Greydanus 2020) is ``hidden=[100, 100]``
    with ``residual=true``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        width: float = 1.0,
        residual: bool = False,
    ) -> None:
        super().__init__()
        activation_layer = activation_type(activation)  # fails early, even with no hidden layer
        multiplier = check_width(width)
        hidden = [int(h) for h in hidden]
        if hidden and min(hidden) < 1:
            raise ValueError(f"hidden sizes must be positive ints, got {hidden}")
        hidden = [scaled_width(h, multiplier) for h in hidden]
        in_features = prod(as_shape(input_shape))
        layers: list[nn.Module] = []
        for out_features in hidden:
            layer = [nn.Linear(in_features, out_features), activation_layer()]
            layers += [Residual(*layer)] if residual and in_features == out_features else layer
            in_features = out_features
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(in_features, check_num_classes(num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(torch.flatten(x, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Residual(nn.Sequential):
    """``x + layers(x)``: a skip connection around a block that keeps the width."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + super().forward(x)
