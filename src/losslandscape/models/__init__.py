"""Model architectures, each built as ``Model(input_shape, num_classes, **hyperparameters)``.

Every model exposes ``features(x)`` (penultimate features, ``(N, K)``) and a linear ``head``, with
``forward(x) = head(features(x))``; all are plain layers, safe for ``torch.func.functional_call``
and ``vmap`` over parameter sets. Hydra builds them from ``conf/model/*.yaml``.
"""

from losslandscape.models.cnn import SmallCNN
from losslandscape.models.cnn1d import CNN1d
from losslandscape.models.mlp import MLP
from losslandscape.models.resnet import ResNet20
from losslandscape.models.vgg import VGG

__all__ = ["MLP", "SmallCNN", "CNN1d", "VGG", "ResNet20"]
