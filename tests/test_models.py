"""Model architectures: shapes, hand-computed parameter counts, torch.func compatibility, configs."""

from __future__ import annotations

from pathlib import Path

import hydra.utils
import pytest
import torch
from omegaconf import OmegaConf
from torch import nn
from torch.func import functional_call, vmap

from losslandscape.models import MLP, VGG, CNN1d, ResNet20, SmallCNN

MODEL_CONF_DIR = Path(__file__).resolve().parents[1] / "conf" / "model"
DIGITS = (1, 8, 8)
CIFAR = (3, 32, 32)
# Penultimate feature width of every config at its defaults.
FEATURE_WIDTH = {"mlp": 64, "mlp_mnist1d": 100, "cnn": 64, "cnn_bn": 64, "vgg11_bn": 512, "vgg16_bn": 512, "resnet20": 64}
DIGITS_CONFIGS = sorted(FEATURE_WIDTH)  # every config that takes images; cnn1d takes sequences
CONFIG_NAMES = sorted([*FEATURE_WIDTH, "cnn1d"])
MNIST1D = (40,)


def build(config_name: str, input_shape=DIGITS, num_classes: int = 10, **overrides) -> nn.Module:
    """Instantiate ``conf/model/<config_name>.yaml`` the way the tasks do."""
    torch.manual_seed(0)
    cfg = OmegaConf.load(MODEL_CONF_DIR / f"{config_name}.yaml")
    return hydra.utils.instantiate(cfg, input_shape=input_shape, num_classes=num_classes, **overrides)


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def linear_params(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


def conv_params(in_channels: int, out_channels: int, kernel: int = 3, bias: bool = False) -> int:
    return in_channels * out_channels * kernel * kernel + (out_channels if bias else 0)


def bn_params(channels: int) -> int:
    return 2 * channels  # weight and bias; running stats are buffers


def count_modules(model: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def conv_out_channels(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


# ---------------------------------------------------------------- configs


ADAPTERS = ["custom", "hf"]  # the user's own module by _target_, and Hugging Face transformers (tests/test_own_model.py)


def test_model_configs_are_exactly_the_six_architectures_and_the_adapters():
    assert sorted(p.stem for p in MODEL_CONF_DIR.glob("*.yaml")) == sorted(CONFIG_NAMES + ADAPTERS)


@pytest.mark.parametrize("config_name", CONFIG_NAMES)
def test_config_comments_every_hyperparameter_and_leaves_data_shape_out(config_name):
    text = (MODEL_CONF_DIR / f"{config_name}.yaml").read_text()
    cfg = OmegaConf.create(text)
    assert cfg._target_.startswith("losslandscape.models.")
    assert "input_shape" not in cfg and "num_classes" not in cfg
    hyperparameters = [k for k in cfg if k != "_target_"]
    assert hyperparameters, "every model has at least one hyperparameter"
    for key in hyperparameters:
        (line,) = [ln for ln in text.splitlines() if ln.startswith(f"{key}:")]
        assert "#" in line, f"{config_name}.yaml: {key} has no comment"


@pytest.mark.parametrize("config_name", DIGITS_CONFIGS)
def test_output_and_feature_shapes_on_digits(config_name):
    model = build(config_name).eval()
    x = torch.randn(5, *DIGITS)
    features = model.features(x)
    assert features.shape == (5, FEATURE_WIDTH[config_name])
    assert isinstance(model.head, nn.Linear)
    assert (model.head.in_features, model.head.out_features) == (FEATURE_WIDTH[config_name], 10)
    assert model(x).shape == (5, 10)
    assert torch.equal(model(x), model.head(features))


def test_mlp_on_vector_input():
    model = build("mlp", input_shape=(2,), num_classes=3)
    assert model(torch.randn(4, 2)).shape == (4, 3)
    assert model.features(torch.randn(4, 2)).shape == (4, 64)
    assert num_parameters(model) == linear_params(2, 64) + linear_params(64, 64) + linear_params(64, 3)
    assert num_parameters(model) == 4547


# ---------------------------------------------------------------- parameter counts by hand


def test_mlp_parameter_count_on_digits():
    expected = (64 * 64 + 64) + (64 * 64 + 64) + (64 * 10 + 10)
    assert expected == 8970
    assert num_parameters(build("mlp")) == expected


def test_small_cnn_parameter_count_on_digits():
    # 8x8 -> pool -> 4x4 -> pool -> 2x2, so the hidden layer sees 32 * 2 * 2 inputs.
    expected = (
        conv_params(1, 16, bias=True)
        + conv_params(16, 32, bias=True)
        + linear_params(32 * 2 * 2, 64)
        + linear_params(64, 10)
    )
    assert expected == 13706
    assert num_parameters(build("cnn")) == expected


def test_small_cnn_bn_parameter_count_drops_conv_bias_adds_bn():
    expected = (
        conv_params(1, 16) + bn_params(16) + conv_params(16, 32) + bn_params(32)
        + linear_params(32 * 2 * 2, 64) + linear_params(64, 10)
    )  # fmt: skip
    assert expected == 13754
    assert num_parameters(build("cnn_bn")) == expected


def test_small_cnn_parameter_count_on_mnist():
    # 28 -> 14 -> 7: the hidden layer sees 32 * 7 * 7 inputs.
    expected = conv_params(1, 16, bias=True) + conv_params(16, 32, bias=True)
    expected += linear_params(32 * 7 * 7, 64) + linear_params(64, 10)
    assert expected == 105866
    assert num_parameters(build("cnn", input_shape=(1, 28, 28))) == expected


def vgg_bn_parameter_count(channels: list[int], in_channels: int, num_classes: int) -> int:
    total = 0
    for out_channels in channels:
        total += conv_params(in_channels, out_channels) + bn_params(out_channels)
        in_channels = out_channels
    return total + linear_params(in_channels, num_classes)


def test_vgg11_bn_parameter_count_on_cifar():
    expected = vgg_bn_parameter_count([64, 128, 256, 256, 512, 512, 512, 512], 3, 10)
    assert expected == 9_228_362  # the usual 9,231,114 of VGG-11-BN minus the 2,752 conv biases
    assert num_parameters(build("vgg11_bn", input_shape=CIFAR)) == expected


def test_vgg16_bn_parameter_count_on_cifar():
    channels = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    expected = vgg_bn_parameter_count(channels, 3, 10)
    assert expected == 14_724_042  # the usual 14,728,266 of VGG-16-BN minus the 4,224 conv biases
    assert num_parameters(build("vgg16_bn", input_shape=CIFAR)) == expected


def resnet20_parameter_count(in_channels: int, num_classes: int) -> int:
    """3x3 stem (16) + 3 stages x 3 basic blocks (16, 32, 64) + option-B shortcuts + linear head."""
    total = conv_params(in_channels, 16) + bn_params(16)
    previous = 16
    for channels in (16, 32, 64):
        for _ in range(3):
            total += conv_params(previous, channels) + bn_params(channels)
            total += conv_params(channels, channels) + bn_params(channels)
            if previous != channels:  # option B: 1x1 projection where the shape changes
                total += conv_params(previous, channels, kernel=1) + bn_params(channels)
            previous = channels
    return total + linear_params(64, num_classes)


def test_resnet20_parameter_count_on_cifar():
    expected = resnet20_parameter_count(3, 10)
    option_a_count = 269_722  # the well-known "0.27M" of He et al.'s zero-padding shortcuts
    projection_params = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)
    assert expected == option_a_count + projection_params == 272_474
    assert num_parameters(build("resnet20", input_shape=CIFAR)) == expected


def test_resnet20_parameter_count_on_digits():
    assert num_parameters(build("resnet20")) == resnet20_parameter_count(1, 10) == 272_186


# ---------------------------------------------------------------- torch.func


@pytest.mark.parametrize("config_name", DIGITS_CONFIGS)
def test_functional_call_with_own_state_reproduces_forward(config_name):
    model = build(config_name).eval()
    x = torch.randn(6, *DIGITS)
    state = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    with torch.no_grad():
        assert torch.equal(functional_call(model, state, (x,)), model(x))


def perturbed_states(model: nn.Module, count: int) -> list[dict[str, torch.Tensor]]:
    """``count`` different parameter sets (buffers shared), as a scan over directions makes them."""
    generator = torch.Generator().manual_seed(1)
    states = []
    for _ in range(count):
        params = {
            name: p.detach() + 0.1 * torch.randn(p.shape, generator=generator)
            for name, p in model.named_parameters()
        }
        states.append({**params, **dict(model.named_buffers())})
    return states


@pytest.mark.parametrize("config_name", ["mlp", "cnn", "cnn_bn", "resnet20"])
def test_vmap_over_parameter_sets_matches_a_loop(config_name):
    model = build(config_name).eval()
    x = torch.randn(7, *DIGITS)
    states = perturbed_states(model, 3)
    stacked = {name: torch.stack([s[name] for s in states]) for name in states[0]}
    with torch.no_grad():
        batched = vmap(lambda state: functional_call(model, state, (x,)))(stacked)
        looped = torch.stack([functional_call(model, s, (x,)) for s in states])
    assert batched.shape == (3, 7, 10)
    assert not torch.allclose(looped[0], looped[1])  # the sets really differ
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- structure


@pytest.mark.parametrize(
    ("config_name", "batch_norms"),
    [("mlp", 0), ("cnn", 0), ("cnn_bn", 2), ("vgg11_bn", 8), ("vgg16_bn", 13), ("resnet20", 19 + 2)],
)
def test_batch_norm_layers_only_where_configured(config_name, batch_norms):
    model = build(config_name)
    assert count_modules(model, nn.BatchNorm2d) == batch_norms
    assert count_modules(model, nn.BatchNorm1d) == 0


def test_vgg_width_multiplier_scales_every_conv():
    half = VGG(DIGITS, 10, depth=11, width=0.5)
    assert conv_out_channels(half) == [32, 64, 128, 128, 256, 256, 256, 256]
    assert half.head.in_features == 256
    assert conv_out_channels(VGG(DIGITS, 10, depth=11, width=0.001)) == [1] * 8  # rounded, at least 1


def test_resnet20_width_multiplier_scales_every_stage():
    model = ResNet20(DIGITS, 10, width=2.0)
    assert model.stem[0].out_channels == 32
    assert [block.conv2.out_channels for block in model.blocks] == [32] * 3 + [64] * 3 + [128] * 3
    assert model.features(torch.randn(2, *DIGITS)).shape == (2, 128)
    assert set(conv_out_channels(ResNet20(DIGITS, 10, width=0.01))) == {1}


def test_resnet20_downsamples_twice_and_projects_only_where_shape_changes():
    model = ResNet20(CIFAR, 10).eval()
    assert model.blocks(model.stem(torch.randn(1, *CIFAR))).shape == (1, 64, 8, 8)
    assert model.blocks(model.stem(torch.randn(1, 3, 8, 8))).shape == (1, 64, 2, 2)
    projected = [i for i, b in enumerate(model.blocks) if not isinstance(b.shortcut, nn.Identity)]
    assert projected == [3, 6]


@pytest.mark.parametrize(("input_shape", "pools"), [(DIGITS, 3), ((1, 28, 28), 4), (CIFAR, 5)])
def test_vgg_skips_max_pools_once_the_map_is_one_pixel(input_shape, pools):
    # 8 -> 4 -> 2 -> 1 (2 skipped); 28 -> 14 -> 7 -> 3 -> 1 (1 skipped); 32 -> ... -> 1 (none skipped)
    model = VGG(input_shape, 10, depth=16).eval()
    assert count_modules(model, nn.MaxPool2d) == pools
    assert model(torch.randn(2, *input_shape)).shape == (2, 10)


def test_small_cnn_stops_pooling_below_two_pixels():
    model = SmallCNN(DIGITS, 10, channels=[4, 4, 4, 4])  # 8 -> 4 -> 2 -> 1, fourth pool skipped
    assert count_modules(model, nn.MaxPool2d) == 3
    assert model.fc.in_features == 4 * 1 * 1
    assert model(torch.randn(2, *DIGITS)).shape == (2, 10)


@pytest.mark.parametrize(("name", "module"), [("tanh", nn.Tanh), ("gelu", nn.GELU)])
def test_mlp_activation_choice(name, module):
    assert count_modules(MLP(DIGITS, 10, hidden=[8, 8, 8], activation=name), module) == 3


def test_mlp_without_hidden_layers_is_a_linear_model():
    model = MLP(DIGITS, 10, hidden=[])
    assert num_parameters(model) == 64 * 10 + 10
    assert model.features(torch.randn(2, *DIGITS)).shape == (2, 64)


# ---------------------------------------------------------------- bad hyperparameters


def test_mlp_rejects_unknown_activation_naming_the_valid_ones():
    with pytest.raises(ValueError, match=r"'swish'.*relu, tanh, gelu"):
        MLP(DIGITS, 10, activation="swish")
    with pytest.raises(ValueError, match="'swish'"):
        MLP(DIGITS, 10, hidden=[], activation="swish")


@pytest.mark.parametrize("model_class", [SmallCNN, VGG, ResNet20])
def test_image_models_reject_vector_input(model_class):
    expected = r"needs image input of shape \(C, H, W\), got input_shape=\(2,\)"
    with pytest.raises(ValueError, match=expected):
        model_class((2,), 3)


def test_vgg_rejects_unknown_depth_naming_the_valid_ones():
    with pytest.raises(ValueError, match="unknown VGG depth 12: expected one of 11, 13, 16, 19"):
        VGG(CIFAR, 10, depth=12)


@pytest.mark.parametrize("model_class", [VGG, ResNet20])
@pytest.mark.parametrize("width", [0.0, -1.0])
def test_width_must_be_positive(model_class, width):
    with pytest.raises(ValueError, match="width must be a positive multiplier"):
        model_class(DIGITS, 10, width=width)


def test_small_cnn_rejects_empty_or_bad_sizes():
    with pytest.raises(ValueError, match="channels must be a non-empty list"):
        SmallCNN(DIGITS, 10, channels=[])
    with pytest.raises(ValueError, match="hidden must be a positive int"):
        SmallCNN(DIGITS, 10, hidden=0)
    with pytest.raises(ValueError, match="num_classes must be a positive integer"):
        SmallCNN(DIGITS, 0)


# ---------------------------------------------------------------- MNIST-1D models (Greydanus 2020)


def test_cnn1d_is_the_papers_conv_base_on_mnist1d():
    model = build("cnn1d", input_shape=MNIST1D)
    # conv 1->25 k5, 25->25 k3, 25->25 k3 (weights + biases); lengths 40 -> 19 -> 10 -> 5; head 125 -> 10
    expected = (1 * 25 * 5 + 25) + 2 * (25 * 25 * 3 + 25) + linear_params(25 * 5, 10)
    assert num_parameters(model) == expected == 5210
    x = torch.randn(4, 40)
    assert model.features(x).shape == (4, 125)
    assert torch.equal(model(x), model(x.unsqueeze(1)))  # (N, L) is one channel
    assert torch.equal(model(x), model.head(model.features(x)))


def test_cnn1d_forward_matches_functional_convolutions():
    model = build("cnn1d", input_shape=(2, 12), num_classes=3, channels=[4, 5], kernel_sizes=[3, 3])
    x = torch.randn(5, 2, 12)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv1d)]
    h = x
    for conv in convs:
        h = torch.nn.functional.conv1d(h, conv.weight, conv.bias, stride=2, padding=1).relu()
    assert h.shape == (5, 5, 3)  # 12 -> 6 -> 3
    torch.testing.assert_close(model(x), h.flatten(1) @ model.head.weight.T + model.head.bias)


def test_cnn1d_rejects_images_and_too_short_sequences():
    with pytest.raises(ValueError, match=r"CNN1d needs sequence input of shape \(L,\) or \(C, L\), got input_shape=\(1, 8, 8\)"):
        CNN1d(DIGITS, 10)
    with pytest.raises(ValueError, match="input of length 3 is too short for kernels"):
        CNN1d((3,), 10, channels=[4, 4], kernel_sizes=[5, 5])


def test_mlp_mnist1d_is_the_papers_residual_mlp():
    model = build("mlp_mnist1d", input_shape=MNIST1D)
    assert num_parameters(model) == linear_params(40, 100) + linear_params(100, 100) + linear_params(100, 10) == 15210
    first, second = [m for m in model.body.modules() if isinstance(m, nn.Linear)]
    x = torch.randn(6, 40)
    h = torch.relu(first(x))
    h = h + torch.relu(second(h))  # the paper's MLPBase: h = h + relu(linear2(h))
    torch.testing.assert_close(model(x), model.head(h))


def test_residual_only_where_widths_agree_and_off_by_default():
    assert count_modules(MLP(MNIST1D, 10, hidden=[100, 100]), nn.Sequential) == 1  # the body alone
    model = MLP(MNIST1D, 10, hidden=[16, 16, 8], residual=True)
    assert [type(m).__name__ for m in model.body] == ["Linear", "ReLU", "Residual", "Linear", "ReLU"]


@pytest.mark.parametrize("config_name", ["cnn1d", "mlp_mnist1d"])
def test_mnist1d_models_vmap_over_parameter_sets(config_name):
    model = build(config_name, input_shape=MNIST1D).eval()
    x = torch.randn(7, 40)
    states = perturbed_states(model, 3)
    stacked = {name: torch.stack([s[name] for s in states]) for name in states[0]}
    with torch.no_grad():
        batched = vmap(lambda state: functional_call(model, state, (x,)))(stacked)
        looped = torch.stack([functional_call(model, s, (x,)) for s in states])
    torch.testing.assert_close(batched, looped, rtol=1e-5, atol=1e-6)
