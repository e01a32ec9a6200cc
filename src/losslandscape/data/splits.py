"""The one shape every dataset takes: train and test tensors that live in memory (and later on the device)."""

from __future__ import annotations

import functools
import hashlib
import numbers
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError


@dataclass
class DataSplits:
    """A dataset as resident train and test tensors.

    ``*_x`` are float32 features (images ``(N, C, H, W)``, vectors ``(N, F)``, sequences), usually
    standardized with train statistics, or int64 indices (token ids) that are never standardized.
    With an integer ``num_classes`` the targets ``*_y`` are int64 class indices in
    ``[0, num_classes)`` of any shape (``(N,)`` labels, ``(N, T)`` next tokens); with
    ``num_classes=None`` they are float32 values of any shape (regression targets, multi-label
    vectors) and the configured loss decides what they mean.
    ``fingerprint`` is a content hash of the files the data was read from (``None`` for built-in
    sets whose files are fixed): a cache key over the config alone would not see an edited file.
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int | None
    fingerprint: str | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @functools.cached_property
    def content_hash(self) -> str:
        """Hash of the tensors themselves (every split's inputs and targets): the data part of the
        result store's and the training cache's keys, so other data of the same size is never
        mistaken for this one, whatever file or generator it came from."""
        from ..store import content_digest

        return content_digest({"train": (self.train_x, self.train_y), "test": (self.test_x, self.test_y)})

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


# ---------------------------------------------------------------- data of any kind (the researcher's own files)


def build_any_splits(
    name: str,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    num_classes: int | None,
    standardize: bool = True,
    train_size: int | None = None,
    seed: int = 0,
    fingerprint: str | None = None,
    labels: dict[str, str] | None = None,
) -> DataSplits:
    """:func:`build_splits` for inputs and targets of any dtype and shape.

    Float (and bool) inputs become float32, checked finite and, with ``standardize``, scaled by
    the train statistics of each channel (dim 1); integer inputs (token ids) stay int64, never
    standardized. With an integer ``num_classes`` the targets must be class indices in range;
    with ``None`` they are values (regression, multi-label) and become float32, checked finite.
    ``labels`` names each of ``train_x, train_y, test_x, test_y`` in errors (a file and a key).
    """
    labels = {"train_x": f"{name} train inputs", "train_y": f"{name} train targets",
              "test_x": f"{name} test inputs", "test_y": f"{name} test targets", **(labels or {})}
    train_x, test_x = as_inputs(train[0], labels["train_x"]), as_inputs(test[0], labels["test_x"])
    train_y = as_targets(train[1], num_classes, labels["train_y"])
    test_y = as_targets(test[1], num_classes, labels["test_y"])
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        if x.shape[0] != y.shape[0]:
            raise DatasetError(
                f"{labels[split + '_x']} has {x.shape[0]} examples but {labels[split + '_y']} has {y.shape[0]}; "
                "inputs and targets must have the same length along dim 0"
            )
    for part, a, b in (("x", train_x, test_x), ("y", train_y, test_y)):
        if a.shape[1:] != b.shape[1:] or a.dtype != b.dtype:
            raise DatasetError(
                f"{labels['train_' + part]} has {a.dtype} examples of shape {tuple(a.shape[1:])} but "
                f"{labels['test_' + part]} {b.dtype} of shape {tuple(b.shape[1:])}; both splits need one "
                "example shape and kind (float or integer)"
            )
    if num_classes is not None:
        for labels_, label in ((train_y, labels["train_y"]), (test_y, labels["test_y"])):
            if labels_.numel() and (labels_.min() < 0 or labels_.max() >= num_classes):
                raise DatasetError(
                    f"{label} spans [{int(labels_.min())}, {int(labels_.max())}], expected class indices in "
                    f"[0, {num_classes}); fix dataset.num_classes (null for values that are not classes)"
                )
    train_x, train_y = subset_train(train_x, train_y, train_size, seed)
    if standardize and train_x.is_floating_point():
        train_x, test_x = standardize_with_train_stats(train_x, test_x)
    return DataSplits(name, train_x, train_y, test_x, test_y, num_classes, fingerprint)


def as_inputs(x: np.ndarray | torch.Tensor, label: str) -> torch.Tensor:
    """float32 features (float or bool data, checked finite) or int64 indices (integer data)."""
    x = as_tensor(x, label)
    if x.dim() < 1:
        raise DatasetError(f"{label} is a scalar; expected one row per example (dim 0 = examples)")
    if x.dtype == torch.bool or x.is_floating_point():
        x = x.to(torch.float32)
        check_finite(x, label)
        return x
    return x.to(torch.int64)


def as_targets(y: np.ndarray | torch.Tensor, num_classes: int | None, label: str) -> torch.Tensor:
    """int64 class indices when ``num_classes`` is set (integral floats are accepted), else float32 values."""
    y = as_tensor(y, label)
    if y.dim() < 1:
        raise DatasetError(f"{label} is a scalar; expected one target per example (dim 0 = examples)")
    if num_classes is None:
        y = y.to(torch.float32)
        check_finite(y, label)
        return y
    if y.is_floating_point():
        check_finite(y, label)
        if not torch.equal(y, y.round()):
            raise DatasetError(
                f"{label} holds non-integer values ({y.dtype}) but num_classes={num_classes} asks for class "
                "indices; set dataset.num_classes=null for regression or multi-label targets"
            )
    return y.to(torch.int64)


def as_tensor(array: np.ndarray | torch.Tensor, label: str) -> torch.Tensor:
    """A CPU tensor of a real number type; strings, objects and complex numbers are refused."""
    if isinstance(array, torch.Tensor):
        tensor = array.detach().cpu()
    else:
        array = np.asarray(array)
        if array.dtype.kind in "iu":
            array = array.astype(np.int64)  # uint16/32/64 have few torch kernels; ids fit in int64
        elif array.dtype.kind not in "fb":
            raise DatasetError(f"{label} has dtype {array.dtype}; expected numbers (float, int or bool)")
        tensor = torch.from_numpy(array if array.flags.writeable else array.copy())
    if tensor.is_complex() or tensor.is_quantized:
        raise DatasetError(f"{label} has dtype {tensor.dtype}; expected real numbers (float, int or bool)")
    return tensor


def check_finite(x: torch.Tensor, label: str) -> None:
    """NaN or infinite values would turn every loss into NaN far from the cause."""
    bad = ~torch.isfinite(x)
    if bad.any():
        first = int(bad.reshape(bad.shape[0], -1).any(dim=1).nonzero()[0])
        raise DatasetError(
            f"{label} holds {int(bad.sum())} NaN or infinite values (the first in example {first}); "
            "remove or impute them before loading"
        )


INTEGER_INPUTS = ("ids", "features")


def integer_inputs_as(x: torch.Tensor, integer_inputs: str) -> torch.Tensor:
    """``x`` as float32 when integer inputs are ``features`` (uint8 pixels, counts), else unchanged.

    Integers are ids by default (token or category ids, kept int64, never standardized), because
    rescaling an id would make it meaningless; pixels and counts are values and need floats.
    """
    if integer_inputs not in INTEGER_INPUTS:
        raise DatasetError(f"integer_inputs must be one of {', '.join(INTEGER_INPUTS)}, got {integer_inputs!r}")
    if integer_inputs == "features" and not x.is_floating_point():
        return x.to(torch.float32)
    return x


def random_split(n: int, test_fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train_indices, test_indices)``: a seeded random ``test_fraction`` of ``range(n)`` is held out.

    Indices stay in their original order within each split.
    """
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must lie strictly between 0 and 1, got {test_fraction!r}")
    n_test = round(n * test_fraction)
    if not 1 <= n_test < n:
        raise DatasetError(
            f"{n} examples are too few for test_fraction={test_fraction}: the split needs at least one "
            "example on each side; give more data or a separate test split"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed)))
    return order[n_test:].sort().values, order[:n_test].sort().values


def hold_out(
    x: torch.Tensor, y: torch.Tensor, test_fraction: float, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """``((train_x, train_y), (test_x, test_y))`` by :func:`random_split` of one set of examples."""
    train_index, test_index = random_split(x.shape[0], test_fraction, seed)
    return (x[train_index], y[train_index]), (x[test_index], y[test_index])


def file_sha256(*paths: str | Path) -> str:
    """Content hash of the files ``paths``, in order (their names do not enter it, only their bytes)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")  # a boundary, so moving bytes between files changes the hash
    return digest.hexdigest()
