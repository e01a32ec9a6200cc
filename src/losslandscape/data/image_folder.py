"""A folder of images, one sub-folder per class (torchvision's ``ImageFolder`` layout), read with Pillow.

Class ``i`` is the ``i``-th sub-folder in sorted order, as in torchvision. Every image is converted
to RGB or grayscale, optionally resized, scaled to ``[0, 1]`` and normalized per channel.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from losslandscape.data.splits import DataSplits, DatasetError, build_any_splits, file_sha256, stratified_split
from losslandscape.data.tensors import safe_name

PIL_MODES = {1: "L", 3: "RGB"}  # channels -> Pillow mode


def load_image_folder(
    root: str,
    test_root: str | None = None,
    size: Sequence[int] | None = None,
    channels: int = 3,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    test_fraction: float = 0.2,
    train_size: int | None = None,
    seed: int = 0,
) -> DataSplits:
    """The images under ``root`` as ``(N, channels, H, W)`` float32, labels by sorted class folder.

    ``test_root`` (same class folders) is the test split; without it a seeded stratified
    ``test_fraction`` of ``root`` is held out. ``size`` ``[H, W]`` resizes (bilinear); ``None``
    keeps the files' size, which must then be the same everywhere. ``mean`` and ``std`` (one per
    channel, on the ``[0, 1]`` scale) normalize; when ``None`` they are the train split's own.
    """
    if channels not in PIL_MODES:
        raise DatasetError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    size = check_size(size)
    normalization = check_normalization(mean, std, channels)
    classes, train_files = list_class_files(Path(root))
    if test_root is None:
        images, labels = read_images(train_files, channels, size)
        train_x, test_x, train_y, test_y = stratified_split_checked(images, labels, classes, test_fraction, seed, root)
        files = [path for paths in train_files for path in paths]
    else:
        test_classes, test_files = list_class_files(Path(test_root))
        if test_classes != classes:
            raise DatasetError(
                f"class folders differ: {root} has {classes}, {test_root} has {test_classes}; "
                "the test folder needs the same class sub-folders"
            )
        train_x, train_y = read_images(train_files, channels, size)
        test_x, test_y = read_images(test_files, channels, size)
        check_same_size(train_x, test_x, train_files, test_files)
        files = [path for paths in (*train_files, *test_files) for path in paths]
    if normalization is not None:
        shift, scale = (torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1) for v in normalization)
        train_x, test_x = (train_x - shift) / scale, (test_x - shift) / scale
    return build_any_splits(
        safe_name(Path(root).resolve().name), (train_x, train_y), (test_x, test_y), len(classes),
        standardize=normalization is None, train_size=train_size, seed=seed, fingerprint=folder_fingerprint(files),
    )


def list_class_files(root: Path) -> tuple[list[str], list[list[Path]]]:
    """Sorted class names and, per class, its sorted image files (hidden files such as ``.DS_Store`` skipped)."""
    if not root.is_dir():
        raise DatasetError(f"image folder not found: {root}; set dataset.root to a folder with one sub-folder per class")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not class_dirs:
        raise DatasetError(f"{root} has no class sub-folders; expected {root}/<class name>/<image files>")
    files = []
    for class_dir in class_dirs:
        images = sorted(p for p in class_dir.iterdir() if not p.name.startswith(".") and p.is_file())
        if not images:
            raise DatasetError(f"class folder {class_dir} is empty; put its images there or remove the folder")
        files.append(images)
    return [p.name for p in class_dirs], files


def read_images(files: list[list[Path]], channels: int, size: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(images (N, C, H, W) in [0, 1], labels (N,))``; without ``size`` all must share one size."""
    arrays, labels, first = [], [], None
    for label, paths in enumerate(files):
        for path in paths:
            array = read_image(path, channels, size)
            if first is None:
                first = (path, array.shape)
            elif array.shape != first[1]:
                raise DatasetError(
                    f"images of different sizes: {first[0]} is {_size(first[1])}, {path} is {_size(array.shape)}; "
                    "set dataset.size=[H,W] to resize them all"
                )
            arrays.append(array)
            labels.append(label)
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).to(torch.float32).div_(255.0)
    return images.contiguous(), torch.tensor(labels, dtype=torch.int64)


def read_image(path: Path, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 ``(H, W, C)``."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image = image.convert(PIL_MODES[channels])
            if size is not None:
                image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)  # Pillow takes (W, H)
            array = np.asarray(image, dtype=np.uint8)
    except UnidentifiedImageError as error:
        raise DatasetError(f"{path} is not an image Pillow can read; class folders may hold only images") from error
    except OSError as error:
        raise DatasetError(f"cannot read image {path}: {error}") from error
    return array.reshape(*array.shape[:2], channels)


def check_same_size(train_x: torch.Tensor, test_x: torch.Tensor, train_files, test_files) -> None:
    if train_x.shape[1:] != test_x.shape[1:]:
        raise DatasetError(
            f"images of different sizes: {train_files[0][0]} is {_size(train_x.shape[2:])}, "
            f"{test_files[0][0]} is {_size(test_x.shape[2:])}; set dataset.size=[H,W] to resize them all"
        )


def stratified_split_checked(images, labels, classes: list[str], test_fraction, seed, root):
    """The stratified split, with sklearn's complaint about too small classes turned into a DatasetError."""
    counts = np.bincount(labels.numpy())
    if counts.min() < 2:
        raise DatasetError(
            f"class folder {Path(root) / classes[int(counts.argmin())]} has 1 image: a stratified test split "
            "needs at least 2 per class; add images or give dataset.test_root"
        )
    try:
        train_index, test_index, train_y, test_y = stratified_split(np.arange(len(labels)), labels.numpy(), test_fraction, seed)
    except DatasetError:
        raise
    except ValueError as error:  # sklearn: too few images for the test share
        raise DatasetError(
            f"cannot hold out test_fraction={test_fraction} of every class of {root} (images per class: "
            f"{counts.tolist()}): {error}; add images or give dataset.test_root"
        ) from error
    train_index, test_index = torch.from_numpy(train_index), torch.from_numpy(test_index)
    return images[train_index], images[test_index], torch.from_numpy(train_y), torch.from_numpy(test_y)


def check_size(size: Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    size = tuple(size)
    if len(size) != 2 or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size):
        raise DatasetError(f"size must be [height, width] in pixels or null (keep the files' size), got {list(size)}")
    return size


def check_normalization(mean, std, channels: int) -> tuple[list[float], list[float]] | None:
    """``(mean, std)`` from the config, or ``None``: compute them on the train split."""
    if mean is None and std is None:
        return None
    if mean is None or std is None:
        raise DatasetError("give both dataset.mean and dataset.std, or neither (then the train split's are used)")
    mean, std = [float(m) for m in mean], [float(s) for s in std]
    if len(mean) != channels or len(std) != channels:
        raise DatasetError(f"mean and std need one value per channel ({channels}), got mean={mean} std={std}")
    if min(std) <= 0:
        raise DatasetError(f"std values must be positive, got {std}")
    return mean, std


def folder_fingerprint(files: list[Path]) -> str:
    """Content hash of every image and its class folder: renaming a class changes the labels."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(f"{path.parent.name}/{path.name}\0{file_sha256(path)}\0".encode())
    return digest.hexdigest()


def _size(shape) -> str:
    """``HxW`` of an ``(H, W, C)`` array shape or an ``(H, W)`` pair."""
    return f"{shape[0]}x{shape[1]}"
