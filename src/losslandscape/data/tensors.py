"""The researcher's own arrays: a ``.pt``, ``.npz`` or ``.safetensors`` file of inputs and targets.

Any shape and dtype: float features (standardized), integer token ids (kept int64), class indices,
regression values or multi-label vectors as targets. Nothing is unpickled: ``torch.load`` runs with
``weights_only=True`` and ``np.load`` with ``allow_pickle=False``.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from losslandscape.data.splits import (
    DataSplits,
    DatasetError,
    as_tensor,
    build_any_splits,
    file_sha256,
    hold_out,
    integer_inputs_as,
)

TENSOR_SUFFIXES = (".pt", ".pth", ".npz", ".safetensors")


def load_tensors(
    path: str,
    x_key: str = "x",
    y_key: str = "y",
    x_test_key: str | None = "x_test",
    y_test_key: str | None = "y_test",
    num_classes: int | str | None = "auto",
    test_fraction: float = 0.2,
    standardize: bool = True,
    integer_inputs: str = "ids",
    train_size: int | None = None,
    seed: int = 0,
) -> DataSplits:
    """Inputs ``x_key`` and targets ``y_key`` of ``path``, with its own test split when the file holds
    ``x_test_key`` and ``y_test_key``, else a seeded random ``test_fraction`` held out.

    ``num_classes``: ``auto`` infers ``max + 1`` for 1-D integer targets (class labels) and ``None``
    for anything else (float values, 2-D targets); an integer declares class indices in
    ``[0, num_classes)``; ``None`` declares values (regression, multi-label).
    ``integer_inputs``: ``ids`` keeps integer inputs as int64 ids; ``features`` makes them float32
    values (uint8 pixels, counts), standardized like any float input.
    """
    path = Path(path)
    keys, read = open_tensor_file(path)
    train_keys, test_keys = (x_key, y_key), split_keys(path, keys, x_test_key, y_test_key)
    for key in (*train_keys, *(test_keys or ())):
        if key not in keys:
            raise DatasetError(
                f"{path} has no key {key!r} (keys found: {', '.join(sorted(keys)) or 'none'}); "
                f"set dataset.x_key / y_key / x_test_key / y_test_key to the right names"
            )
    where = {name: f"key {key!r} of {path}" for name, key in
             zip(("train_x", "train_y", "test_x", "test_y"), (*train_keys, *(test_keys or train_keys)))}
    x, y = (as_tensor(read(key), where[name]) for key, name in zip(train_keys, ("train_x", "train_y")))
    if test_keys is None:
        check_same_length(x, y, where["train_x"], where["train_y"])
        train, test = hold_out(x, y, test_fraction, seed)
        where = {**where, "test_x": f"{where['train_x']} (held-out part)", "test_y": f"{where['train_y']} (held-out part)"}
    else:
        train = (x, y)
        test = tuple(as_tensor(read(key), where[name]) for key, name in zip(test_keys, ("test_x", "test_y")))
    train, test = ((integer_inputs_as(x, integer_inputs), y) for x, y in (train, test))
    classes = resolve_num_classes(num_classes, train[1], test[1], where["train_y"])
    return build_any_splits(
        safe_name(path.stem), train, test, classes, bool(standardize), train_size, seed, file_sha256(path), where
    )


def open_tensor_file(path: Path) -> tuple[list[str], Callable[[str], Any]]:
    """The keys of ``path`` and a reader of one key, for each container format."""
    if not path.is_file():
        raise DatasetError(f"tensor file not found: {path}; set dataset.path to a {'/'.join(TENSOR_SUFFIXES)} file")
    suffix = path.suffix.lower()
    if suffix not in TENSOR_SUFFIXES:
        raise DatasetError(f"{path} has suffix {path.suffix!r}; expected one of {', '.join(TENSOR_SUFFIXES)}")
    try:
        if suffix == ".npz":
            arrays = np.load(path, allow_pickle=False)
            return list(arrays.files), lambda key: _npz_array(arrays, key, path)
        if suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as stream:
                keys = list(stream.keys())
            return keys, lambda key: _safetensors_tensor(path, key)
        content = torch.load(path, map_location="cpu", weights_only=True)
    except DatasetError:
        raise
    except pickle.UnpicklingError as error:
        raise DatasetError(
            f"cannot read {path} with torch.load(weights_only=True): {_unpickler_reason(error)}; save a dict "
            "of plain tensors (torch.save({'x': tensor, 'y': tensor}, path)) or use .npz / .safetensors"
        ) from error
    except Exception as error:  # each reader raises its own types for a corrupt file
        raise DatasetError(f"cannot read {path} as {suffix}: {_first_line(error)}") from error
    if not isinstance(content, Mapping) or not all(isinstance(k, str) for k in content):
        raise DatasetError(
            f"{path} holds a {type(content).__name__}; expected a dict of tensors saved with "
            "torch.save({'x': inputs, 'y': targets}, path)"
        )
    return list(content), content.__getitem__


def split_keys(path: Path, keys: list[str], x_test_key: str | None, y_test_key: str | None) -> tuple[str, str] | None:
    """The file's own test keys when both are present, ``None`` (split it) when neither is."""
    present = [key for key in (x_test_key, y_test_key) if key is not None and key in keys]
    if not present:
        return None
    if len(present) == 1:
        missing = y_test_key if present[0] == x_test_key else x_test_key
        raise DatasetError(
            f"{path} has test key {present[0]!r} but not {missing!r} (keys found: {', '.join(sorted(keys))}); "
            "give both test keys, or set dataset.x_test_key=null dataset.y_test_key=null to split the train keys"
        )
    return x_test_key, y_test_key


def resolve_num_classes(num_classes: int | str | None, train_y: torch.Tensor, test_y: torch.Tensor, label: str) -> int | None:
    """``auto``: ``max + 1`` for 1-D integer targets, ``None`` (values) otherwise; else as configured."""
    if num_classes is None:
        return None
    if num_classes == "auto":
        if train_y.dim() != 1 or train_y.is_floating_point() or train_y.dtype == torch.bool:
            return None
        both = torch.cat([train_y.reshape(-1), test_y.reshape(-1)]).to(torch.int64)
        if int(both.min()) < 0:
            raise DatasetError(
                f"{label} holds integer targets down to {int(both.min())}: class indices start at 0; "
                "set dataset.num_classes=null if they are values, not classes"
            )
        return int(both.max()) + 1
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise DatasetError(f"num_classes must be a positive integer, 'auto' or null, got {num_classes!r}")
    return num_classes


def check_same_length(x: torch.Tensor, y: torch.Tensor, x_label: str, y_label: str) -> None:
    if x.dim() < 1 or y.dim() < 1 or x.shape[0] != y.shape[0]:
        raise DatasetError(
            f"{x_label} has {x.shape[0] if x.dim() else 'no'} examples but {y_label} has "
            f"{y.shape[0] if y.dim() else 'no'}; inputs and targets must have the same length along dim 0"
        )


def safe_name(stem: str) -> str:
    """The file's stem as a dataset name that is safe in a cache folder name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "tensors"


def _npz_array(arrays: Any, key: str, path: Path) -> np.ndarray:
    try:
        return arrays[key]
    except ValueError as error:  # an object array needs pickle, which stays off
        raise DatasetError(f"key {key!r} of {path} cannot be read without pickle: {_first_line(error)}; "
                           "save it as a numeric array") from error


def _safetensors_tensor(path: Path, key: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as stream:
        return stream.get_tensor(key)


def _unpickler_reason(error: BaseException) -> str:
    """The one informative sentence of torch's long weights-only message."""
    found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. Please|\n\n|$)", str(error), re.DOTALL)
    return " ".join(found.group(1).split()) if found else _first_line(error)


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
