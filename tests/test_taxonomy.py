"""Yang et al. 2021's taxonomy: CKA, L2, mode connectivity (Bezier curves), task=taxonomy and task=phase_plot."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.types import RunMode

from losslandscape.data.synthetic import make_gaussian_mixture
from losslandscape.landscape.evaluator import Evaluator, parameters_of
from losslandscape.measures.mode_connectivity import (
    CurveTraining,
    bezier_point,
    linear_point,
    midpoint,
    mode_connectivity,
    path_metrics,
    train_bezier_control,
)
from losslandscape.measures.interpolation import barrier
from losslandscape.measures.similarity import l2_distance, linear_cka, parameter_norm, penultimate_features
from losslandscape.models import MLP, ResNet20, SmallCNN
from losslandscape.tasks.phase_plot import run_phase_plot
from losslandscape.tasks.taxonomy import run_taxonomy

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

SMALL = ["dataset=moons", "dataset.n_samples=300", "model=mlp", "model.hidden=[6]", "model.activation=tanh",
         "train.epochs=3", "train.batch_size=32", "task=taxonomy", "task.curve.steps=30", "task.curve.points=5",
         "task.curve.batch_size=32", "hessian.eigen.tol=1e-8", "hessian.trace.hutchpp_products=30"]


# ---------------------------------------------------------------- CKA and L2


def test_linear_cka_of_identical_features_is_one():
    x = torch.randn(50, 7, generator=torch.Generator().manual_seed(0))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)
    wide = torch.randn(5, 40, generator=torch.Generator().manual_seed(1))  # more features than examples: the Gram form
    assert linear_cka(wide, wide) == pytest.approx(1.0, abs=1e-12)


def test_linear_cka_is_invariant_to_orthogonal_maps_and_isotropic_scaling():
    generator = torch.Generator().manual_seed(2)
    x, y = torch.randn(60, 5, generator=generator, dtype=torch.float64), torch.randn(60, 8, generator=generator, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=generator, dtype=torch.float64))
    reference = linear_cka(x, y)
    assert 0 < reference < 1
    assert linear_cka(x, y @ q) == pytest.approx(reference, abs=1e-12)
    assert linear_cka(3.7 * x, y) == pytest.approx(reference, abs=1e-12)
    assert linear_cka(x + 5.0, -0.2 * y @ q) == pytest.approx(reference, abs=1e-12)  # centring removes shifts
    anisotropic = torch.diag(torch.tensor([1.0, 10.0, 1.0, 1.0, 1.0], dtype=torch.float64))
    assert linear_cka(x @ anisotropic, y) != pytest.approx(reference, abs=1e-3)  # not invariant to any invertible map


def test_linear_cka_matches_a_hand_computed_value():
    # X is centred; X^T X = [[2,1],[1,2]] (Frobenius sqrt 10), Y^T Y = 6, Y^T X = [3, 3] (squared norm 18):
    # CKA = 18 / (6 sqrt 10) = 3 / sqrt 10
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    y = torch.tensor([[1.0], [1.0], [-2.0]])
    assert linear_cka(x, y) == pytest.approx(3 / math.sqrt(10), abs=1e-12)
    wide = torch.cat([x, torch.zeros(3, 2)], dim=1)  # 4 features > 3 examples: the Gram-matrix branch
    assert linear_cka(wide, y) == pytest.approx(3 / math.sqrt(10), abs=1e-12)
    # one feature each: CKA is the squared correlation, corr([1,2,3], [1,0,2]) = 1/2
    assert linear_cka(torch.tensor([[1.0], [2.0], [3.0]]), torch.tensor([[1.0], [0.0], [2.0]])) == pytest.approx(0.25, abs=1e-12)


@pytest.mark.parametrize("model", [SmallCNN((1, 8, 8), 10), MLP((1, 8, 8), 10, hidden=[12, 9]), ResNet20((1, 8, 8), 10, width=0.25)])
def test_the_hooked_features_are_the_models_penultimate_features(model):
    x = torch.randn(20, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    model.eval()
    with torch.no_grad():
        expected = model.features(x).double()
    # batches of 7 against one batch of 20: float32 kernels may sum in another order, hence float32 tolerances
    torch.testing.assert_close(penultimate_features(model, x, batch_size=7), expected, rtol=1e-5, atol=1e-6)


def test_l2_distance_and_norm():
    a = {"w": torch.tensor([3.0, 0.0]), "b": torch.tensor([1.0])}
    b = {"w": torch.tensor([0.0, 4.0]), "b": torch.tensor([1.0])}
    assert l2_distance(a, b) == pytest.approx(5.0)
    assert parameter_norm(a) == pytest.approx(math.sqrt(10))


def test_width_multiplier_scales_the_small_models():
    assert SmallCNN((1, 8, 8), 10, channels=[16, 32], hidden=64, width=2).fc.out_features == 128
    assert SmallCNN((1, 8, 8), 10, channels=[16, 32], width=0.5).conv[0].out_channels == 8
    assert [m.out_features for m in MLP((2,), 2, hidden=[10, 6], width=0.5).body if isinstance(m, torch.nn.Linear)] == [5, 3]
    with pytest.raises(ValueError, match="width"):
        MLP((2,), 2, width=0)


# ---------------------------------------------------------------- mode connectivity


def test_mode_connectivity_on_known_curves():
    ts = [0.0, 0.5, 1.0]
    assert mode_connectivity(ts, [1.0, 3.0, 2.0]) == {"mc": -1.5, "t_star": 0.5, "endpoint_mean": 1.5, "loss_at_t_star": 3.0}
    assert mode_connectivity(ts, [1.0, 0.2, 1.0])["mc"] == pytest.approx(0.8)
    assert mode_connectivity(ts, [2.0, 2.0, 2.0])["mc"] == 0.0  # a flat curve, e.g. between identical models
    assert mode_connectivity(ts, [1.0, float("nan"), 1.0])["mc"] == -math.inf
    assert barrier(ts, [1.0, 3.0, 2.0])["barrier"] == pytest.approx(1.5)
    assert barrier(ts, [1.0, 0.5, 2.0])["barrier"] == 0.0  # below the chord: the endpoints give 0
    with pytest.raises(ValueError, match="start at 0 and end at 1"):
        mode_connectivity([0.1, 1.0], [1.0, 1.0])


def test_bezier_curve_through_the_midpoint_is_the_linear_path():
    generator = torch.Generator().manual_seed(4)
    a = {"w": torch.randn(4, 3, generator=generator, dtype=torch.float64), "b": torch.randn(3, generator=generator, dtype=torch.float64)}
    b = {k: torch.randn(v.shape, generator=generator, dtype=torch.float64) for k, v in a.items()}
    for t in np.linspace(0, 1, 11):
        curve, line = bezier_point(a, midpoint(a, b), b, t), linear_point(a, b, t)
        for name in a:
            torch.testing.assert_close(curve[name], line[name], rtol=0, atol=1e-15)
    integers = {"w": torch.tensor([2.0, -6.0, 10.0])}, {"w": torch.tensor([-4.0, 8.0, 0.0])}
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):  # dyadic t and integer parameters: every product is exact
        assert torch.equal(bezier_point(integers[0], midpoint(*integers), integers[1], t)["w"], linear_point(*integers, t)["w"])


def test_bezier_point_is_the_bernstein_polynomial_exact_at_the_ends():
    generator = torch.Generator().manual_seed(5)
    a, c, b = ({"w": torch.randn(6, generator=generator, dtype=torch.float64)} for _ in range(3))
    for t in np.linspace(0, 1, 21):
        bernstein = (1 - t) ** 2 * a["w"] + 2 * t * (1 - t) * c["w"] + t**2 * b["w"]
        torch.testing.assert_close(bezier_point(a, c, b, t)["w"], bernstein, rtol=0, atol=1e-14)
    assert torch.equal(bezier_point(a, c, b, 0.0)["w"], a["w"]) and torch.equal(bezier_point(a, c, b, 1.0)["w"], b["w"])
    assert torch.equal(linear_point(a, b, 0.0)["w"], a["w"]) and torch.equal(linear_point(a, b, 1.0)["w"], b["w"])
    same = {"w": torch.randn(1000, generator=generator)}  # float32: identical models give a constant curve, bit for bit
    assert all(torch.equal(bezier_point(same, same, same, t)["w"], same["w"]) for t in np.linspace(0, 1, 101))


def test_curve_between_identical_models_without_training_is_flat():
    torch.manual_seed(0)
    model = MLP((2,), 3, hidden=[5])
    theta = parameters_of(model)
    data = make_gaussian_mixture(n_samples=200, seed=0)
    control, record = train_bezier_control(model, theta, theta, data.train_x, data.train_y, CurveTraining(steps=0))
    assert record["steps"] == 0 and all(torch.equal(control[n], theta[n]) for n in theta)
    ts = np.linspace(0, 1, 5)
    losses = path_metrics(Evaluator(model, data.train_x, data.train_y), lambda t: bezier_point(theta, control, theta, t), ts)[:, 0]
    assert mode_connectivity(ts, losses)["mc"] == 0.0 and np.ptp(losses) == 0.0


def convex_models(data, seeds):
    """Linear softmax regression (a convex loss) trained to its minimum by L-BFGS from different inits, in float64."""
    models = []
    for seed in seeds:
        torch.manual_seed(seed)
        model = MLP((2,), 3, hidden=[]).double()
        optimizer = torch.optim.LBFGS(model.parameters(), lr=1, max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(data.train_x.double()), data.train_y)
            loss.backward()
            return loss

        optimizer.step(closure)
        models.append(model)
    return models


def test_convex_model_is_mode_connected():
    data = make_gaussian_mixture(n_samples=400, cluster_std=2.5, seed=1)  # overlapping blobs: a finite minimizer
    model_a, model_b = convex_models(data, [0, 1])
    theta_a, theta_b = parameters_of(model_a), parameters_of(model_b)
    x = data.train_x.double()
    evaluator = Evaluator(model_a, x, data.train_y)
    ts = np.linspace(0, 1, 11)
    linear = path_metrics(evaluator, lambda t: linear_point(theta_a, theta_b, t), ts)[:, 0]
    assert barrier(ts, linear)["barrier"] <= 1e-12  # convexity: never above the chord
    settings = CurveTraining(steps=100, lr=0.05, batch_size=64, optimizer="sgd", seed=0)
    control, _ = train_bezier_control(model_a, theta_a, theta_b, x, data.train_y, settings)
    bezier = path_metrics(evaluator, lambda t: bezier_point(theta_a, control, theta_b, t), ts)[:, 0]
    assert abs(mode_connectivity(ts, bezier)["mc"]) < 1e-3 * bezier[0]
    assert abs(mode_connectivity(ts, linear)["mc"]) < 1e-6


def test_curve_training_learns_and_resumes_to_the_same_numbers(tmp_path):
    data = make_gaussian_mixture(n_samples=300, seed=2)
    torch.manual_seed(0)
    model_a, model_b = MLP((2,), 3, hidden=[8]), MLP((2,), 3, hidden=[8])
    theta_a, theta_b = parameters_of(model_a), parameters_of(model_b)
    settings = CurveTraining(steps=20, lr=0.05, batch_size=32, seed=3, save_every=10)
    state = tmp_path / "state.pt"
    full, record = train_bezier_control(model_a, theta_a, theta_b, data.train_x, data.train_y, settings, state, "key")
    assert state.is_file() and torch.load(state, weights_only=True)["step"] == 10  # the last snapshot before the end
    resumed, again = train_bezier_control(model_a, theta_a, theta_b, data.train_x, data.train_y, settings, state, "key")
    assert again["resumed_at"] == 10 and again["losses"] == record["losses"]
    assert all(torch.equal(full[n], resumed[n]) for n in full)
    fresh, other = train_bezier_control(model_a, theta_a, theta_b, data.train_x, data.train_y, settings, state, "another run")
    assert other["resumed_at"] == 0  # a snapshot of other settings is never reused
    assert np.mean(record["losses"][-5:]) < np.mean(record["losses"][:5])
    with pytest.raises(ValueError, match="optimizer 'lbfgs' is unknown"):
        CurveTraining(optimizer="lbfgs")


# ---------------------------------------------------------------- task=taxonomy


def test_taxonomy_task_measures_and_resumes(tiny_config):
    cfg = tiny_config(*SMALL)
    summary = run_taxonomy(cfg)
    out = Path(cfg.output_dir)
    for name in ["taxonomy/models/seed0.json", "taxonomy/models/seed1.json", "taxonomy/pairs/seed0-seed1.json",
                 "taxonomy/pairs/seed0-seed1-control.pt", "taxonomy/measures.json", "curves/mode_connectivity_seed0-seed1.npz",
                 "figures/mode_connectivity.png", "figures/mode_connectivity.pdf"]:
        assert (out / name).stat().st_size > 0, name
    assert summary["seeds"] == [0, 1] and set(summary["measures"]) >= {"mode_connectivity", "cka", "hessian_top_eigenvalue", "hessian_trace"}
    assert summary["training_config"]["model"]["hidden"] == [6]

    # the Hessian's top eigenvalue of each model against the dense Hessian (torch.func.hessian, independent of Lanczos)
    from losslandscape.training.checkpoints import model_from_checkpoint
    from hydra.utils import instantiate

    data = instantiate(cfg.dataset)
    measures = json.loads((out / "taxonomy" / "measures.json").read_text())
    for seed, path in measures["provenance"]["checkpoints"].items():
        model = model_from_checkpoint(path).double()
        theta = parameters_of(model)
        names, shapes = list(theta), [v.shape for v in theta.values()]
        evaluator = Evaluator(model, data.train_x.double(), data.train_y)

        def loss(vector):
            parts = torch.split(vector, [s.numel() for s in shapes])
            return evaluator.loss({n: p.view(s) for n, p, s in zip(names, parts, shapes)})

        exact = torch.linalg.eigvalsh(torch.func.hessian(loss)(torch.cat([v.flatten() for v in theta.values()])))
        row = summary["per_model"][f"seed{seed}"]
        assert row["hessian_top_eigenvalue"] == pytest.approx(float(exact[-1]), rel=1e-6)
        assert abs(row["hessian_trace"] - float(exact.sum())) <= 4 * row["hessian_trace_standard_error"] + 1e-9
        with torch.no_grad():
            assert row["test_accuracy"] == pytest.approx(float((model(data.test_x.double()).argmax(1) == data.test_y).double().mean()), abs=1e-6)

    pair = summary["per_pair"]["seed0-seed1"]
    curve = np.load(out / "curves" / "mode_connectivity_seed0-seed1.npz")
    ends = (curve["bezier_loss"][0] + curve["bezier_loss"][-1]) / 2
    star = np.argmax(np.abs(curve["bezier_loss"] - ends))
    assert pair["mode_connectivity"] == pytest.approx(ends - curve["bezier_loss"][star]) == summary["mode_connectivity"]
    assert curve["bezier_loss"][0] == pytest.approx(curve["linear_loss"][0]) and curve["t"].tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert 0 < summary["cka"] <= 1 and summary["l2_distance"] > 0
    assert summary["test_accuracy"] == pytest.approx(np.mean([r["test_accuracy"] for r in summary["per_model"].values()]))

    # a rerun reuses every finished item (no retraining of the curve, no new Hessian)
    before = {p: p.stat().st_mtime_ns for p in (out / "taxonomy").rglob("*") if p.is_file() and p.name != "measures.json"}
    cfg.resume = False
    assert run_taxonomy(cfg)["cka"] == summary["cka"]
    assert {p: p.stat().st_mtime_ns for p in before} == before


def test_taxonomy_with_batch_norm_recomputes_statistics_along_the_curve(tiny_config):
    cfg = tiny_config("model=cnn_bn", "model.channels=[4]", "model.hidden=8", "dataset.train_size=300", "train.epochs=1",
                      "task=taxonomy", "task.hessian=false", "task.curve.steps=5", "task.curve.points=3", "task.cka.examples=50",
                      "logger=wandb", "logger.mode=offline")
    summary = run_taxonomy(cfg)
    pair = summary["per_pair"]["seed0-seed1"]
    assert pair["bn_mode"] == "recompute" and pair["cka_examples"] == 50 and math.isfinite(pair["mode_connectivity"])
    assert "hessian_trace" not in summary and "hessian_trace" not in summary["measures"]

    from losslandscape.tracking.wandb_records import finished_run_file, logged_history, logged_summary

    records = finished_run_file(cfg.output_dir)
    assert "taxonomy/mode_connectivity/_type" in {key for row in logged_history(records) for key in row}
    logged = logged_summary(records)
    assert logged["mode_connectivity"] == pytest.approx(summary["mode_connectivity"])
    assert logged["per_pair/seed0-seed1/cka"] == pytest.approx(pair["cka"])


@pytest.mark.parametrize("override, message", [("task.models=1", "task.models=1: expected an integer >= 2"),
                                               ("task.seeds=[3,3]", r"task.seeds=\[3,3\]: expected distinct seeds"),
                                               ("task.cka.layer=nope", "no module 'nope'"),
                                               ("task.curve.optimizer=lbfgs", "task.curve.optimizer=lbfgs: expected one of adam, sgd"),
                                               ("task.curve.points=2", "task.curve.points=2: expected an integer >= 3")])
def test_taxonomy_rejects_bad_settings_before_training(tiny_config, override, message):
    cfg = tiny_config(*SMALL, override)
    with pytest.raises(ValueError, match=message):
        run_taxonomy(cfg)
    assert not Path(cfg.cache_dir).exists() or not any(Path(cfg.cache_dir).glob("*/final.pt"))


# ---------------------------------------------------------------- task=phase_plot


def fake_job(folder: Path, width, batch_size, seed, measures: dict, stored_config: bool = True) -> None:
    folder.mkdir(parents=True)
    summary = {"task": "taxonomy", "dataset": "digits", "model": "losslandscape.models.cnn.SmallCNN", **measures,
               "measures": list(measures)}
    if stored_config:
        summary["training_config"] = {"model": {"width": width}, "train": {"batch_size": batch_size}, "seed": seed}
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text(f"- task=taxonomy\n- model.width={width}\n- train.batch_size={batch_size}\n- seed={seed}\n")
    (folder / "summary.json").write_text(json.dumps(summary))


def test_phase_plot_averages_the_seeds_of_each_cell(tiny_config, tmp_path):
    sweep = tmp_path / "sweep"
    # cell (width, batch) -> values of seeds 0 and 1 for two measures; (2, 128) has one job only, (1, 128) none
    jobs = {(0.5, 32): [(0.5, -1.0), (0.75, -0.5)], (0.5, 128): [(0.25, 0.0), (0.5, 0.25)],
            (1, 32): [(1.0, 2.0), (0.0, 4.0)], (2, 32): [(0.125, 1.0), (0.375, 3.0)], (2, 128): [(0.5, 8.0)]}
    index = 0
    for (width, batch), rows in jobs.items():
        for seed, (cka, mc) in enumerate(rows):
            # one job keeps only its overrides (an older summary without the training config)
            fake_job(sweep / f"job{index}", width, batch, seed, {"cka": cka, "mode_connectivity": mc}, stored_config=index != 3)
            index += 1
    (sweep / "job_unfinished" / ".hydra").mkdir(parents=True)
    (sweep / "other").mkdir()
    (sweep / "other" / "summary.json").write_text(json.dumps({"task": "hessian"}))

    cfg = tiny_config("task=phase_plot", f"task.sweep_dir={sweep}")
    summary = run_phase_plot(cfg)
    assert summary["jobs"] == 9 and summary["loads"] == [0.5, 1, 2] and summary["temperatures"] == [32, 128]
    assert summary["measures"] == ["mode_connectivity", "cka"]
    expected = {"cka": {(0.5, 32): 0.625, (0.5, 128): 0.375, (1, 32): 0.5, (2, 32): 0.25, (2, 128): 0.5},
                "mode_connectivity": {(0.5, 32): -0.75, (0.5, 128): 0.125, (1, 32): 3.0, (2, 32): 2.0, (2, 128): 8.0}}
    for measure, cells in expected.items():
        assert summary["cells"][measure] == {f"load={w},temperature={b}": v for (w, b), v in cells.items()}
    out = Path(cfg.output_dir)
    cells = json.loads((out / "phase" / "cells.json").read_text())["cells"]
    assert {(c["load"], c["temperature"]): c["count"] for c in cells} == {k: len(v) for k, v in jobs.items()}
    std = next(c for c in cells if (c["load"], c["temperature"]) == (1, 32))["cka"]["std"]
    assert std == pytest.approx(np.std([1.0, 0.0], ddof=1))
    rows = list(csv.DictReader((out / "phase" / "cells.csv").open()))
    assert len(rows) == 2 * 5 and {float(r["mean"]) for r in rows if r["measure"] == "cka"} == {0.625, 0.375, 0.5, 0.25}
    for name in ["phase_cka", "phase_mode_connectivity", "phase"]:
        assert (out / "figures" / f"{name}.png").stat().st_size > 0 and (out / "figures" / f"{name}.pdf").stat().st_size > 0
    assert any("1 job folders have no summary" in line for line in summary["headline"])

    with pytest.raises(ValueError, match="no value for 'dataset.train_size'"):
        run_phase_plot(tiny_config("task=phase_plot", f"task.sweep_dir={sweep}", "task.load=dataset.train_size", f"output_dir={tmp_path / 'x'}"))
    with pytest.raises(ValueError, match="does not exist"):
        run_phase_plot(tiny_config("task=phase_plot", f"task.sweep_dir={tmp_path / 'missing'}", f"output_dir={tmp_path / 'y'}"))


def test_the_sweep_and_figure_recipes_compose(tmp_path):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        sweep = compose(config_name="config", overrides=["experiment=phase_sweep"], return_hydra_config=True)
        figure = compose(config_name="config", overrides=["experiment=fig_phase"])
    assert sweep.task.name == "taxonomy" and sweep.model.width == 1.0 and sweep.hydra.mode == RunMode.MULTIRUN
    assert dict(sweep.hydra.sweeper.params) == {"model.width": "0.5,1", "train.batch_size": "32,128", "seed": "0,1"}
    assert figure.task.name == "phase_plot" and figure.gallery.panels == ["figures/phase.png"]
