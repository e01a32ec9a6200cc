"""MNIST-1D (Greydanus 2020, "Scaling down deep learning"): 4,000 / 1,000 sequences of length 40, 10 classes.

Generated locally by the ``mnist1d`` package's own ``make_dataset`` with its default arguments
(seed 42), never downloaded. Inputs are ``(N, 40)`` float32 vectors, as the package returns them:
``model=mlp_mnist1d`` flattens them anyway and ``model=cnn1d`` reads a 1-D input as one channel.
"""

from __future__ import annotations

import random

import numpy as np

from losslandscape.data.splits import DataSplits, build_any_splits

MNIST1D_NUM_CLASSES = 10


def load_mnist1d(generator_seed: int = 42, train_size: int | None = None, seed: int = 0) -> DataSplits:
    """The benchmark as ``make_dataset(get_dataset_args())`` builds it, with ``generator_seed`` as its seed.

    The package already centres and scales the whole set to mean 0, std 1, so the inputs are kept
    as generated (the published numbers are on these values). ``train_size`` keeps a ``seed``-ed
    subset of the 4,000 training sequences; the 1,000 test sequences stay whole.
    """
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = int(generator_seed)
    # make_dataset seeds the global `random` and `numpy.random` generators: leave them as they were.
    python_state, numpy_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(args)
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
    return build_any_splits(
        "mnist1d", (data["x"], data["y"]), (data["x_test"], data["y_test"]), MNIST1D_NUM_CLASSES,
        standardize=False, train_size=train_size, seed=seed,
    )
