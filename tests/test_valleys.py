"""Sign consistency, valley asymmetry, interpolation barriers, training seeds and spawned children.

The measures are checked against hand-built inputs and analytic curves; the training seeds against
runs that must coincide bit for bit by construction; the tasks end to end on tiny configs.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf, open_dict

from conftest import compose_config
from losslandscape.directions.noise import SignConsistentDirection
from losslandscape.landscape.evaluator import Evaluator, parameters_of
from losslandscape.measures.interpolation import barrier, path_direction
from losslandscape.measures.sign_consistency import (
    perturbed_names,
    sign_consistency,
    sign_consistency_per_tensor,
    valley_asymmetry,
)
from losslandscape.tasks.asymmetric_valley import run_asymmetric_valley
from losslandscape.tasks.interpolation import run_interpolation
from losslandscape.tracking.wandb_records import finished_run_file
from losslandscape.tasks.spawning import run_spawning
from losslandscape.training import lightning
from losslandscape.training.cache import train_or_reuse, training_config
from losslandscape.training.checkpoints import model_from_checkpoint

TINY_TRAIN = ["train.epochs=2", "train.batch_size=128", "progress=false", "logger=none"]


# ---------------------------------------------------------------- sign consistency


def test_sign_consistency_known_answers():
    a = {"w": torch.tensor([[1.0, 2.0], [-3.0, -4.0]]), "b": torch.tensor([1.0, -1.0, 1.0, 1.0])}
    b = {"w": torch.tensor([[1.0, -1.0], [1.0, -1.0]]), "b": torch.tensor([1.0, 1.0, 1.0, 1.0])}
    assert sign_consistency(a, b) == 5 / 8  # w agrees on entries 0 and 3, b on 0, 2 and 3
    assert sign_consistency_per_tensor(a, b) == {"b": 0.75, "w": 0.5}
    assert sign_consistency(a, b, ["w"]) == 0.5
    assert sign_consistency(a, a) == 1.0
    assert sign_consistency(a, {n: -v for n, v in a.items()}) == 0.0
    zeros = {"w": torch.tensor([0.0, 1.0]), "b": torch.tensor([0.0])}  # sign(0) = 0 agrees only with 0
    assert sign_consistency(zeros, {"w": torch.tensor([0.0, 0.0]), "b": torch.tensor([2.0])}) == 1 / 3
    generator = torch.Generator().manual_seed(0)
    x, y = (torch.randn(200_000, generator=generator) for _ in range(2))
    assert abs(sign_consistency({"x": x}, {"x": y}) - 0.5) < 0.005  # std 0.0011
    with pytest.raises(ValueError, match="shape"):
        sign_consistency({"x": x}, {"x": y[:10]})


@pytest.mark.parametrize("distribution", ["gaussian", "uniform", "rademacher"])
def test_sign_consistent_noise_agrees_with_theta_on_r_plus_half_the_rest(distribution):
    generator = torch.Generator().manual_seed(1)
    theta = {"conv.weight": torch.randn(64, 32, 3, 3, generator=generator), "conv.bias": torch.randn(64, generator=generator)}
    for ratio in (0.0, 0.25, 1.0):
        direction = SignConsistentDirection(ratio, distribution=distribution).sample(theta, seed=3)
        assert perturbed_names(direction) == ["conv.weight"]  # bias_bn=ignore: no noise on the bias
        expected = ratio + (1 - ratio) / 2  # chosen coordinates agree, the others half of the time
        assert sign_consistency(direction, theta, ["conv.weight"]) == pytest.approx(expected, abs=0.01)


# ---------------------------------------------------------------- valley asymmetry and barrier


def test_valley_asymmetry_known_answers():
    lambdas = np.linspace(-1, 1, 21)
    for even in (lambdas**2, np.abs(lambdas), np.cos(3 * lambdas)):
        assert valley_asymmetry(lambdas, even) == pytest.approx(0.0, abs=1e-12)
    # even part cancels; the odd part c*lambda gives 2 c mean(lambda > 0) = 2 * 0.3 * 0.55
    assert valley_asymmetry(lambdas, lambdas**2 + 0.3 * lambdas) == pytest.approx(0.33, abs=1e-12)
    no_zero = np.linspace(-1, 1, 20)  # 0 is not on this grid
    assert valley_asymmetry(no_zero, 2 + no_zero**3) == pytest.approx(2 * np.mean(no_zero[no_zero > 0] ** 3), abs=1e-12)
    assert np.isnan(valley_asymmetry(lambdas, np.where(lambdas == 1, np.nan, lambdas)))
    with pytest.raises(ValueError, match="both sides"):
        valley_asymmetry(np.linspace(0, 1, 5), np.zeros(5))


def test_barrier_known_answers():
    ts = np.linspace(0, 1, 11)
    bump = barrier(ts, 1 + 4 * ts * (1 - ts))
    assert bump["barrier"] == pytest.approx(1.0, abs=1e-12) and bump["t"] == 0.5
    tilted = barrier(ts, 2 - ts + 0.3 * np.sin(np.pi * ts))  # the chord is 2 - t: the excess is 0.3 sin(pi t)
    assert tilted["barrier"] == pytest.approx(0.3, abs=1e-12) and (tilted["start"], tilted["end"]) == (2.0, 1.0)
    wide = np.linspace(-0.5, 1.5, 21)  # points outside [0, 1] are drawn but not part of the barrier
    assert barrier(wide, np.where((wide < 0) | (wide > 1), 100.0, 1 + 4 * wide * (1 - wide)))["barrier"] == pytest.approx(1.0)
    assert barrier(ts, 3 - 2 * ts)["barrier"] == pytest.approx(0.0, abs=1e-12)  # a straight line: 0 up to rounding
    with pytest.raises(ValueError, match="must contain t = 1"):
        barrier(np.linspace(0, 0.9, 10), np.zeros(10))


def test_barrier_of_a_linear_classifier_is_exactly_zero():
    """Cross-entropy of a linear model is convex in its weights: the path never rises above the chord."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(5, 3)).double()
    x, y = torch.randn(200, 5, dtype=torch.float64), torch.randint(0, 3, (200,))
    theta_a = parameters_of(model)
    theta_b = {n: torch.randn_like(v) * 3 for n, v in theta_a.items()}
    ts = np.linspace(0, 1, 41)
    losses = Evaluator(model, x, y).metrics_at(theta_a, [path_direction(theta_a, theta_b)], torch.from_numpy(ts)[:, None])[:, 0].numpy()
    assert barrier(ts, losses)["barrier"] == 0.0
    chord = (1 - ts) * losses[0] + ts * losses[-1]
    assert (losses[1:-1] < chord[1:-1]).all()


# ---------------------------------------------------------------- training seeds and children


def _train(tmp_path, name, *overrides):
    cfg = compose_config(tmp_path / name, [*TINY_TRAIN, *overrides])
    return train_or_reuse(cfg, instantiate(cfg.dataset), torch.device("cpu"), None, False), cfg


def _states(run):
    return [torch.load(p, weights_only=True)["state_dict"] for p in [run.init, *run.epochs()]]


def _same(first, second) -> bool:
    return all(torch.equal(first[n], second[n]) for n in first)


def test_null_seeds_keep_the_cache_key_and_the_weights(tmp_path):
    nulls, cfg = _train(tmp_path, "nulls")
    old = cfg.copy()
    with open_dict(old):
        for key in ("init_seed", "data_seed", "spawn_epoch", "spawn_data_seed"):
            del old.train[key]  # a config written before these keys existed
    explicit, explicit_cfg = _train(tmp_path, "explicit", "train.init_seed=0", "train.data_seed=0")
    assert training_config(old) == training_config(cfg) == training_config(explicit_cfg)
    assert nulls.key == explicit.key and nulls.directory.name == explicit.directory.name
    legacy = train_or_reuse(OmegaConf.merge(old, {"cache_dir": str(tmp_path / "legacy")}), instantiate(cfg.dataset), torch.device("cpu"), None, False)
    for first, second, third in zip(_states(nulls), _states(explicit), _states(legacy)):  # three separate trainings
        assert _same(first, second) and _same(first, third)


def test_init_seed_and_data_seed_change_only_what_they_name(tmp_path):
    # seed 0 with the data order of seed 1 == seed 1 initialized like seed 0 (same split): bit for bit
    a, _ = _train(tmp_path, "a", "train.data_seed=1")
    b, _ = _train(tmp_path, "b", "seed=1", "dataset.seed=0", "train.init_seed=0")
    assert all(_same(x, y) for x, y in zip(_states(a), _states(b)))
    parent, _ = _train(tmp_path, "a")
    other_seed, _ = _train(tmp_path, "a", "seed=1", "dataset.seed=0")
    init_only, _ = _train(tmp_path, "a", "train.init_seed=1")
    assert _same(_states(a)[0], _states(parent)[0]) and not _same(_states(a)[1], _states(parent)[1])
    assert _same(_states(init_only)[0], _states(other_seed)[0]) and not _same(_states(init_only)[0], _states(parent)[0])
    assert init_only.directory.name.startswith("smallcnn-digits-seed0-init1-")


def test_children_repeat_the_parent_then_follow_their_own_data_order(tmp_path, monkeypatch):
    first_batches = []
    step = lightning.SupervisedModule.training_step

    def recording(self, batch, index):
        if index == 0:
            first_batches.append(batch[1][:16].tolist())
        return step(self, batch, index)

    monkeypatch.setattr(lightning.SupervisedModule, "training_step", recording)
    three = ["train.epochs=3"]
    parent, _ = _train(tmp_path, "p", *three)
    own_order, _ = _train(tmp_path, "p", *three, "train.data_seed=5")
    first_batches.clear()
    child, _ = _train(tmp_path, "p", *three, "train.spawn_epoch=1", "train.spawn_data_seed=5")
    parent_states, child_states = _states(parent), _states(child)
    assert _same(parent_states[1], child_states[1]) and not _same(parent_states[3], child_states[3])
    # epoch 1 in the parent's order, epochs 2 and 3 in the order seed 5 gives a run's epochs 1 and 2
    assert first_batches[1:] == [b for b in _recorded(tmp_path, monkeypatch, step, three)][:2]
    record = json.loads((child.directory / "spawn.json").read_text())
    assert record["parent_found"] and record["max_abs_difference"] == 0.0 and not record["replaced_by_parent"]
    at_init, _ = _train(tmp_path, "p", *three, "train.spawn_epoch=0", "train.spawn_data_seed=5")
    assert all(_same(x, y) for x, y in zip(_states(at_init), _states(own_order)))
    late = [_train(tmp_path, "p", *three, "train.spawn_epoch=3", f"train.spawn_data_seed={s}")[0] for s in (5, 6)]
    assert _same(_states(late[0])[-1], parent_states[-1]) and _same(_states(late[1])[-1], parent_states[-1])
    with pytest.raises(ValueError, match=r"train.spawn_epoch must be an integer in \[0, train.epochs=3\]"):
        _train(tmp_path, "p", *three, "train.spawn_epoch=4", "train.spawn_data_seed=5")
    with pytest.raises(ValueError, match="spawn_data_seed is null"):
        _train(tmp_path, "p", *three, "train.spawn_epoch=1")


def _recorded(tmp_path, monkeypatch, step, three):
    """First batches of a fresh run with data order 5 (another cache: it really trains)."""
    seen = []

    def recording(self, batch, index):
        if index == 0:
            seen.append(batch[1][:16].tolist())
        return step(self, batch, index)

    monkeypatch.setattr(lightning.SupervisedModule, "training_step", recording)
    _train(tmp_path, "fresh", *three, "train.data_seed=5")
    return seen


# ---------------------------------------------------------------- tasks


def test_asymmetric_valley_task(tiny_config):
    cfg = tiny_config("task=asymmetric_valley", "task.ratios=[0,1]", "task.distributions=[gaussian,rademacher]",
                      "task.directions=2", "task.points=7")
    summary = run_asymmetric_valley(cfg)
    out = Path(cfg.output_dir)
    curves = sorted((out / "curves" / "asymmetric_valley").glob("*.npz"))
    assert len(curves) == 2 * 2 * 2
    for name in ["figures/valley_asymmetry.png", "figures/valley_asymmetry.pdf", "figures/valley_curves.png", "asymmetric_valley/asymmetry.json"]:
        assert (out / name).stat().st_size > 0, name
    table = summary["asymmetry"]
    assert table["gaussian"]["ssr"]["mean"][1] == 1.0  # r = 1: every perturbed coordinate agrees in sign
    assert table["gaussian"]["ssr"]["mean"][0] == pytest.approx(0.5, abs=0.03)
    # fully sign-consistent Rademacher noise is sign(theta) whatever the seed: no spread over directions
    assert table["rademacher"]["train_loss"]["std"][1] == 0.0 and table["rademacher"]["ssr"]["std"][1] == 0.0
    assert set(table["gaussian"]) == {"train_loss", "train_error", "test_loss", "test_error", "ssr"}
    assert any("valley asymmetry" in line for line in summary["headline"])

    # resumable: finished curves are read back, a missing one is recomputed to the same numbers
    stamps = {p: p.stat().st_mtime_ns for p in curves}
    curves[0].unlink()
    again = run_asymmetric_valley(OmegaConf.merge(cfg, {"resume": False}))
    assert again["asymmetry"] == summary["asymmetry"]
    assert all(p.stat().st_mtime_ns == stamps[p] for p in curves[1:])
    with pytest.raises(ValueError, match=r"task.ratios=\[0,1.5\]: entry 1.5: expected a number >= 0 and <= 1"):
        run_asymmetric_valley(tiny_config("task=asymmetric_valley", "task.ratios=[0,1.5]"))


def test_interpolation_task(tiny_config):
    cfg = tiny_config("task=interpolation", "task.points=5",
                      "task.pairs=[[seeds,final,seed:1],[order,final,data_seed:1],[kids,spawn:1:1,spawn:1:2]]")
    summary = run_interpolation(cfg)
    out = Path(cfg.output_dir)
    assert (out / "figures" / "interpolation.png").stat().st_size > 0
    data = instantiate(cfg.dataset)
    for name, entry in summary["pairs"].items():
        from losslandscape.landscape.scans import ScanResult

        curve = ScanResult.load(entry["file"])
        states = []
        for end, key in ((0, "checkpoint_a"), (-1, "checkpoint_b")):  # the end points are the two models themselves
            model = model_from_checkpoint(entry[key])
            with torch.no_grad():
                truth = torch.nn.functional.cross_entropy(model(data.test_x), data.test_y).item()
            assert curve.values["test_loss"][end] == pytest.approx(truth, rel=1e-5), (name, key)
            states.append(torch.cat([p.detach().flatten() for p in model.parameters()]).numpy())
        assert entry["ssr"] == pytest.approx(np.mean(np.sign(states[0]) == np.sign(states[1])))
        assert entry["distance"] == pytest.approx(np.linalg.norm(states[0] - states[1]), rel=1e-5)
        assert all(value >= 0 for value in entry["barrier"].values())
        detail = json.loads((out / "interpolation" / f"{name}.json").read_text())
        assert set(detail["ssr_per_tensor"]) == {n for n, _ in model.named_parameters()}
    same_init = summary["pairs"]["order"]["ssr_init"]
    assert same_init["a"] != same_init["b"] and summary["pairs"]["seeds"]["ssr_init"]["b"] is not None
    with pytest.raises(ValueError, match="must contain t = 1"):
        run_interpolation(tiny_config("task=interpolation", "task.span=[0,0.9]", "task.pairs=[[seeds,final,seed:1]]"))
    with pytest.raises(ValueError, match="model nothing:1: expected init, final, epoch:N"):
        run_interpolation(tiny_config("task=interpolation", "task.pairs=[[bad,final,nothing:1]]"))


def test_spawning_at_the_final_epoch_gives_identical_children(tiny_config):
    cfg = tiny_config("task=spawning", "task.spawn_epochs=[0,2]", "task.points=5", "logger=wandb", "logger.mode=offline")
    summary = run_spawning(cfg)
    final = summary["spawned"]["2"]
    assert final["distance"] == 0.0 and final["ssr"] == 1.0
    assert all(value == 0.0 for value in final["barrier"].values())
    assert summary["distance"][0] > 0  # spawned at initialization: different data orders, different models
    out = Path(cfg.output_dir)
    for name in ["figures/spawning_barrier.png", "figures/spawning_curves.png", "curves/spawning/spawn000.npz", "spawning/spawn002.json"]:
        assert (out / name).stat().st_size > 0, name
    from losslandscape.tracking.wandb_records import logged_history, logged_summary

    records = finished_run_file(out)
    assert logged_summary(records)["barrier/train_loss"] == pytest.approx(summary["barrier"]["train_loss"])
    logged = {key for row in logged_history(records) for key in row}
    assert {"spawning/spawning_barrier/_type", "spawning/spawning_curves/_type"} <= logged
    with pytest.raises(ValueError, match=r"task.spawn_epochs must be distinct epochs in \[0, train.epochs=2\]"):
        run_spawning(tiny_config("task=spawning", "task.spawn_epochs=[0,3]"))
