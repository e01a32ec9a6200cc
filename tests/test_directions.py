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
    d = NoiseDirection("gaussian", "filter", "ignore").sample(theta, 3)
    for name, t in theta.items():
        if t.dim() > 1:
            expected = t.flatten(1).norm(dim=1)
            torch.testing.assert_close(d[name].flatten(1).norm(dim=1), expected, rtol=1e-5, atol=1e-7)


def test_ignored_parameters_are_exactly_zero(theta):
    d = NoiseDirection("gaussian", "filter", "ignore").sample(theta, 3)
    one_dimensional = sorted(n for n, t in theta.items() if t.dim() <= 1)
    # both BatchNorms' scale and shift, and the biases of the two linear layers
    assert one_dimensional == ["conv.1.bias", "conv.1.weight", "conv.5.bias", "conv.5.weight", "fc.bias", "head.bias"]
    for name in one_dimensional:
        assert torch.count_nonzero(d[name]) == 0


def test_include_policy_normalizes_biases_per_tensor(theta):
    d = NoiseDirection("gaussian", "filter", "include").sample(theta, 3)
    for name, t in theta.items():
        if t.dim() <= 1:
            assert d[name].norm().item() == pytest.approx(t.norm().item(), rel=1e-5)


@pytest.mark.parametrize("distribution", ["gaussian", "uniform", "rademacher"])
def test_layer_and_model_normalization(theta, distribution):
    d = NoiseDirection(distribution, "layer", "ignore").sample(theta, 1)
    for name, t in theta.items():
        if t.dim() > 1:
            assert d[name].norm().item() == pytest.approx(t.norm().item(), rel=1e-5)
    d = NoiseDirection(distribution, "model", "ignore", scale=0.5).sample(theta, 1)
    weights = {n: t for n, t in theta.items() if t.dim() > 1}
    assert global_norm({n: d[n] for n in weights}).item() == pytest.approx(0.5 * global_norm(weights).item(), rel=1e-6)


def test_rademacher_entries_are_plus_minus_one_before_normalization(theta):
    d = NoiseDirection("rademacher", "none", "include").sample(theta, 2)
    values = torch.cat([v.flatten() for v in d.values()])
    assert set(values.unique().tolist()) == {-1.0, 1.0}


def test_same_seed_same_direction_other_seed_other_direction(theta):
    make = NoiseDirection()
    a, b, c = make.sample(theta, 5), make.sample(theta, 5), make.sample(theta, 6)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.equal(a["head.weight"], c["head.weight"])


def test_orthogonalize_is_exact_and_keeps_the_norm(theta):
    a = NoiseDirection().sample(theta, 1)
    b = NoiseDirection().sample(theta, 2)
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
    d = NoiseDirection().sample(theta, 4)
    path = save_direction(tmp_path, "direction0", d, {"type": "noise", "seed": 4})
    loaded, recipe = load_direction(path)
    assert recipe == {"type": "noise", "seed": 4}
    assert all(torch.equal(loaded[n], d[n]) for n in d)
    data = torch.load(path, weights_only=True)
    data["tensors"]["head.weight"][0, 0] += 1.0
    torch.save(data, path)
    with pytest.raises(ValueError, match="is corrupt"):
        load_direction(path)


# --- direction types that need more than theta: a context with known checkpoints -------------

from losslandscape.directions.checkpoints import BetweenCheckpoints, TrajectoryPCA  # noqa: E402
from losslandscape.directions.context import DirectionContext  # noqa: E402
from losslandscape.directions.from_file import FileDirection  # noqa: E402
from losslandscape.directions.gradient import GradientDirection  # noqa: E402
from losslandscape.directions.noise import SignConsistentDirection  # noqa: E402


def context_with(theta, checkpoints=None, trajectory=None, loss=None):
    return DirectionContext(theta, 0, lambda ref: checkpoints[ref], lambda: trajectory, loss)


def test_sign_consistent_noise_agrees_with_theta_on_the_chosen_fraction(theta):
    context = context_with(theta)
    weights = [n for n, t in theta.items() if t.dim() > 1]
    for ratio, low, high in [(1.0, 1.0, 1.0), (0.0, 0.40, 0.60), (0.5, 0.68, 0.82)]:
        d = SignConsistentDirection(ratio=ratio, normalization="none")(context, 0)
        agree = torch.cat([(torch.sign(d[n]) == torch.sign(theta[n])).flatten() for n in weights]).float().mean()
        # chosen coordinates always agree, the others agree half the time: ratio + (1 - ratio) / 2
        assert low <= agree.item() <= high, (ratio, agree)
    with pytest.raises(ValueError, match=r"sign-consistency ratio must lie in \[0, 1\], got 1.5"):
        SignConsistentDirection(ratio=1.5)


def test_between_checkpoints_points_from_start_to_end(theta):
    end = {n: t + 1.0 for n, t in theta.items()}
    start = {n: t - 2.0 for n, t in theta.items()}
    context = context_with(theta, {"init": end, "epoch:1": start})
    towards_init = BetweenCheckpoints(end="init")(context, 0)
    assert all(torch.allclose(towards_init[n], torch.ones_like(t)) for n, t in theta.items())
    from_epoch = BetweenCheckpoints(start="epoch:1", end="init")
    assert from_epoch.origin == "epoch:1"
    assert all(torch.allclose(from_epoch(context, 0)[n], torch.full_like(t, 3.0)) for n, t in theta.items())


def test_trajectory_pca_recovers_a_planar_trajectory():
    torch.manual_seed(0)
    theta = {"w": torch.randn(6, 4), "b": torch.randn(6)}
    u = {"w": torch.zeros(6, 4), "b": torch.zeros(6)}
    v = {"w": torch.zeros(6, 4), "b": torch.zeros(6)}
    u["w"][0, 0], v["b"][3] = 1.0, 1.0
    # offsets 3u, v, 2u, -v from theta: energy 13 along u, 2 along v, so PC1 = -u (sign rule), PC2 = +-v
    steps = [(3.0, 0.0), (0.0, 1.0), (2.0, 0.0), (0.0, -1.0)]
    path = [{n: theta[n] + a * u[n] + b * v[n] for n in theta} for a, b in steps]
    pca = TrajectoryPCA(unit_norm=True)
    (pc1, pc2), explained = pca.components(context_with(theta, trajectory=path), 2)
    assert pc1["w"][0, 0].item() == pytest.approx(-1.0, abs=1e-6)
    assert abs(pc2["b"][3].item()) == pytest.approx(1.0, abs=1e-6)
    assert explained[:2].tolist() == pytest.approx([13 / 15, 2 / 15], abs=1e-9)
    assert pc1["w"][0, 0].item() < 0  # sign convention: the start of the path has a negative coordinate
    with pytest.raises(ValueError, match="needs at least 3 saved checkpoints, found 2"):
        pca.components(context_with(theta, trajectory=path[:2]), 2)


def test_gradient_direction_is_the_normalized_negative_gradient():
    theta = {"w": torch.tensor([[1.0, -2.0], [0.5, 3.0]])}
    loss = lambda p: (p["w"] ** 2).sum()  # gradient 2 w  # noqa: E731
    d = GradientDirection(normalization="none")(context_with(theta, loss=loss), 0)
    torch.testing.assert_close(d["w"], -2.0 * theta["w"])
    d = GradientDirection(ascent=True, normalization="filter")(context_with(theta, loss=loss), 0)
    torch.testing.assert_close(d["w"], theta["w"])  # +2w rescaled row by row to theta's rows


def test_file_direction_round_trip_and_misfit(theta, tmp_path):
    d = NoiseDirection().sample(theta, 7)
    path = save_direction(tmp_path, "direction0", d, {"type": "noise"})
    loaded = FileDirection([str(path)])(context_with(theta), 0)
    assert all(torch.equal(loaded[n], d[n]) for n in d)
    with pytest.raises(ValueError, match="lists only 1 file"):
        FileDirection([str(path)])(context_with(theta), 1)
    other = parameters_of(SmallCNN((1, 8, 8), 10, channels=(4, 6), batch_norm=False, hidden=12))
    with pytest.raises(ValueError, match="does not fit the scanned model"):
        FileDirection([str(path)])(context_with(other), 0)
