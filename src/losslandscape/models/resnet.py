"""ResNet-20 for CIFAR-sized images.

He, Zhang, Ren & Sun 2016, "Deep Residual Learning for Image Recognition", Section 4.2: a 3x3 stem
conv with 16 filters, then three stages of n = 3 basic blocks with 16, 32 and 64 filters (6n + 2 = 20
weighted layers), the second and third stage halving the feature map with a stride-2 first conv,
then global average pooling and a linear classifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from losslandscape.models.cnn import (
    as_image_shape,
    check_num_classes,
    check_width,
    init_conv_weights,
    scaled_width,
)

STAGE_CHANNELS = (16, 32, 64)
BLOCKS_PER_STAGE = 3


def conv3x3(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    # No bias: every conv is followed by BatchNorm, whose shift does the same job.
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU (He et al. 2016, Fig. 2)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = conv3x3(in_channels, out_channels, stride)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3x3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = projection_shortcut(in_channels, out_channels, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def projection_shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    """Identity when the shape is kept, else a strided 1x1 conv + BN ("option B" of He et al.).

    The paper's CIFAR nets use option A (zero-padded identity); option B is used here because every
    layer then is a plain, parameterized module (no hand-written padding in ``forward``), which is
    what direction normalization and ``torch.func`` over parameter dicts expect. It adds
    2 x (1x1 conv + BN) = 2,752 parameters at width 1.
    """
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (He et al. 2016, Sec. 4.2) with option-B projection shortcuts.

    Channels are ``16/32/64 * width`` (rounded, at least 1). Stride-2 convs with padding 1 map any
    size >= 1 to a valid size (8x8 digits: 8 -> 4 -> 2), so the net runs on small inputs unchanged.
    At width 1 on CIFAR-10 it has 272,474 parameters (269,722 of the option-A original + 2,752).
    """

    def __init__(self, input_shape: Sequence[int], num_classes: int, width: float = 1.0) -> None:
        super().__init__()
        in_channels = as_image_shape(input_shape, "ResNet20")[0]
        channels = [scaled_width(c, check_width(width)) for c in STAGE_CHANNELS]
        self.stem = nn.Sequential(
            conv3x3(in_channels, channels[0]), nn.BatchNorm2d(channels[0]), nn.ReLU()
        )
        blocks: list[nn.Module] = []
        in_channels = channels[0]
        for stage, out_channels in enumerate(channels):
            for index in range(BLOCKS_PER_STAGE):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(BasicBlock(in_channels, out_channels, stride))
                in_channels = out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(in_channels, check_num_classes(num_classes))
        init_conv_weights(self)  # He et al. 2015 init, as the paper does

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))  # global average pooling

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
