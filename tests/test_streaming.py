"""Splits larger than the device are streamed from a DataLoader in the resident path's batches: every
measure (scans, Hessian-vector products, eigenvalues, mining) gives the resident numbers bit for bit
on the CPU, and the resident numbers are held to an independent truth."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.func import functional_call

from conftest import TINY, compose_config
from losslandscape.errors import ConfigError
from losslandscape.hessian import HessianOperator, hessian_eigenpairs
from losslandscape.landscape.batches import Residency, ResidentBatches, StreamedBatches
from losslandscape.landscape.evaluator import Evaluator, parameters_of
from losslandscape.landscape.scans import LineScan, ScanResult, run_scan
from losslandscape.mining.miner import DirectionMiner
from losslandscape.mining.objectives import WPeak
from losslandscape.validation import validate_config

REPO = Path(__file__).resolve().parents[1]

# auto with a budget far below the test splits: they are streamed, as a large split would be
TINY_BUDGET = Residency("auto", budget_mb=0.001, loader_workers=2)
IN_PROCESS = Residency(False, loader_workers=0)  # the CPU's default (loader_workers=auto)


def blobs(n: int = 90, features: int = 12, classes: int = 3, seed: int = 0, dtype=torch.float32):
    generator = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=generator)
    x = torch.randn(n, features, generator=generator, dtype=dtype) + y[:, None].to(dtype)
    return x, y


def mlp(features: int = 12, classes: int = 3, batch_norm: bool = False, dtype=torch.float32) -> torch.nn.Module:
    torch.manual_seed(0)
    layers = [torch.nn.Linear(features, 16), *([torch.nn.BatchNorm1d(16)] if batch_norm else []), torch.nn.Tanh(),
              torch.nn.Linear(16, classes)]
    model = torch.nn.Sequential(*layers).to(dtype)
    if batch_norm:  # running statistics that differ from any batch's own
        model(torch.randn(64, features, dtype=dtype) * 2 + 1)
    return model.eval()


def directions_of(theta, count: int, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return [{n: torch.randn(v.shape, generator=generator, dtype=v.dtype) for n, v in theta.items()} for _ in range(count)]


def plain_loss(model, theta, x, y) -> torch.Tensor:
    """The mean cross-entropy written out once, without the evaluator: the independent truth."""
    return torch.nn.functional.cross_entropy(functional_call(model, theta, (x,)), y)


def dense_hessian(model, theta, x, y) -> torch.Tensor:
    names = list(theta)
    shapes, sizes = [theta[n].shape for n in names], [theta[n].numel() for n in names]
    flat = torch.cat([theta[n].reshape(-1) for n in names])

    def loss(vector):
        params = {n: t.view(s) for n, t, s in zip(names, vector.split(sizes), shapes)}
        return plain_loss(model, params, x, y)

    return torch.autograd.functional.hessian(loss, flat)


# ---------------------------------------------------------------- choosing resident or streamed


def test_auto_keeps_a_split_resident_within_the_budget_and_streams_it_beyond():
    x, y = blobs()  # 90 x 12 float32 inputs + 90 int64 targets = 5040 bytes
    size_mb = (x.numel() * 4 + y.numel() * 8) / 2**20
    assert Residency("auto", budget_mb=size_mb).keeps_resident(x, y)
    assert not Residency("auto", budget_mb=size_mb * 0.999).keeps_resident(x, y)
    assert Residency(True, budget_mb=1e-9).keeps_resident(x, y) and not Residency(False, budget_mb=1e9).keeps_resident(x, y)
    model = mlp()
    assert isinstance(Evaluator(model, x, y).data, ResidentBatches)  # the default of the Python class: resident
    assert isinstance(Evaluator(model, x, y, residency=TINY_BUDGET).data, StreamedBatches)


@pytest.mark.parametrize("setting, problem", [
    ({"resident": "maybe"}, "evaluation.resident='maybe': expected auto, true or false"),
    ({"resident": 1}, "evaluation.resident=1: expected auto, true or false"),
    ({"budget_mb": 0}, "evaluation.resident_budget_mb=0: expected a number of megabytes > 0"),
    ({"loader_workers": -1}, "evaluation.loader_workers=-1: expected auto or an integer >= 0"),
    ({"prefetch_factor": 0}, "evaluation.prefetch_factor=0: expected an integer >= 1"),
])
def test_bad_residency_settings_get_one_clear_line(setting, problem):
    with pytest.raises(ConfigError) as error:
        Residency(**setting)
    assert [line.split(" (")[0] for line in error.value.problems] == [problem.split(" (")[0]]


@pytest.mark.parametrize("override, line", [
    ("evaluation.resident=maybe", "evaluation.resident=maybe: expected auto, true or false"),
    ("evaluation.resident_budget_mb=-5", "evaluation.resident_budget_mb=-5: expected a number > 0"),
    ("evaluation.loader_workers=-1", "evaluation.loader_workers=-1: expected auto or an integer >= 0"),
    ("evaluation.prefetch_factor=0", "evaluation.prefetch_factor=0: expected an integer >= 1"),
])
def test_the_config_schema_checks_the_streaming_keys_before_any_work(override, line, tmp_path):
    with pytest.raises(ConfigError) as error:
        validate_config(compose_config(tmp_path, [override]))
    assert error.value.problems == [line]


# ---------------------------------------------------------------- streamed == resident, bit for bit


@pytest.mark.parametrize("residency", [TINY_BUDGET, IN_PROCESS], ids=["loader-workers", "in-process"])
def test_a_streamed_line_scan_is_the_resident_one_bit_for_bit(residency, tmp_path):
    x, y = blobs()
    model = mlp()
    theta = parameters_of(model)
    [d] = directions_of(theta, 1)
    scan = LineScan(points=9)
    resident = run_scan(scan, theta, [d], {"train": Evaluator(model, x, y, batch_size=16)}, tmp_path / "r.npz", progress=False)
    streamed_evaluator = Evaluator(model, x, y, batch_size=16, residency=residency)
    streamed = run_scan(scan, theta, [d], {"train": streamed_evaluator}, tmp_path / "s.npz", progress=False)
    assert streamed_evaluator.data.streamed
    for key in resident.values:
        np.testing.assert_array_equal(streamed.values[key], resident.values[key])
    # and the resident curve is the plain definition: the mean loss at theta + lambda d
    lambdas = resident.axes["lambda"]
    truth = [plain_loss(model, {n: theta[n] + float(a) * d[n] for n in theta}, x, y).item() for a in lambdas]
    np.testing.assert_allclose(resident.values["train_loss"], truth, rtol=1e-5)


@pytest.mark.parametrize("bn_mode", ["eval", "recompute", "train"])
@pytest.mark.parametrize("engine", [{}, {"points_per_batch": 3}, {"workers": 2}], ids=["plain", "vmap", "point-workers"])
def test_plane_points_streamed_are_resident_bit_for_bit_under_every_engine_and_bn_mode(bn_mode, engine):
    x, y = blobs()
    model = mlp(batch_norm=True)
    theta = parameters_of(model)
    directions = directions_of(theta, 2)
    coordinates = torch.tensor([[0.0, 0.0], [0.3, -0.2], [-0.5, 0.4]])
    points_per_batch = engine.get("points_per_batch", 1)
    settings = {"batch_size": 16, "bn_mode": bn_mode, "bn_x": x[:40], "workers": engine.get("workers", 1)}
    resident = Evaluator(model, x, y, **settings).metrics_at(theta, directions, coordinates, points_per_batch)
    streamed = Evaluator(model, x, y, **settings, residency=TINY_BUDGET).metrics_at(theta, directions, coordinates, points_per_batch)
    assert torch.equal(streamed, resident)
    # the centre is the plain definition of each BatchNorm policy
    if bn_mode == "eval":
        assert resident[0, 0].item() == pytest.approx(plain_loss(model, theta, x, y).item(), rel=1e-5)


def test_the_first_layer_shortcut_falls_back_to_the_plain_path_when_streamed():
    x, y = blobs(features=64)  # fan-in 64: the shortcut applies to the resident split
    model = mlp(features=64)
    theta = parameters_of(model)
    directions = directions_of(theta, 2)
    coordinates = torch.tensor([[0.2, 0.1], [-0.4, 0.3]])
    shortcut = Evaluator(model, x, y, batch_size=16, first_layer_mb=64)
    plain = Evaluator(model, x, y, batch_size=16, first_layer_mb=0)
    streamed = Evaluator(model, x, y, batch_size=16, first_layer_mb=64, residency=TINY_BUDGET)
    with_shortcut = shortcut.metrics_at(theta, directions, coordinates)
    assert shortcut.shortcut_cache[1] is not None  # it was used on the resident split
    got = streamed.metrics_at(theta, directions, coordinates)
    assert streamed.shortcut_cache is None
    assert torch.equal(got, plain.metrics_at(theta, directions, coordinates))
    torch.testing.assert_close(got, with_shortcut, rtol=1e-5, atol=1e-6)


def test_a_pass_stopped_early_leaves_the_next_passes_exact_and_the_global_random_state_alone():
    x, y = blobs()
    model = mlp()
    theta = parameters_of(model)
    resident = Evaluator(model, x, y, batch_size=16).metrics(theta)
    streamed = Evaluator(model, x, y, batch_size=16, residency=TINY_BUDGET)
    state = torch.get_rng_state()
    assert torch.equal(streamed.metrics(theta), resident)
    first_batches = iter(streamed.data)
    next(first_batches), next(first_batches)
    del first_batches  # a pass abandoned after two of six batches
    for _ in range(3):
        assert torch.equal(streamed.metrics(theta), resident)
    assert torch.equal(torch.get_rng_state(), state)


def float64_problem(batch_norm: bool = False):
    x, y = blobs(n=70, features=5, dtype=torch.float64)
    model = mlp(features=5, batch_norm=batch_norm, dtype=torch.float64)
    return model, parameters_of(model), x, y


@pytest.mark.parametrize("batches_per_term", [1, 2, None])
def test_a_streamed_hessian_vector_product_is_the_resident_one_and_the_dense_hessians(batches_per_term):
    model, theta, x, y = float64_problem()
    resident = HessianOperator.from_evaluator(Evaluator(model, x, y, batch_size=16), theta, batches_per_term=batches_per_term)
    streamed = HessianOperator.from_evaluator(Evaluator(model, x, y, batch_size=16, residency=TINY_BUDGET), theta,
                                              batches_per_term=batches_per_term)
    vector = torch.randn(resident.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    product = streamed.matvec(vector)
    assert torch.equal(product, resident.matvec(vector))
    assert torch.equal(streamed.matvec(vector), product)  # every product is a fresh pass with the same batches
    torch.testing.assert_close(product, dense_hessian(model, theta, x, y) @ vector, rtol=1e-9, atol=1e-11)


def test_hessian_recompute_streamed_is_resident_bit_for_bit():
    model, theta, x, y = float64_problem(batch_norm=True)
    settings = {"batch_size": 16, "bn_mode": "recompute", "bn_x": x[:32]}
    vector = torch.randn(sum(v.numel() for v in theta.values()), generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    resident = HessianOperator.from_evaluator(Evaluator(model, x, y, **settings), theta).matvec(vector)
    streamed = HessianOperator.from_evaluator(Evaluator(model, x, y, **settings, residency=TINY_BUDGET), theta).matvec(vector)
    assert torch.equal(streamed, resident)


def test_a_streamed_hessian_top_eigenvalue_is_the_resident_one_and_the_dense_one():
    model, theta, x, y = float64_problem()
    tops = []
    for residency in (None, TINY_BUDGET):
        operator = HessianOperator.from_evaluator(Evaluator(model, x, y, batch_size=16, residency=residency), theta)
        values, _, _ = hessian_eigenpairs(operator, 1, "top", 1e-10, seed=0)
        tops.append(float(values[0]))
    assert tops[0] == tops[1]
    assert tops[1] == pytest.approx(torch.linalg.eigvalsh(dense_hessian(model, theta, x, y))[-1].item(), rel=1e-8)


def test_mining_streamed_gives_the_resident_objective_and_directions_bit_for_bit():
    x, y = blobs()
    model = mlp()
    theta = parameters_of(model)
    start = directions_of(theta, 1)
    miner = DirectionMiner(steps=3, batch_size=32)
    results = [miner.mine(WPeak(a=0.5), Evaluator(model, x, y, batch_size=16, residency=residency), theta, start, seed=0)
               for residency in (None, TINY_BUDGET)]
    assert results[0].trace.keys() == results[1].trace.keys() and len(results[1].trace["objective"]) == 3
    for key, values in results[0].trace.items():  # (WPeak has no high targets: their mean is NaN in both)
        np.testing.assert_array_equal(results[1].trace[key], values)
    for name in theta:
        assert torch.equal(results[0].directions[0][name], results[1].directions[0][name])
    # one objective value against the plain definition: a mini-batch's mean loss at a target point
    indices = torch.randperm(len(y), generator=torch.Generator().manual_seed(5))[:32]
    streamed = Evaluator(model, x, y, batch_size=16, residency=TINY_BUDGET)
    at = {n: theta[n] + 0.5 * start[0][n] for n in theta}
    value = streamed.batch_loss(at, indices)
    assert torch.equal(value, Evaluator(model, x, y, batch_size=16).batch_loss(at, indices))
    assert value.item() == pytest.approx(plain_loss(model, at, x[indices], y[indices]).item(), rel=1e-6)


# ---------------------------------------------------------------- the real pipeline


def run_py(tmp_path: Path, name: str, *overrides: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(REPO / "run.py"), "task=landscape", "scan=line", "evaluation.first_layer_mb=0",
               f"output_dir={tmp_path / name}", f"cache_dir={tmp_path / 'cache'}", f"hydra.run.dir={tmp_path / 'hydra' / name}",
               *[o for o in TINY if not o.startswith("scan.plane")], *overrides]
    environment = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(command, capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=600)


def test_run_py_landscape_streamed_writes_the_resident_curves(tmp_path):
    streamed = run_py(tmp_path, "streamed", "evaluation.resident=false", "evaluation.batch_size=100")
    assert streamed.returncode == 0, streamed.stderr[-3000:]
    assert "streaming a split of 1437 examples" in streamed.stdout + streamed.stderr  # digits' train split
    budget = run_py(tmp_path, "budget", "evaluation.resident_budget_mb=0.01", "evaluation.batch_size=100")
    resident = run_py(tmp_path, "resident", "evaluation.resident=true", "evaluation.batch_size=100")
    assert budget.returncode == 0 and resident.returncode == 0, (budget.stderr[-2000:], resident.stderr[-2000:])
    assert "streaming a split" in budget.stdout + budget.stderr and "streaming" not in resident.stdout + resident.stderr
    curves = {name: ScanResult.load(next((tmp_path / name / "curves").glob("*.npz"))) for name in ("streamed", "budget", "resident")}
    assert curves["resident"].values["train_loss"].shape == (7,)
    for name in ("streamed", "budget"):
        for key, values in curves["resident"].values.items():
            np.testing.assert_array_equal(curves[name].values[key], values)
