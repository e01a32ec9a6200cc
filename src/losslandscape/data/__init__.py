"""Datasets as resident train/test tensors (:class:`DataSplits`), one loader per Hydra ``dataset`` option.

Heavy imports (scikit-learn) happen inside the loaders, so importing this package stays cheap.
"""

from losslandscape.data.cifar import load_cifar
from losslandscape.data.digits import load_digits
from losslandscape.data.mnist import load_mnist
from losslandscape.data.splits import DataSplits, DatasetError
from losslandscape.data.synthetic import make_gaussian_mixture, make_moons

__all__ = [
    "DataSplits",
    "DatasetError",
    "load_cifar",
    "load_digits",
    "load_mnist",
    "make_gaussian_mixture",
    "make_moons",
]
