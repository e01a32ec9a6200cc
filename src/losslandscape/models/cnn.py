"""A small plain CNN, the project's default model, and the shape helpers the image models share.

The default experiment (digits + ``SmallCNN``) has to train and be scanned in minutes on a laptop
CPU, so this network is deliberately tiny: a few conv3x3 + ReLU blocks with 2x2 max-pooling, one
hidden linear layer, a linear head. It is the usual "simple CNN" of loss-landscape studies
(e.g. the small nets of Li et al. 2018, "Visualizing the Loss Landscape of Neural Nets").
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def as_shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """``input_shape`` as a tuple of ints (Hydra hands sequences over as ``ListConfig``)."""
    return tuple(int(size) for size in input_shape)


def as_image_shape(input_shape: Sequence[int], model_name: str) -> tuple[int, int, int]:
    """``(C, H, W)`` from ``input_shape``, or a ValueError saying that ``model_name`` needs images."""
    shape = as_shape(input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"{model_name} needs image input of shape (C, H, W), got input_shape={shape}; "
            "use model=mlp for vector data"
        )
    return shape  # type: ignore[return-value]


def check_num_classes(num_classes: int) -> int:
    if int(num_classes) < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes}")
    return int(num_classes)


def scaled_width(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1: the width multiplier of VGG / ResNet."""
    return max(1, round(channels * width))


def check_width(width: float) -> float:
    if not float(width) > 0:
        raise ValueError(f"width must be a positive multiplier, got {width}")
    return float(width)


def can_halve(height: int, width: int) -> bool:
    """Whether a 2x2 max-pool still makes sense: an 8x8 digit runs out of pixels early."""
    return min(height, width) >= 2


def init_conv_weights(model: nn.Module) -> None:
    """He et al. 2015 ("Delving Deep into Rectifiers") normal init for the convs feeding ReLUs."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")


class SmallCNN(nn.Module):
    """conv3x3 [+BN] + ReLU (+ max-pool 2) blocks -> flatten -> linear ``hidden`` -> ReLU -> head.

    A block is followed by a 2x2 max-pool while both spatial sizes are at least 2, so the same
    configuration runs on 8x8 digits (8 -> 4 -> 2) and on 28x28 / 32x32 images.
    With ``batch_norm`` the convolutions drop their bias, which BatchNorm's shift makes redundant.
    ``width`` multiplies every conv's channels and ``hidden`` (rounded, at least 1): the "load"
    axis of width sweeps (Yang et al. 2021).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        batch_norm: bool = False,
        hidden: int = 64,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        multiplier = check_width(width)
        in_channels, height, width = as_image_shape(input_shape, "SmallCNN")
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        if int(hidden) < 1:
            raise ValueError(f"hidden must be a positive int, got {hidden}")
        channels = [scaled_width(c, multiplier) for c in channels]
        hidden = scaled_width(int(hidden), multiplier)
        layers: list[nn.Module] = []
        for out_channels in channels:
            layers += conv_block(in_channels, out_channels, bool(batch_norm))
            if can_halve(height, width):
                layers.append(nn.MaxPool2d(2))
                height, width = height // 2, width // 2
            in_channels = out_channels
        self.conv = nn.Sequential(*layers)
        self.fc = nn.Linear(in_channels * height * width, int(hidden))
        self.head = nn.Linear(int(hidden), check_num_classes(num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.fc(torch.flatten(self.conv(x), 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def conv_block(in_channels: int, out_channels: int, batch_norm: bool) -> list[nn.Module]:
    """conv3x3 (padding 1, size-preserving) [+ BatchNorm2d] + ReLU."""
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=not batch_norm)
    norm = [nn.BatchNorm2d(out_channels)] if batch_norm else []
    return [conv, *norm, nn.ReLU()]
