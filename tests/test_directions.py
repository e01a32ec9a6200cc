"""Directions: normalization against theta, the bias/BN policy, seeding, Gram-Schmidt."""

import pytest
import torch

from losslandscape.directions.noise import NoiseDirection
from losslandscape.directions.normalization import dot, global_norm, normalize_direction, orthogonalize
from losslandscape.directions.store import load_direction, save_direction
from losslandscape.landscape.evaluator import parameters_of
from losslandscape.models.cnn import SmallCNN


@pytest.fixture
def theta():
    torch.manual_seed(0)
    return parameters_of(SmallCNN((1, 8, 8), 10, channels=(4, 6), batch_norm=True, hidden=12))


def test_filter_normalization_gives_each_filter_the_norm_of_thetas_filter(theta):
    d = NoiseDirection("gaussian", "filter", "ignore")(theta, seed=3)
    for name, t in theta.items():
        if t.dim() > 1:
            expected = t.flatten(1).norm(dim=1)
            torch.testing.assert_close(d[name].flatten(1).norm(dim=1), expected, rtol=1e-5, atol=1e-7)


def test_ignored_parameters_are_exactly_zero(theta):
    d = NoiseDirection("gaussian", "filter", "ignore")(theta, seed=3)
    one_dimensional = sorted(n for n, t in theta.items() if t.dim() <= 1)
    # both BatchNorms' scale and shift, and the biases of the two linear layers
    assert one_dimensional == ["conv.1.bias", "conv.1.weight", "conv.5.bias", "conv.5.weight", "fc.bias", "head.bias"]
    for name in one_dimensional:
        assert torch.count_nonzero(d[name]) == 0


def test_include_policy_normalizes_biases_per_tensor(theta):
    d = NoiseDirection("gaussian", "filter", "include")(theta, seed=3)
    for name, t in theta.items():
        if t.dim() <= 1:
            assert d[name].norm().item() == pytest.approx(t.norm().item(), rel=1e-5)


@pytest.mark.parametrize("distribution", ["gaussian", "uniform", "rademacher"])
def test_layer_and_model_normalization(theta, distribution):
    d = NoiseDirection(distribution, "layer", "ignore")(theta, seed=1)
    for name, t in theta.items():
        if t.dim() > 1:
            assert d[name].norm().item() == pytest.approx(t.norm().item(), rel=1e-5)
    d = NoiseDirection(distribution, "model", "ignore", scale=0.5)(theta, seed=1)
    weights = {n: t for n, t in theta.items() if t.dim() > 1}
    assert global_norm({n: d[n] for n in weights}).item() == pytest.approx(0.5 * global_norm(weights).item(), rel=1e-6)


def test_rademacher_entries_are_plus_minus_one_before_normalization(theta):
    d = NoiseDirection("rademacher", "none", "include")(theta, seed=2)
    values = torch.cat([v.flatten() for v in d.values()])
    assert set(values.unique().tolist()) == {-1.0, 1.0}


def test_same_seed_same_direction_other_seed_other_direction(theta):
    make = NoiseDirection()
    a, b, c = make(theta, 5), make(theta, 5), make(theta, 6)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["head.weight"], c["head.weight"])


def test_orthogonalize_is_exact_and_keeps_the_norm(theta):
    a = NoiseDirection()(theta, 1)
    b = NoiseDirection()(theta, 2)
    c = orthogonalize(b, a)
    assert abs(dot(c, a).item()) < 1e-6 * global_norm(a).item() * global_norm(c).item()
    assert global_norm(c).item() == pytest.approx(global_norm(b).item(), rel=1e-9)


def test_bad_names_are_rejected_before_any_work():
    with pytest.raises(ValueError, match="unknown normalization 'filters': expected one of filter, layer, model, none"):
        NoiseDirection(normalization="filters")
    with pytest.raises(ValueError, match="unknown noise distribution 'cauchy'"):
        NoiseDirection(distribution="cauchy")
    with pytest.raises(ValueError, match="unknown bias/BN policy 'skip': expected one of ignore, include"):
        normalize_direction({}, {}, "filter", "skip")


def test_saved_direction_round_trips_with_hash_and_recipe(theta, tmp_path):
    d = NoiseDirection()(theta, 4)
    path = save_direction(tmp_path, "direction0", d, {"type": "noise", "seed": 4})
    loaded, recipe = load_direction(path)
    assert recipe == {"type": "noise", "seed": 4}
    assert all(torch.equal(loaded[n], d[n]) for n in d)
    data = torch.load(path, weights_only=True)
    data["tensors"]["head.weight"][0, 0] += 1.0
    torch.save(data, path)
    with pytest.raises(ValueError, match="is corrupt"):
        load_direction(path)
