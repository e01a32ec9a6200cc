"""A Hugging Face ``datasets`` dataset saved with ``save_to_disk``: two numeric columns become inputs and targets.

Read with ``datasets.load_from_disk`` (Arrow files, nothing unpickled, nothing downloaded) in the
numpy format, so columns of equal-length lists or arrays come back as one array per split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from losslandscape.data.splits import (
    DataSplits,
    DatasetError,
    as_tensor,
    build_any_splits,
    file_sha256,
    hold_out,
    integer_inputs_as,
)
from losslandscape.data.tensors import check_same_length, resolve_num_classes, safe_name


def load_hf_disk(
    path: str,
    x_column: str = "x",
    y_column: str = "y",
    train_split: str = "train",
    test_split: str | None = "test",
    num_classes: int | str | None = "auto",
    test_fraction: float = 0.2,
    standardize: bool = True,
    integer_inputs: str = "ids",
    train_size: int | None = None,
    seed: int = 0,
) -> DataSplits:
    """Columns ``x_column`` / ``y_column`` of the saved dataset at ``path``.

    A ``DatasetDict`` gives its ``train_split`` and, when present, its ``test_split``; a single
    ``Dataset`` (or a dict without the test split) is split with a seeded random ``test_fraction``.
    ``num_classes``: ``auto`` takes a ``ClassLabel`` column's count, else as in ``dataset=tensors``,
    and so does ``integer_inputs`` (``ids`` or ``features``).
    """
    import datasets

    try:
        saved = datasets.load_from_disk(str(path))
    except FileNotFoundError as error:
        raise DatasetError(f"no dataset saved with save_to_disk at {path}: {error}; set dataset.path") from error
    if isinstance(saved, datasets.DatasetDict):
        if train_split not in saved:
            raise DatasetError(f"{path} has no split {train_split!r} (splits found: {', '.join(saved)}); "
                               "set dataset.train_split")
        train_set, test_set = saved[train_split], saved.get(test_split) if test_split is not None else None
    else:
        train_set, test_set = saved, None
    where = {"train_x": f"column {x_column!r} of {path}", "train_y": f"column {y_column!r} of {path}"}
    x, y = column_arrays(train_set, x_column, y_column, path)
    if test_set is None:
        check_same_length(x, y, where["train_x"], where["train_y"])
        train, test = hold_out(x, y, test_fraction, seed)
        where.update(test_x=f"{where['train_x']} (held-out part)", test_y=f"{where['train_y']} (held-out part)")
    else:
        train, test = (x, y), column_arrays(test_set, x_column, y_column, path)
        where.update(test_x=f"{where['train_x']} ({test_split} split)", test_y=f"{where['train_y']} ({test_split} split)")
    label_feature = train_set.features[y_column]
    if num_classes == "auto" and isinstance(label_feature, datasets.ClassLabel):
        num_classes = label_feature.num_classes
    train, test = ((integer_inputs_as(x, integer_inputs), y) for x, y in (train, test))
    classes = resolve_num_classes(num_classes, train[1], test[1], where["train_y"])
    files = [f["filename"] for s in (train_set, test_set) if s is not None for f in s.cache_files]
    return build_any_splits(
        safe_name(Path(path).resolve().name), train, test, classes, bool(standardize), train_size, seed,
        file_sha256(*files), where,
    )


def column_arrays(dataset, x_column: str, y_column: str, path: str):
    """The two columns as tensors; a ragged column (rows of different lengths) is refused."""
    for column in (x_column, y_column):
        if column not in dataset.column_names:
            raise DatasetError(f"{path} has no column {column!r} (columns found: {', '.join(dataset.column_names)}); "
                               "set dataset.x_column / y_column")
    arrays = dataset.with_format("numpy", columns=[x_column, y_column])[:]
    tensors = []
    for column in (x_column, y_column):
        array = np.asarray(arrays[column])
        if array.dtype == object:
            raise DatasetError(f"column {column!r} of {path} has rows of different lengths or non-numbers; "
                               "every row needs the same shape")
        tensors.append(as_tensor(array, f"column {column!r} of {path}"))
    return tuple(tensors)
