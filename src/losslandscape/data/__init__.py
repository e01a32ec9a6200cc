"""Datasets as resident train/test tensors (:class:`DataSplits`), one loader per Hydra ``dataset`` option.

Heavy imports (scikit-learn, Pillow, transformers, datasets, mnist1d) happen inside the loaders, so
importing this package stays cheap.
"""

from losslandscape.data.cifar import load_cifar
from losslandscape.data.digits import load_digits
from losslandscape.data.hf_disk import load_hf_disk
from losslandscape.data.image_folder import load_image_folder
from losslandscape.data.mnist import load_mnist
from losslandscape.data.mnist1d import load_mnist1d
from losslandscape.data.splits import DataSplits, DatasetError
from losslandscape.data.synthetic import make_gaussian_mixture, make_moons
from losslandscape.data.tensors import load_tensors
from losslandscape.data.text import load_text

__all__ = [
    "DataSplits",
    "DatasetError",
    "load_cifar",
    "load_digits",
    "load_hf_disk",
    "load_image_folder",
    "load_mnist",
    "load_mnist1d",
    "load_text",
    "load_tensors",
    "make_gaussian_mixture",
    "make_moons",
]
