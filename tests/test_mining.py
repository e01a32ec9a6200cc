"""Mining: the projection, the targets, a known optimum, and the presets on a small trained model."""

from __future__ import annotations

import json

import pytest
import torch

from losslandscape.directions.noise import NoiseDirection
from losslandscape.mining.miner import DirectionMiner
from losslandscape.mining.objectives import Ring, Template, VVVBasin, WPeak, parse_targets
from losslandscape.landscape.shapes import center_is_local_maximum
from losslandscape.tasks.mine import run_mine


def small_theta() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 2, 3, 3, generator=generator),
        "conv.bias": torch.randn(4, generator=generator),
        "fc.weight": torch.randn(3, 8, generator=generator),
    }


@pytest.mark.parametrize("scale", [1.0, 0.3])
def test_projection_puts_every_filter_exactly_on_thetas_norm_times_scale(scale):
    theta = small_theta()
    miner = DirectionMiner(steps=1, scale=scale)
    raw = {n: torch.randn_like(v) * 7 for n, v in theta.items()}
    projected = miner.project(raw, theta)
    for name in ("conv.weight", "fc.weight"):
        expected = theta[name].flatten(1).norm(dim=1) * scale
        torch.testing.assert_close(projected[name].flatten(1).norm(dim=1), expected, rtol=1e-6, atol=0)
    assert torch.count_nonzero(projected["conv.bias"]) == 0  # biases masked
    again = miner.project(projected, theta)  # a projection: applying it twice changes nothing
    for name in theta:
        torch.testing.assert_close(again[name], projected[name], rtol=1e-6, atol=1e-7)


class QuadraticLoss:
    """L(w) = 1/2 w^T H w with H = diag(h) on one 1x4 "filter": an evaluator with a known answer."""

    def __init__(self, h):
        self.h = torch.tensor(h, dtype=torch.float64)

    def __len__(self):
        return 8

    def batch_loss(self, params, indices):
        w = params["w"].flatten()
        return 0.5 * (w * self.h * w).sum()

    def loss(self, params):
        return self.batch_loss(params, None)


def test_w_peak_objective_on_a_quadratic_finds_the_most_negative_curvature_direction():
    # sum over lambda = +-a of L(theta + lambda d) = theta^T H theta + a^2 d^T H d: with ||d|| fixed
    # the minimum is the eigenvector of the most negative eigenvalue (here the first axis).
    theta = {"w": torch.tensor([[0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)}
    objective = WPeak(a=0.5, inner=[], peak=0.0, level=0.0)
    miner = DirectionMiner(lambda p: torch.optim.Adam(p, lr=0.05), steps=300, batch_size=None)
    start = {"w": torch.tensor([[0.2, 1.0, -0.7, 0.4]], dtype=torch.float64)}
    mined = miner.mine(objective, QuadraticLoss([-1.0, 0.5, 1.0, 2.0]), theta, [start], seed=0).directions[0]["w"].flatten()
    assert abs(float(mined[0]) / float(mined.norm())) > 0.999
    assert float(mined.norm()) == pytest.approx(1.0, rel=1e-9)  # on the constraint: ||d|| = ||theta||


def test_ring_objective_on_a_quadratic_finds_the_negative_curvature_plane():
    # on a ring of radius a the loss averages a^2/2 (d1^T H d1 + d2^T H d2) over angles: the plane of
    # the two most negative eigenvectors (axes 0 and 1) wins, with the two directions orthogonal.
    theta = {"w": torch.tensor([[0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)}
    objective = Ring(a=0.5, angles=4, inner=[], peak=0.0, level=0.0, orthogonality=1.0)
    miner = DirectionMiner(lambda p: torch.optim.Adam(p, lr=0.05), steps=400, batch_size=None, normalization="model")
    starts = [{"w": torch.tensor([[0.3, 0.2, 0.9, 0.1]], dtype=torch.float64)},
              {"w": torch.tensor([[0.1, 0.8, 0.2, -0.5]], dtype=torch.float64)}]
    result = miner.mine(objective, QuadraticLoss([-1.0, -0.5, 1.0, 2.0]), theta, starts, seed=0)
    for d in result.directions:
        d = d["w"].flatten()
        assert float(d[:2].norm() / d.norm()) > 0.99  # inside the negative-curvature plane
    first, second = (d["w"].flatten() for d in result.directions)
    assert abs(float(first @ second / (first.norm() * second.norm()))) < 0.05


def test_presets_place_their_targets_where_the_design_says():
    peak = WPeak(a=0.4, inner=[0.5], peak=0.0, level=0.0)
    assert sorted(t.coordinates[0] for t in peak.targets(None)) == pytest.approx([-0.4, -0.2, 0.2, 0.4])
    assert sum(t.weight for t in peak.targets(None)) == pytest.approx(1.0)
    vvv = VVVBasin(a=1.0)
    assert {(t.coordinates[0], t.kind) for t in vvv.targets(None)} == {(-1.0, "low"), (1.0, "low"), (-0.5, "high"), (0.5, "high")}
    assert vvv.span == (-1.25, 1.25)
    ring = Ring(a=0.5, angles=3, inner=[0.5], peak=10.0, peak_step=0.1).targets(torch.Generator().manual_seed(0))
    radii = sorted({round(sum(c**2 for c in t.coordinates) ** 0.5, 9) for t in ring})
    assert len(ring) == 18 and radii == pytest.approx([0.05, 0.25, 0.5])  # 3 diameters x 2 ends x 3 radii
    assert sum(t.weight for t in ring) == pytest.approx(0.5 + 0.5 + 2 * 10.0)
    assert sum(t.weight for t in peak.targets(None)) == pytest.approx(1.0)


def test_template_targets_parse_from_lists_dicts_and_strings():
    expected = [((-1.0,), "low", 1.0), ((0.5,), "high", 0.25)]
    for spec in ([[-1, "low"], [0.5, "high", 0.25]], [{"lambda": -1, "kind": "low"}, {"lambda": 0.5, "kind": "high", "weight": 0.25}],
                 "-1:low,0.5:high:0.25", ["-1:low", "0.5:high:0.25"]):
        assert [(t.coordinates, t.kind, t.weight) for t in parse_targets(spec)] == expected


@pytest.mark.parametrize(
    "spec, message",
    [
        ([[0.5, "deep"]], "kind must be low or high"),
        ([[0.0, "low"]], "lambda = 0 is theta itself"),
        ([[0.5, "high"]], "at least one low target"),
        ([["x", "low"]], "must be numbers"),
        ([[0.5, "low", -1]], "positive"),
        ([[0.5]], "2 or 3 fields"),
        ([], "non-empty list"),
        (7, "non-empty list"),
    ],
)
def test_template_parser_rejects_bad_targets_with_a_clear_error(spec, message):
    with pytest.raises(ValueError, match=message):
        Template(spec)


def test_template_rejects_an_unknown_success_label():
    with pytest.raises(ValueError, match="not a curve shape"):
        Template([[1.0, "low"]], label="u-basin")


def test_center_is_local_maximum_reads_the_middle_of_the_grid():
    import numpy as np

    x, y = np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5))
    assert center_is_local_maximum(-(x**2 + y**2))
    assert not center_is_local_maximum(x**2 - y**2)  # a saddle


# The default training (20 epochs): mining shapes the landscape around a trained minimum, which a
# 2-epoch model is not. One cache for the module, so the model is trained once.
MINE_TINY = ["task=mine", "train.epochs=20", "train.batch_size=64", "evaluation.splits=[train]", "mining.runs=1",
             "mining.scan_points=41", "mining.plane_points=9"]


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mining-cache")


@pytest.fixture
def mine_config(tiny_config, shared_cache):
    def make(*overrides):
        cfg = tiny_config(*MINE_TINY, *overrides)
        cfg.cache_dir = str(shared_cache)
        return cfg

    return make


def test_w_peak_mining_on_the_default_model_gives_a_w_peak_with_negative_curvature_and_resumes(mine_config, tmp_path):
    cfg = mine_config("mining=w_peak", "mining.miner.steps=300", "mining.saddle=true")
    summary = run_mine(cfg)
    run = summary["mining"]["runs"][0]
    assert run["label"] == "w-peak", run
    assert summary["mining"]["success_rate"] == 1.0
    assert run["curvature"]["dHd"] < 0  # theta is a peak along d: the Hessian sees it too
    saddle = summary["mining"]["saddle"]
    assert saddle["labels"]["gaussian"] == "v-basin" and saddle["curvature_signature"] == ["+", "-"]
    out = tmp_path / "run"
    assert (out / "figures" / "mined.pdf").exists() and (out / "figures" / "saddle_surface.png").exists()
    direction_files = sorted((out / "directions").glob("mined00_0-*.pt"))
    assert len(direction_files) == 1
    # a restarted job reuses the mined direction instead of mining again
    record = json.loads((out / "mining" / "mined00.json").read_text())
    (out / "summary.json").unlink()
    again = run_mine(cfg)
    assert again["mining"]["runs"][0]["wall_time"] == record["wall_time"]
    assert again["mining"]["runs"][0]["label"] == "w-peak"


def test_vvv_basin_mining_on_the_default_model_gives_three_basins(mine_config):
    cfg = mine_config("mining=vvv_basin", "mining.miner.steps=150")
    run = run_mine(cfg)["mining"]["runs"][0]
    assert run["label"] == "vvv-basin", run


def test_ring_mining_on_the_default_model_gives_the_wine_bottle_bottom(mine_config, tmp_path):
    run = run_mine(mine_config("mining=ring", "mining.rays=8"))["mining"]["runs"][0]
    assert run["label"] == "wine-bottle" and run["ray_labels"] == ["w-peak"] * 8, run
    assert run["center_is_local_max"] and run["curvature_signature"] == ["-", "-"]
    assert abs(run["cosine"]) < 1e-6  # the plane's axes are orthogonal
    assert (tmp_path / "run" / "figures" / "wine_bottle.pdf").exists()


def test_mining_settings_are_checked_before_any_training(tiny_config, tmp_path):
    with pytest.raises(ValueError, match="mining.init"):
        run_mine(tiny_config(*MINE_TINY, "mining.init=hessian_top"))
    with pytest.raises(ValueError, match=r"mining.split=test: not evaluated; add it to evaluation.splits \(now \[train\]\)"):
        run_mine(tiny_config(*MINE_TINY, "mining.split=test"))
    with pytest.raises(ValueError, match="kind must be low or high"):
        run_mine(tiny_config(*MINE_TINY, "mining=template", "mining.objective.targets=[[0.5,deep]]"))
    with pytest.raises(ValueError, match="mining.objective.a=0: expected a number > 0"):
        run_mine(tiny_config(*MINE_TINY, "mining=ring", "mining.objective.a=0"))
    with pytest.raises(ValueError, match="choose a preset"):
        run_mine(tiny_config(*MINE_TINY, "mining=base"))
    assert not (tmp_path / "cache").exists()  # nothing was trained
