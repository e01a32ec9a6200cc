"""The one shape every dataset takes: train and test tensors that live in memory (and later on the device)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class DataSplits:
    """A classification dataset as resident tensors.

    ``*_x`` are float32 (images ``(N, C, H, W)``, vectors ``(N, F)``), standardized with train
    statistics; ``*_y`` are int64 class indices in ``[0, num_classes)``.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x, y)`` of the split called ``name`` (``train`` or ``test``)."""
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}: expected 'train' or 'test'")
        return (self.train_x, self.train_y) if name == "train" else (self.test_x, self.test_y)
