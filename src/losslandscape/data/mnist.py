"""MNIST and Fashion-MNIST from their original IDX files (plain or gzipped), read with numpy."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from losslandscape.data.splits import DataSplits, DatasetError, build_splits

# variant -> name shown to the user; both variants share the file names and the format.
MNIST_VARIANTS = {"mnist": "MNIST", "fashion_mnist": "Fashion-MNIST"}
MNIST_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
IDX_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
IDX_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)
MNIST_IMAGE_SIDE = 28
MNIST_NUM_CLASSES = 10


def load_mnist(
    root: str, variant: str = "mnist", train_size: int | None = None, seed: int = 0
) -> DataSplits:
    """The 60,000 / 10,000 split of ``variant`` as ``(N, 1, 28, 28)`` images, standardized.

    ``root`` is the folder holding the four IDX files, each plain or with a ``.gz`` suffix.
    ``train_size`` keeps a seeded random subset of the training split; the test split stays whole.
    """
    if variant not in MNIST_VARIANTS:
        raise DatasetError(f"unknown MNIST variant {variant!r}: expected one of {sorted(MNIST_VARIANTS)}")
    title = MNIST_VARIANTS[variant]
    paths = find_mnist_files(Path(root), title)
    train_x, train_y = _read_image_label_pair(paths["train_images"], paths["train_labels"], title)
    test_x, test_y = _read_image_label_pair(paths["test_images"], paths["test_labels"], title)
    return build_splits(variant, train_x, train_y, test_x, test_y, MNIST_NUM_CLASSES, train_size, seed)


def find_mnist_files(root: Path, title: str = "MNIST") -> dict[str, Path]:
    """Path of each IDX file in ``root``, the plain file where both it and the ``.gz`` exist.

    Reports every missing file at once, so the user fixes the folder in one go.
    """
    found, missing = {}, []
    for key, file_name in MNIST_FILES.items():
        plain, gzipped = root / file_name, root / f"{file_name}.gz"
        if plain.is_file():
            found[key] = plain
        elif gzipped.is_file():
            found[key] = gzipped
        else:
            missing.append(f"{plain}(.gz)")
    if missing:
        expected = ", ".join(MNIST_FILES.values())
        raise DatasetError(
            f"{title} file not found: {', '.join(missing)}. Expected in {root}: {expected} "
            f"(plain or .gz). Set dataset.root to the folder holding them "
            f"(for a torchvision download that is <root>/{title.replace('-', '')}/raw)."
        )
    return found


def read_idx(path: Path, expected_magic: int, title: str = "MNIST") -> np.ndarray:
    """The uint8 array stored in one IDX file, shaped by its header, after checking the header.

    IDX layout: a big-endian int32 magic number (0x08 = unsigned bytes, then the number of
    dimensions), one big-endian int32 per dimension, then the data in C order.
    """
    raw = _read_bytes(path, title)
    expected_ndim = expected_magic & 0xFF
    header_size = 4 + 4 * expected_ndim
    if len(raw) < 4:
        raise DatasetError(f"corrupt {title} IDX file {path}: {len(raw)} bytes, too short for a header")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DatasetError(
            f"corrupt {title} IDX file {path}: magic number 0x{magic:08x}, expected 0x{expected_magic:08x} "
            f"(uint8 data with {expected_ndim} dimension(s)); is it the right file?"
        )
    if len(raw) < header_size:
        raise DatasetError(
            f"corrupt {title} IDX file {path}: {len(raw)} bytes, shorter than its {header_size}-byte header"
        )
    shape = tuple(int(n) for n in np.frombuffer(raw, dtype=">u4", count=expected_ndim, offset=4))
    expected_size = header_size + int(np.prod(shape))
    if len(raw) != expected_size:
        raise DatasetError(
            f"corrupt {title} IDX file {path}: {len(raw)} bytes, but its header {shape} needs "
            f"{expected_size} bytes; the file is truncated or padded, fetch it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _read_bytes(path: Path, title: str) -> bytes:
    """The file's content, decompressed when it ends in ``.gz``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        with gzip.open(path, "rb") as stream:
            return stream.read()
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetError(f"corrupt {title} gzip file {path}: {error}; fetch it again") from error


def _read_image_label_pair(images_path: Path, labels_path: Path, title: str) -> tuple[np.ndarray, np.ndarray]:
    """``(images (N, 1, 28, 28), labels (N,))`` of one split, checked to belong together."""
    images = read_idx(images_path, IDX_IMAGES_MAGIC, title)
    labels = read_idx(labels_path, IDX_LABELS_MAGIC, title)
    if images.shape[1:] != (MNIST_IMAGE_SIDE, MNIST_IMAGE_SIDE):
        raise DatasetError(
            f"{title} images in {images_path} are {images.shape[1]}x{images.shape[2]}, "
            f"expected {MNIST_IMAGE_SIDE}x{MNIST_IMAGE_SIDE}"
        )
    if images.shape[0] != labels.shape[0]:
        raise DatasetError(
            f"{title} image and label counts disagree: {images.shape[0]} images in {images_path}, "
            f"{labels.shape[0]} labels in {labels_path}"
        )
    return images[:, None, :, :], labels
