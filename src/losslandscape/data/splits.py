"""The one shape every dataset takes: train and test tensors that live in memory (and later on the device)."""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError


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


class DatasetError(UserError):
    """Bad dataset input: missing or corrupt files, wrong checksum, unknown option, impossible size."""


def build_splits(
    name: str,
    train_x: np.ndarray | torch.Tensor,
    train_y: np.ndarray | torch.Tensor,
    test_x: np.ndarray | torch.Tensor,
    test_y: np.ndarray | torch.Tensor,
    num_classes: int,
    train_size: int | None = None,
    seed: int = 0,
) -> DataSplits:
    """The one way every loader turns raw arrays into :class:`DataSplits`.

    Converts to float32 / int64 tensors, checks the labels, keeps a seeded ``train_size`` subset of
    the training split (test stays whole), then standardizes both splits with the statistics of the
    training split that is actually returned, so train inputs have mean 0 and std 1 per channel.
    """
    train_x, test_x = _as_float32(train_x), _as_float32(test_x)
    train_y, test_y = _as_int64(train_y), _as_int64(test_y)
    _check_labels(name, "train", train_y, num_classes)
    _check_labels(name, "test", test_y, num_classes)
    train_x, train_y = subset_train(train_x, train_y, train_size, seed)
    train_x, test_x = standardize_with_train_stats(train_x, test_x)
    return DataSplits(name, train_x, train_y, test_x, test_y, num_classes)


def stratified_split(
    x: np.ndarray, y: np.ndarray, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(train_x, test_x, train_y, test_y)``: every class keeps its share in both splits."""
    # sklearn is imported here so that `import losslandscape.data` stays cheap.
    from sklearn.model_selection import train_test_split

    if not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    return train_test_split(x, y, test_size=test_fraction, random_state=seed, stratify=y)


def subset_train(
    train_x: torch.Tensor, train_y: torch.Tensor, train_size: int | None, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A random subset of ``train_size`` examples chosen by ``seed`` (all of them when ``None``).

    The kept examples stay in their original order, so a subset of a subset is predictable.
    """
    available = train_x.shape[0]
    if train_size is None:
        return train_x, train_y
    if isinstance(train_size, bool) or not isinstance(train_size, numbers.Integral) or train_size < 1:
        raise DatasetError(f"train_size must be a positive integer or null, got {train_size!r}")
    if train_size > available:
        raise DatasetError(
            f"train_size={train_size} is larger than the {available} training examples available; "
            f"use train_size <= {available} or null for all of them"
        )
    generator = torch.Generator().manual_seed(int(seed))
    kept = torch.randperm(available, generator=generator)[: int(train_size)].sort().values
    return train_x[kept], train_y[kept]


def standardize_with_train_stats(
    train_x: torch.Tensor, test_x: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Both splits shifted and scaled by the train mean and std of each channel (dim 1).

    For images ``(N, C, H, W)`` that is one scalar per channel, for vectors ``(N, F)`` one per
    feature. A constant channel keeps std 1 instead of dividing by zero.
    """
    reduce_dims = [d for d in range(train_x.dim()) if d != 1]
    std, mean = torch.std_mean(train_x, dim=reduce_dims, keepdim=True, correction=0)
    std = torch.where(std > 0, std, torch.ones_like(std))
    return (train_x - mean).div_(std), (test_x - mean).div_(std)


def _as_float32(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(torch.float32)
    array = np.asarray(x, dtype=np.float32)
    # torch warns on read-only buffers (np.frombuffer); later steps may write, so copy those.
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _as_int64(y: np.ndarray | torch.Tensor) -> torch.Tensor:
    if isinstance(y, torch.Tensor):
        return y.to(torch.int64)
    array = np.asarray(y, dtype=np.int64)
    return torch.from_numpy(array if array.flags.writeable else array.copy())


def _check_labels(name: str, split: str, labels: torch.Tensor, num_classes: int) -> None:
    """Labels outside ``[0, num_classes)`` would crash the loss much later, far from the cause."""
    if labels.numel() and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(
            f"{name} {split} labels span [{int(labels.min())}, {int(labels.max())}], "
            f"expected class indices in [0, {num_classes})"
        )
