"""Forked point workers and the class-major head give the numbers of the plain evaluator and of
independent truth; workers fail loudly, stop with their evaluator, and bad settings are refused."""

import gc
import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from losslandscape.landscape.evaluator import Evaluator, parameters_of, point
from losslandscape.landscape.last_layer import last_layer
from losslandscape.landscape.point_workers import MAX_AUTO_WORKERS, resolve_workers
from losslandscape.landscape.scans import PlaneScan, run_scan
from losslandscape.models.cnn import SmallCNN
from losslandscape.models.mlp import MLP
from losslandscape.tasks.landscape import run_landscape

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="point workers are forked: Linux only")


def numpy_metrics(x, y, weight, bias):
    """Mean softmax cross-entropy and accuracy of the linear classifier ``x @ W^T + b`` in float64 numpy."""
    logits = x @ weight.T + bias
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(y)), y].mean(), (logits.argmax(axis=1) == y).mean()


def mlp_problem(seed=0, examples=45):
    torch.manual_seed(seed)
    model = MLP((1, 8, 8), 10, hidden=(32, 16)).eval()
    x, y = torch.randn(examples, 1, 8, 8), torch.randint(0, 10, (examples,))
    theta = parameters_of(model)
    directions = [{n: torch.randn_like(t) * 0.3 for n, t in theta.items()} for _ in range(2)]
    return model, x, y, theta, directions


@linux_only
def test_workers_give_the_analytic_numbers_of_a_linear_classifier():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(6, 4)).double()
    x, y = torch.randn(50, 6, dtype=torch.float64), torch.randint(0, 4, (50,))
    theta = parameters_of(model)
    d = [{n: torch.randn_like(t) for n, t in theta.items()} for _ in range(2)]
    coordinates = PlaneScan(x_points=5, y_points=3).coordinates().double()  # 15 points over 3 workers, unevenly chunked
    got = Evaluator(model, x, y, batch_size=16, workers=3).metrics_at(theta, d, coordinates)
    for (alpha, beta), (loss, accuracy) in zip(coordinates.tolist(), got.tolist()):
        w = (theta["1.weight"] + alpha * d[0]["1.weight"] + beta * d[1]["1.weight"]).numpy()
        b = (theta["1.bias"] + alpha * d[0]["1.bias"] + beta * d[1]["1.bias"]).numpy()
        expected_loss, expected_accuracy = numpy_metrics(x.numpy(), y.numpy(), w, b)
        assert loss == pytest.approx(expected_loss, rel=1e-12)
        assert accuracy == pytest.approx(expected_accuracy, abs=1e-12)


@linux_only
def test_workers_compute_every_point_as_this_process_does_on_one_thread():
    """Bit for bit, whatever the chunking: a point's numbers never depend on which worker took it."""
    model, x, y, theta, d = mlp_problem()
    coordinates = PlaneScan(x_points=7, y_points=5).coordinates()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        here = Evaluator(model, x, y, batch_size=20, first_layer_mb=64).metrics_at(theta, d, coordinates)
    finally:
        torch.set_num_threads(threads)
    evaluator = Evaluator(model, x, y, batch_size=20, first_layer_mb=64, workers=2)
    whole = evaluator.metrics_at(theta, d, coordinates)
    pieces = torch.cat([evaluator.metrics_at(theta, d, c) for c in coordinates.split([1, 3, 31])])
    assert torch.equal(whole, here) and torch.equal(pieces, here)
    with torch.no_grad():  # and both are the functional definition
        expected = torch.stack([evaluator.metrics(point(theta, d, c)) for c in coordinates])
    torch.testing.assert_close(whole, expected, rtol=1e-5, atol=1e-6)


@linux_only
def test_workers_follow_new_directions_and_theta_between_calls():
    model, x, y, theta, d = mlp_problem()
    _, _, _, other_theta, other_d = mlp_problem(seed=1)
    plain = Evaluator(model, x, y)
    evaluator = Evaluator(model, x, y, workers=2)
    coordinates = PlaneScan(x_points=3, y_points=3).coordinates()
    for center, directions in ((theta, d), (theta, other_d), (other_theta, other_d), (theta, d)):
        torch.testing.assert_close(evaluator.metrics_at(center, directions, coordinates),
                                   plain.metrics_at(center, directions, coordinates), rtol=1e-5, atol=1e-6)
    # one point for two workers: the idle worker is sent the new directions when it next gets work
    lone = evaluator.metrics_at(theta, other_d[:1], torch.tensor([[0.7]]))
    torch.testing.assert_close(lone, plain.metrics_at(theta, other_d[:1], torch.tensor([[0.7]])), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(evaluator.metrics_at(theta, other_d[:1], torch.tensor([[0.1], [0.7], [-2.0]])),
                               plain.metrics_at(theta, other_d[:1], torch.tensor([[0.1], [0.7], [-2.0]])), rtol=1e-5, atol=1e-6)


@linux_only
def test_a_failing_worker_raises_its_error_and_the_workers_keep_serving():
    model, x, y, theta, d = mlp_problem()
    evaluator = Evaluator(model, x, y, workers=2)
    broken = [{n: t for n, t in direction.items() if n != "head.bias"} for direction in d]  # a parameter missing
    with pytest.raises(RuntimeError, match="a scan worker process failed:(.|\n)*KeyError"):
        evaluator.metrics_at(theta, broken, PlaneScan(x_points=3, y_points=3).coordinates())
    coordinates = PlaneScan(x_points=3, y_points=2).coordinates()
    torch.testing.assert_close(evaluator.metrics_at(theta, d, coordinates), Evaluator(model, x, y).metrics_at(theta, d, coordinates),
                               rtol=1e-5, atol=1e-6)


@linux_only
def test_a_killed_worker_is_reported_and_the_next_call_starts_new_ones():
    model, x, y, theta, d = mlp_problem()
    evaluator = Evaluator(model, x, y, workers=2)
    coordinates = PlaneScan(x_points=3, y_points=3).coordinates()
    expected = evaluator.metrics_at(theta, d, coordinates)
    victim = evaluator.point_workers.processes[1]
    os.kill(victim.pid, signal.SIGKILL)
    victim.join(timeout=10)
    with pytest.raises(RuntimeError, match=f"scan worker process {victim.pid} exited with code -9"):
        evaluator.metrics_at(theta, d, coordinates)
    assert torch.equal(evaluator.metrics_at(theta, d, coordinates), expected)


@linux_only
def test_an_interrupted_call_retires_its_workers_and_the_next_call_is_right(monkeypatch):
    """Replies of an interrupted call may still arrive: the next call must not read them as its own."""
    from losslandscape.landscape import point_workers

    model, x, y, theta, d = mlp_problem()
    evaluator = Evaluator(model, x, y, workers=2)
    coordinates = PlaneScan(x_points=4, y_points=4).coordinates()
    expected = evaluator.metrics_at(theta, d, coordinates)
    interrupted = evaluator.point_workers

    def interrupt(connections):
        raise KeyboardInterrupt

    monkeypatch.setattr(point_workers, "wait", interrupt)
    with pytest.raises(KeyboardInterrupt):
        evaluator.metrics_at(theta, d, coordinates.flip(0))
    monkeypatch.undo()
    assert not interrupted.alive
    assert torch.equal(evaluator.metrics_at(theta, d, coordinates), expected)


@linux_only
def test_workers_stop_with_their_evaluator():
    model, x, y, theta, d = mlp_problem()
    evaluator = Evaluator(model, x, y, workers=2)
    evaluator.metrics_at(theta, d, PlaneScan(x_points=2, y_points=2).coordinates())
    processes = list(evaluator.point_workers.processes)
    assert all(p.is_alive() for p in processes)
    del evaluator
    gc.collect()
    for process in processes:
        process.join(timeout=10)
    assert not any(p.is_alive() for p in processes)


@linux_only
def test_a_scan_with_workers_is_the_same_in_one_block_or_many(tmp_path):
    model, x, y, theta, d = mlp_problem()
    scan = PlaneScan(x_points=6, y_points=4)
    evaluators = {"train": Evaluator(model, x, y, workers=2), "test": Evaluator(model, x[:17], y[:17], workers=2)}
    blocks = run_scan(scan, theta, d, evaluators, tmp_path / "blocks.npz", progress=False, save_every_s=0)
    once = run_scan(scan, theta, d, evaluators, tmp_path / "once.npz", progress=False, save_every_s=1e9)
    for key in once.values:
        np.testing.assert_array_equal(blocks.values[key], once.values[key], err_msg=key)


def test_auto_workers_are_one_per_thread_on_a_linux_cpu_and_one_elsewhere(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    linux = sys.platform.startswith("linux")
    expected = min(torch.get_num_threads(), len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS) if linux else 1
    assert resolve_workers("auto", torch.device("cpu")) == expected
    if linux:  # no more than the cores this process may use (a SLURM allocation, taskset)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
        assert resolve_workers("auto", torch.device("cpu")) == 1
        monkeypatch.undo()
        monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert resolve_workers("auto", torch.device("cuda", 0)) == 1
    monkeypatch.setenv("WORLD_SIZE", "2")  # a torchrun rank: the ranks already share the cores
    assert resolve_workers("auto", torch.device("cpu")) == 1
    assert resolve_workers(1, torch.device("cpu")) == 1 and resolve_workers("3", torch.device("cpu")) == 3


@pytest.mark.parametrize("setting", [0, -2, "many", 2.5, "2.0", None])
def test_bad_worker_settings_are_refused(setting):
    with pytest.raises(ValueError, match="evaluation.workers must be 'auto' or a positive integer"):
        resolve_workers(setting, torch.device("cpu"))


def test_workers_on_a_gpu_are_refused_with_the_alternatives():
    with pytest.raises(ValueError, match="needs the CPU.*evaluation.workers=1.*points_per_batch"):
        resolve_workers(2, torch.device("cuda", 0))


def test_a_bad_worker_setting_fails_before_training(tiny_config):
    cfg = tiny_config("evaluation.workers=zero")
    with pytest.raises(ValueError, match="evaluation.workers=zero: expected auto or an integer >= 1"):
        run_landscape(cfg)
    assert not Path(cfg.cache_dir).exists()


class DoubledLogits(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body, self.head = torch.nn.Linear(4, 8), torch.nn.Linear(8, 3)

    def forward(self, x):
        return 2 * self.head(torch.relu(self.body(x)))


class SequenceHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.head(x.view(len(x), 2, 4)).sum(1)


class SharedHead(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(3, 3)

    def forward(self, x):
        return self.layer(torch.tanh(self.layer(x)))


@pytest.mark.parametrize("make_model, example, expected", [
    (lambda: MLP((1, 8, 8), 10), torch.randn(2, 1, 8, 8), "head"),
    (lambda: SmallCNN((1, 8, 8), 10, batch_norm=True).eval(), torch.randn(2, 1, 8, 8), "head"),
    (lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)), torch.randn(2, 1, 8, 8), "1"),
    (lambda: torch.nn.Linear(5, 3), torch.randn(2, 5), None),  # the model itself: nothing to replace
    (DoubledLogits, torch.randn(2, 4), None),  # the output is changed after the last layer
    (SequenceHead, torch.randn(2, 8), None),  # a (batch, tokens, features) input
    (SharedHead, torch.randn(2, 3), None),  # the last layer runs twice
])
def test_the_class_major_head_is_used_exactly_where_the_model_returns_a_last_linear(make_model, example, expected):
    assert last_layer(make_model(), example) == expected


def test_the_class_major_head_keeps_argmax_ties_and_the_numbers_of_the_model():
    """All logits equal (a zero head): argmax takes class 0, so accuracy is class 0's share, as in the model."""
    model, x, y, theta, d = mlp_problem(examples=60)
    theta = {**theta, "head.weight": torch.zeros_like(theta["head.weight"]), "head.bias": torch.zeros_like(theta["head.bias"])}
    d = [{**direction, "head.weight": torch.zeros_like(direction["head.weight"])} for direction in d]
    coordinates = torch.tensor([[0.0, 0.0], [0.5, -1.0]])
    evaluator = Evaluator(model, x, y, first_layer_mb=64)
    got = evaluator.metrics_at(theta, d, coordinates)
    assert evaluator.movable.head is not None and evaluator.movable.head.name == "head"
    assert got[0].tolist() == pytest.approx([np.log(10.0), (y == 0).float().mean().item()], rel=1e-6)
    with torch.no_grad():
        expected = torch.stack([evaluator.metrics(point(theta, d, c)) for c in coordinates])
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_a_lone_linear_layer_is_both_first_layer_and_head_and_gives_the_numbers_of_its_definition():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
    x, y = torch.randn(30, 1, 8, 8), torch.randint(0, 10, (30,))
    theta = parameters_of(model)
    d = [{n: torch.randn_like(t) for n, t in theta.items()} for _ in range(2)]
    coordinates = PlaneScan(x_points=3, y_points=2).coordinates()
    evaluator = Evaluator(model, x, y, batch_size=8, first_layer_mb=64)
    got = evaluator.metrics_at(theta, d, coordinates)
    assert evaluator.shortcut_cache[1] is not None and evaluator.movable.head.name == "1"  # both apply to layer "1"
    with torch.no_grad():
        expected = torch.stack([evaluator.metrics(point(theta, d, c)) for c in coordinates])
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
