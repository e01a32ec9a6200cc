"""Synthetic 2D-friendly classification problems: tiny, generated from the seed, no files."""

from __future__ import annotations

import numpy as np

from losslandscape.data.splits import DataSplits, DatasetError, build_splits, stratified_split


def make_gaussian_mixture(
    n_samples: int = 2000,
    n_features: int = 2,
    num_classes: int = 3,
    cluster_std: float = 1.0,
    test_fraction: float = 0.2,
    seed: int = 0,
    train_size: int | None = None,
) -> DataSplits:
    """One isotropic Gaussian blob per class (``sklearn.datasets.make_blobs``); vectors ``(N, F)``.

    The seed draws the cluster centres as well as the points, so each seed is its own problem.
    """
    from sklearn.datasets import make_blobs

    _check_positive("n_samples", n_samples)
    _check_positive("n_features", n_features)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise DatasetError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    if not cluster_std > 0:
        raise DatasetError(f"cluster_std must be positive, got {cluster_std!r}")
    x, y = make_blobs(
        n_samples=n_samples,
        n_features=n_features,
        centers=num_classes,
        cluster_std=cluster_std,
        random_state=seed,
    )
    return _split_vectors("gaussian_mixture", x, y, num_classes, test_fraction, seed, train_size)


def make_moons(
    n_samples: int = 2000,
    noise: float = 0.15,
    test_fraction: float = 0.2,
    seed: int = 0,
    train_size: int | None = None,
) -> DataSplits:
    """Two interleaving half circles (``sklearn.datasets.make_moons``): 2 features, 2 classes."""
    from sklearn.datasets import make_moons as sklearn_make_moons

    _check_positive("n_samples", n_samples)
    if not noise >= 0:
        raise DatasetError(f"noise must be >= 0, got {noise!r}")
    x, y = sklearn_make_moons(n_samples=n_samples, noise=noise, random_state=seed)
    return _split_vectors("moons", x, y, 2, test_fraction, seed, train_size)


def _split_vectors(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    num_classes: int,
    test_fraction: float,
    seed: int,
    train_size: int | None,
) -> DataSplits:
    train_x, test_x, train_y, test_y = stratified_split(x.astype(np.float32), y, test_fraction, seed)
    return build_splits(name, train_x, train_y, test_x, test_y, num_classes, train_size, seed)


def _check_positive(name: str, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise DatasetError(f"{name} must be a positive integer, got {value!r}")
