"""scikit-learn's bundled 8x8 handwritten digits: the default dataset, no download, trains in seconds."""

from __future__ import annotations

import numpy as np

from losslandscape.data.splits import DataSplits, build_splits, stratified_split

DIGITS_NUM_CLASSES = 10


def load_digits(test_fraction: float = 0.2, seed: int = 0, train_size: int | None = None) -> DataSplits:
    """The 1,797 digits as ``(N, 1, 8, 8)`` images with a stratified train/test split fixed by ``seed``.

    ``train_size`` keeps a seeded random subset of the training split; the test split stays whole.
    """
    # sklearn is imported here so that `import losslandscape.data` stays cheap.
    from sklearn.datasets import load_digits as sklearn_load_digits

    bunch = sklearn_load_digits()
    images = bunch.images.astype(np.float32)[:, None, :, :]
    train_x, test_x, train_y, test_y = stratified_split(images, bunch.target, test_fraction, seed)
    return build_splits("digits", train_x, train_y, test_x, test_y, DIGITS_NUM_CLASSES, train_size, seed)
