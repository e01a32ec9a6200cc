"""VGG with BatchNorm, in the CIFAR form used throughout the loss-landscape literature.

Simonyan & Zisserman 2015, "Very Deep Convolutional Networks for Large-Scale Image Recognition"
(configurations A, B, D, E = VGG-11/13/16/19), with BatchNorm after every convolution
(Ioffe & Szegedy 2015) and, as is usual for 32x32 inputs, the three large fully connected layers
replaced by a single linear classifier on the globally pooled last feature map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from losslandscape.models.cnn import (
    as_image_shape,
    can_halve,
    check_num_classes,
    check_width,
    conv_block,
    init_conv_weights,
    scaled_width,
)

POOL = "M"

# Output channels of each conv3x3 and "M" for a 2x2 max-pool (Simonyan & Zisserman, Table 1).
VGG_CONFIGS: dict[int, list[int | str]] = {
    11: [64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    13: [64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL],
    16: [64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL],
    19: [
        64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL,
        512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL,
    ],
}  # fmt: skip


class VGG(nn.Module):
    """VGG-``depth`` with BatchNorm; conv channels multiplied by ``width`` (rounded, at least 1).

    A max-pool is skipped once the feature map is 1 pixel high or wide, so the network also runs on
    8x8 digits; the final map is averaged globally (a no-op on CIFAR, where it is already 1x1).
    Convolutions have no bias because the following BatchNorm's shift makes it redundant.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        depth: int = 11,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        in_channels, height, map_width = as_image_shape(input_shape, f"VGG-{depth}")
        width = check_width(width)
        if int(depth) not in VGG_CONFIGS:
            valid = ", ".join(str(d) for d in VGG_CONFIGS)
            raise ValueError(f"unknown VGG depth {depth}: expected one of {valid}")
        layers: list[nn.Module] = []
        for entry in VGG_CONFIGS[int(depth)]:
            if entry == POOL:
                if can_halve(height, map_width):
                    layers.append(nn.MaxPool2d(2))
                    height, map_width = height // 2, map_width // 2
                continue
            out_channels = scaled_width(int(entry), width)
            layers += conv_block(in_channels, out_channels, batch_norm=True)
            in_channels = out_channels
        self.conv = nn.Sequential(*layers)
        self.head = nn.Linear(in_channels, check_num_classes(num_classes))
        init_conv_weights(self)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean(dim=(2, 3))  # global average pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

