"""CIFAR-10 and CIFAR-100 from the official *python* pickle batches, md5-verified before unpickling."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from losslandscape.data.splits import DataSplits, DatasetError, build_splits

CIFAR_IMAGE_SHAPE = (3, 32, 32)


@dataclass(frozen=True)
class CifarLayout:
    """Where one CIFAR flavour keeps its files and under which keys."""

    title: str
    folder: str  # the folder the official tarball extracts to
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    labels_key: bytes
    label_names_key: bytes
    official_md5: Mapping[str, str]

    @property
    def all_files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)


CIFAR_LAYOUTS = {
    10: CifarLayout(
        title="CIFAR-10",
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        labels_key=b"labels",
        label_names_key=b"label_names",
        official_md5={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
            "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
        },
    ),
    100: CifarLayout(
        title="CIFAR-100",
        folder="cifar-100-python",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        labels_key=b"fine_labels",
        label_names_key=b"fine_label_names",
        official_md5={
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffe0fc4b5b7fd4",
            "meta": "7973b15100ade9c7d40fb424638fde48",
        },
    ),
}

# The only globals a CIFAR pickle needs: numpy arrays, and `_codecs.encode`, which protocol-2
# pickles written by Python 3 use for bytes. Anything else is refused, checksum or not.
_ALLOWED_PICKLE_GLOBALS = {
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("_codecs", "encode"),
}


def load_cifar(
    root: str,
    num_classes: int = 10,
    train_size: int | None = None,
    seed: int = 0,
    md5: Mapping[str, str] | None = None,
) -> DataSplits:
    """CIFAR-10 or CIFAR-100 (fine labels) as ``(N, 3, 32, 32)`` images, standardized per channel.

    ``root`` holds the extracted ``cifar-10-batches-py`` / ``cifar-100-python`` folder, or is that
    folder. ``md5`` maps file name -> expected md5 and replaces the official table (for test
    fixtures or re-packed data); a file whose md5 differs from the table in force is never unpickled.
    ``train_size`` keeps a seeded random subset of the training split; the test split stays whole.
    """
    if num_classes not in CIFAR_LAYOUTS:
        raise DatasetError(f"unknown CIFAR num_classes {num_classes!r}: expected 10 (CIFAR-10) or 100 (CIFAR-100)")
    layout = CIFAR_LAYOUTS[num_classes]
    folder = find_cifar_folder(Path(root), layout)
    expected_md5 = dict(layout.official_md5 if md5 is None else md5)
    # Every checksum is checked before the first unpickling: a bad file stops the load up front.
    for file_name in layout.all_files:
        verify_md5(folder / file_name, expected_md5, layout.title)

    _check_label_names(folder / layout.meta_file, layout, num_classes)
    train_batches = [_read_batch(folder / name, layout) for name in layout.train_files]
    train_x = np.concatenate([images for images, _ in train_batches])
    train_y = np.concatenate([labels for _, labels in train_batches])
    test_x, test_y = _read_batch(folder / layout.test_file, layout)
    name = f"cifar{num_classes}"
    return build_splits(name, train_x, train_y, test_x, test_y, num_classes, train_size, seed)


def find_cifar_folder(root: Path, layout: CifarLayout) -> Path:
    """``root/<official folder>`` if it exists, else ``root`` itself; all expected files must be there."""
    nested = root / layout.folder
    files_in_root = any((root / name).is_file() for name in layout.all_files)
    # With nothing anywhere, name the nested paths: extracting the tarball into root creates them.
    folder = root if files_in_root and not nested.is_dir() else nested
    missing = [name for name in layout.all_files if not (folder / name).is_file()]
    if missing:
        raise DatasetError(
            f"{layout.title} file not found: {', '.join(str(folder / name) for name in missing)}. "
            f"Expected in {nested} (or directly in {root}): {', '.join(layout.all_files)} "
            f"(the python version of the dataset, extracted). Set dataset.root to the folder holding them."
        )
    return folder


def verify_md5(path: Path, expected_md5: Mapping[str, str], title: str = "CIFAR") -> None:
    """Raise unless the md5 of ``path`` equals the table's entry for its file name."""
    if path.name not in expected_md5:
        raise DatasetError(
            f"no md5 given for {title} file {path}: the md5 table has entries for "
            f"{sorted(expected_md5)}; add '{path.name}' to it (files are never unpickled unverified)"
        )
    actual = file_md5(path)
    expected = str(expected_md5[path.name]).lower()
    if actual != expected:
        raise DatasetError(
            f"md5 mismatch for {title} file {path}: expected {expected}, got {actual}. The file is "
            f"corrupt or not the official one; fetch it again (or pass an md5 table for custom files)."
        )


def file_md5(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks so big batches do not sit in memory twice."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as stream:
        while chunk := stream.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


class _CifarUnpickler(pickle.Unpickler):
    """An unpickler that builds numpy arrays and plain containers, nothing else."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR pickle")
        return super().find_class(module, name)


def _unpickle(path: Path, title: str) -> dict:
    """The dict stored in one (already verified) pickle; keys stay bytes as in the official files."""
    try:
        with path.open("rb") as stream:
            content = _CifarUnpickler(stream, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as error:
        raise DatasetError(f"cannot read {title} pickle {path}: {error}") from error
    if not isinstance(content, dict):
        raise DatasetError(f"{title} pickle {path} holds a {type(content).__name__}, expected a dict")
    return content


def _read_batch(path: Path, layout: CifarLayout) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 3, 32, 32) uint8, labels (N,))`` of one batch file."""
    batch = _unpickle(path, layout.title)
    for key in (b"data", layout.labels_key):
        if key not in batch:
            raise DatasetError(
                f"{layout.title} batch {path} has no {key!r} entry (keys: {list(batch)}); "
                f"is it a {layout.title} file?"
            )
    data = np.asarray(batch[b"data"])
    labels = np.asarray(batch[layout.labels_key], dtype=np.int64)
    row_length = int(np.prod(CIFAR_IMAGE_SHAPE))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != row_length:
        raise DatasetError(
            f"{layout.title} batch {path}: data is {data.dtype} {data.shape}, expected uint8 (N, {row_length})"
        )
    if labels.shape != (data.shape[0],):
        raise DatasetError(
            f"{layout.title} batch {path}: {data.shape[0]} images but {labels.size} labels"
        )
    # Rows are channel-major (1024 red, 1024 green, 1024 blue values), so a plain reshape gives CHW.
    return data.reshape(-1, *CIFAR_IMAGE_SHAPE), labels


def _check_label_names(meta_path: Path, layout: CifarLayout, num_classes: int) -> None:
    """The meta file's class list must match ``num_classes``: catches CIFAR-10 vs CIFAR-100 mix-ups."""
    meta = _unpickle(meta_path, layout.title)
    names = meta.get(layout.label_names_key)
    if names is None or len(names) != num_classes:
        found = "no" if names is None else len(names)
        raise DatasetError(
            f"{layout.title} meta file {meta_path} lists {found} {layout.label_names_key.decode()}, "
            f"expected {num_classes}"
        )
