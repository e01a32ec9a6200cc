"""A 1D CNN for sequences: the convolutional baseline of MNIST-1D (Greydanus 2020, ``ConvBase``).

Three strided convolutions with ReLU, flatten, a linear head; with the defaults on length-40
MNIST-1D it is the paper's model (5,210 parameters, lengths 40 -> 19 -> 10 -> 5).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from losslandscape.models.cnn import as_shape, check_num_classes, check_width, scaled_width


def as_sequence_shape(input_shape: Sequence[int]) -> tuple[int, int]:
    """``(channels, length)``: a 1-D input ``(L,)`` is one channel, ``(C, L)`` is used as given."""
    shape = as_shape(input_shape)
    if len(shape) == 1:
        shape = (1, *shape)
    if len(shape) != 2 or min(shape) < 1:
        raise ValueError(f"CNN1d needs sequence input of shape (L,) or (C, L), got input_shape={shape}; "
                         "use model=cnn for images or model=mlp for any shape")
    return shape  # type: ignore[return-value]


class CNN1d(nn.Module):
    """conv1d (kernel ``k_i``, stride ``stride``, padding ``padding``) + ReLU per entry of ``channels``
    -> flatten (``features``) -> Linear head. ``width`` multiplies every channel count.

    Inputs ``(N, L)`` are read as one channel (``(N, 1, L)``), ``(N, C, L)`` as ``C`` channels.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (25, 25, 25),
        kernel_sizes: Sequence[int] = (5, 3, 3),
        stride: int = 2,
        padding: int = 1,
        width: float = 1.0,
    ) -> None:
        super().__init__()
        multiplier = check_width(width)
        self.in_channels, length = as_sequence_shape(input_shape)
        channels, kernel_sizes = [int(c) for c in channels], [int(k) for k in kernel_sizes]
        if not channels or len(channels) != len(kernel_sizes) or min(channels + kernel_sizes) < 1:
            raise ValueError(f"channels and kernel_sizes must be equally long lists of positive ints, "
                             f"got {channels} and {kernel_sizes}")
        layers: list[nn.Module] = []
        in_channels = self.in_channels
        for out_channels, kernel in zip((scaled_width(c, multiplier) for c in channels), kernel_sizes):
            layers += [nn.Conv1d(in_channels, out_channels, kernel, stride=int(stride), padding=int(padding)), nn.ReLU()]
            length = (length + 2 * int(padding) - kernel) // int(stride) + 1
            if length < 1:
                raise ValueError(f"input of length {as_sequence_shape(input_shape)[1]} is too short for "
                                 f"kernels {kernel_sizes} with stride {stride}")
            in_channels = out_channels
        self.conv = nn.Sequential(*layers)
        self.head = nn.Linear(in_channels * length, check_num_classes(num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:  # (N, L): one channel
            x = x.unsqueeze(1)
        return torch.flatten(self.conv(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
