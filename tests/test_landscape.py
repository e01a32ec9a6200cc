"""The evaluator and the scans against independent truth: numpy losses of a linear model, the model itself."""

import platform
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from losslandscape.store import save_arrays
from losslandscape.landscape import scans as scans_module
from losslandscape.landscape.evaluator import Evaluator, parameters_of, point
from losslandscape.landscape.scans import LineScan, PlaneScan, ScanResult, run_scan
from losslandscape.models.cnn import SmallCNN


def numpy_cross_entropy(x, y, weight, bias):
    """Mean softmax cross-entropy and accuracy of the linear classifier x @ W^T + b, in float64 numpy."""
    logits = x @ weight.T + bias
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -log_probs[np.arange(len(y)), y].mean(), (logits.argmax(axis=1) == y).mean()


@pytest.fixture
def linear_problem():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 4).double()
    x = torch.randn(50, 3, dtype=torch.float64)
    y = torch.randint(0, 4, (50,))
    theta = parameters_of(model)
    d1 = {"weight": torch.randn(4, 3, dtype=torch.float64), "bias": torch.zeros(4, dtype=torch.float64)}
    d2 = {"weight": torch.randn(4, 3, dtype=torch.float64), "bias": torch.randn(4, dtype=torch.float64)}
    return model, x, y, theta, d1, d2


def test_line_scan_of_a_linear_model_gives_the_analytic_curve(linear_problem, tmp_path):
    model, x, y, theta, d1, _ = linear_problem
    scan = LineScan(span=(-2.0, 3.0), points=11)
    result = run_scan(scan, theta, [d1], {"train": Evaluator(model, x, y, batch_size=7)}, tmp_path / "c.npz", progress=False)
    for lam, loss, accuracy in zip(result.axes["lambda"], result.values["train_loss"], result.values["train_accuracy"]):
        w = (theta["weight"] + lam * d1["weight"]).numpy()
        expected_loss, expected_accuracy = numpy_cross_entropy(x.numpy(), y.numpy(), w, theta["bias"].numpy())
        assert loss == pytest.approx(expected_loss, rel=1e-12)
        assert accuracy == pytest.approx(expected_accuracy, abs=1e-12)


def test_plane_grid_has_the_orientation_of_its_coordinates_on_a_non_square_grid(linear_problem, tmp_path):
    model, x, y, theta, d1, d2 = linear_problem
    scan = PlaneScan(x_span=(-1.0, 2.0), y_span=(-0.5, 0.5), x_points=4, y_points=3)
    result = run_scan(scan, theta, [d1, d2], {"test": Evaluator(model, x, y)}, tmp_path / "s.npz", progress=False)
    grid = result.values["test_loss"]
    assert grid.shape == (3, 4)  # (y_points, x_points)
    np.testing.assert_allclose(result.axes["x"], [-1.0, 0.0, 1.0, 2.0])
    np.testing.assert_allclose(result.axes["y"], [-0.5, 0.0, 0.5])
    for j, beta in enumerate(result.axes["y"]):
        for i, alpha in enumerate(result.axes["x"]):
            w = (theta["weight"] + alpha * d1["weight"] + beta * d2["weight"]).numpy()
            b = (theta["bias"] + alpha * d1["bias"] + beta * d2["bias"]).numpy()
            assert grid[j, i] == pytest.approx(numpy_cross_entropy(x.numpy(), y.numpy(), w, b)[0], rel=1e-12)


def test_center_of_every_scan_is_the_unperturbed_model(tmp_path):
    torch.manual_seed(1)
    model = SmallCNN((1, 8, 8), 10, batch_norm=True).eval()
    model(torch.randn(64, 1, 8, 8))  # eval mode: BN running stats stay at their init, still exercised
    x, y = torch.randn(40, 1, 8, 8), torch.randint(0, 10, (40,))
    theta = parameters_of(model)
    d = [{n: torch.randn_like(t) for n, t in theta.items()} for _ in range(2)]
    with torch.no_grad():
        logits = model(x)
    truth_loss = F.cross_entropy(logits, y).item()
    truth_accuracy = (logits.argmax(1) == y).float().mean().item()
    evaluators = {"train": Evaluator(model, x, y, batch_size=16)}
    line = run_scan(LineScan(points=5), theta, d[:1], evaluators, tmp_path / "l.npz", progress=False)
    plane = run_scan(PlaneScan(x_points=3, y_points=5), theta, d, evaluators, tmp_path / "p.npz", progress=False)
    for result in (line, plane):
        assert result.center_value("train_loss") == pytest.approx(truth_loss, rel=1e-5)
        assert result.center_value("train_accuracy") == pytest.approx(truth_accuracy, abs=1e-7)
    assert plane.values["train_loss"][2, 1] == pytest.approx(truth_loss, rel=1e-5)


def test_vmap_batches_of_points_equal_the_plain_loop(tmp_path):
    torch.manual_seed(2)
    model = SmallCNN((1, 8, 8), 10)
    x, y = torch.randn(30, 1, 8, 8), torch.randint(0, 10, (30,))
    theta = parameters_of(model)
    d = [{n: torch.randn_like(t) * 0.1 for n, t in theta.items()} for _ in range(2)]
    evaluator = Evaluator(model, x, y, batch_size=8)
    coordinates = PlaneScan(x_points=4, y_points=3).coordinates()
    with torch.inference_mode():
        loop = evaluator.metrics_at(theta, d, coordinates, points_per_batch=1)
        batched = evaluator.metrics_at(theta, d, coordinates, points_per_batch=5)
    torch.testing.assert_close(batched, loop, rtol=1e-5, atol=1e-6)


def tied_mlp() -> torch.nn.Module:
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    model[3].weight = model[1].weight  # one tensor under two names: theta has it once
    return model


@pytest.mark.parametrize("make_model, bn_mode", [
    (lambda: SmallCNN((1, 8, 8), 10, batch_norm=True), "eval"),
    (lambda: SmallCNN((1, 8, 8), 10, batch_norm=True), "train"),
    (tied_mlp, "eval"),
])
def test_scans_move_a_private_copy_to_the_numbers_of_the_functional_definition(make_model, bn_mode):
    """metrics_at (one point at a time: a moved private copy, or functional_call where weights are
    tied) equals metrics() at point(theta, d, c), and leaves the caller's model as it was."""
    torch.manual_seed(5)
    model = make_model().eval()
    x, y = torch.randn(30, 1, 8, 8), torch.randint(0, 10, (30,))
    theta = parameters_of(model)
    d = [{n: torch.randn_like(t) * 0.2 for n, t in theta.items()} for _ in range(2)]
    coordinates = PlaneScan(x_points=3, y_points=2).coordinates().float()
    evaluator = Evaluator(model, x, y, batch_size=8, bn_mode=bn_mode, first_layer_mb=64)
    got = evaluator.metrics_at(theta, d, coordinates)
    with torch.no_grad():
        expected = torch.stack([evaluator.metrics(point(theta, d, c)) for c in coordinates])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert (evaluator.movable is None) == (make_model is tied_mlp)
    assert all(torch.equal(p, theta[n]) for n, p in model.named_parameters())


def test_evaluator_weights_uneven_batches_exactly(linear_problem):
    model, x, y, theta, *_ = linear_problem
    expected = numpy_cross_entropy(x.numpy(), y.numpy(), theta["weight"].numpy(), theta["bias"].numpy())
    for batch_size in (1, 7, 50, 1000):
        loss, accuracy = Evaluator(model, x, y, batch_size=batch_size).metrics(theta).tolist()
        assert loss == pytest.approx(expected[0], rel=1e-12)
        assert accuracy == pytest.approx(expected[1], abs=1e-12)


def test_non_finite_losses_are_stored_not_raised(linear_problem, tmp_path):
    model, x, y, theta, d1, _ = linear_problem
    model, x, theta = model.float(), x.float(), {n: v.float() for n, v in theta.items()}
    huge = {n: v.float().clamp(-2, 2) * 1.5e38 for n, v in d1.items()}  # finite, but logits overflow at |lambda| = 1
    result = run_scan(LineScan(points=5), theta, [huge], {"train": Evaluator(model, x, y)}, tmp_path / "c.npz", progress=False)
    losses = result.values["train_loss"]
    assert np.isfinite(losses[2])
    assert not np.isfinite(losses[[0, 4]]).any()
    assert not np.isfinite(ScanResult.load(tmp_path / "c.npz").values["train_loss"][[0, 4]]).any()


class CountingEvaluator(Evaluator):
    """Counts evaluated points and can crash after a given number, like a killed job."""

    def __init__(self, *args, crash_after=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.evaluated, self.crash_after = 0, crash_after

    def _read_batches(self, *args):  # once per point of a scan
        if self.crash_after is not None and self.evaluated >= self.crash_after:
            raise KeyboardInterrupt("killed")
        self.evaluated += 1
        return super()._read_batches(*args)


def test_a_killed_scan_resumes_without_recomputing_and_ends_identical(linear_problem, tmp_path, monkeypatch):
    model, x, y, theta, d1, d2 = linear_problem
    scan = PlaneScan(x_points=6, y_points=5)  # 30 points
    clean = run_scan(scan, theta, [d1, d2], {"train": Evaluator(model, x, y)}, tmp_path / "clean.npz", progress=False)

    path = tmp_path / "resumed.npz"
    crashing = CountingEvaluator(model, x, y, crash_after=17)
    with pytest.raises(KeyboardInterrupt):  # saved after every point
        run_scan(scan, theta, [d1, d2], {"train": crashing}, path, progress=False, save_every_s=0)
    assert not path.exists() and (tmp_path / "resumed.partial.npz").exists()

    restarted = CountingEvaluator(model, x, y)
    resumed = run_scan(scan, theta, [d1, d2], {"train": restarted}, path, progress=False)
    assert restarted.evaluated == 30 - 17
    np.testing.assert_array_equal(resumed.values["train_loss"], clean.values["train_loss"])
    assert not (tmp_path / "resumed.partial.npz").exists()


def test_a_scan_saves_its_partial_file_by_time(linear_problem, tmp_path, monkeypatch):
    """Every block when the interval is 0 (except the last: the result follows), never within a short scan."""
    model, x, y, theta, d1, d2 = linear_problem
    for interval, expected in ((0.0, list(range(1, 30))), (60.0, [])):
        saves = []
        monkeypatch.setattr(scans_module, "save_arrays",
                            lambda path, arrays, meta, key: saves.append(arrays.get("done")) or save_arrays(path, arrays, meta, key))
        run_scan(PlaneScan(x_points=6, y_points=5), theta, [d1, d2], {"train": Evaluator(model, x, y)},
                 tmp_path / f"s{interval}.npz", progress=False, save_every_s=interval)
        assert saves == [*expected, None]  # then the result file


def test_a_partial_file_of_other_inputs_is_not_reused(linear_problem, tmp_path):
    model, x, y, theta, d1, d2 = linear_problem
    path = tmp_path / "scan.npz"
    with pytest.raises(KeyboardInterrupt):
        run_scan(LineScan(points=9), theta, [d1], {"train": CountingEvaluator(model, x, y, crash_after=4)}, path, progress=False)
    fresh = CountingEvaluator(model, x, y)
    run_scan(LineScan(points=9), theta, [d2], {"train": fresh}, path, progress=False)
    assert fresh.evaluated == 9


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: LineScan(span=(1.0, -1.0)), r"span must be \[low, high\] with low < high, got \[1.0, -1.0\]"),
        (lambda: LineScan(points=1), "needs at least 2 points, got 1"),
        (lambda: PlaneScan(y_points=0), "needs at least 2 points, got 0"),
    ],
)
def test_impossible_grids_are_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_scan_with_the_wrong_number_of_directions_is_rejected(linear_problem, tmp_path):
    model, x, y, theta, d1, _ = linear_problem
    with pytest.raises(ValueError, match="plane scan needs 2 direction"):
        run_scan(PlaneScan(), theta, [d1], {"train": Evaluator(model, x, y)}, tmp_path / "p.npz", progress=False)


def bn_problem():
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)).double()
    with torch.no_grad():  # running statistics far from any batch's, so the three policies differ
        model[1].running_mean.fill_(5.0)
        model[1].running_var.fill_(9.0)
        model[1].weight.uniform_(0.5, 1.5)
        model[1].bias.uniform_(-0.5, 0.5)
    x, y = torch.randn(40, 3, dtype=torch.float64), torch.randint(0, 2, (40,))
    bn_x = torch.randn(25, 3, dtype=torch.float64) + 1.0
    return model.eval(), x, y, bn_x


def manual_loss(model, x, y, mean, var):
    h = model[0](x)
    h = (h - mean) / torch.sqrt(var + model[1].eps) * model[1].weight + model[1].bias
    return F.cross_entropy(model[2](h), y).item()


@pytest.mark.parametrize("bn_mode", ["eval", "train", "recompute"])
def test_batchnorm_policies_match_their_definitions(bn_mode):
    model, x, y, bn_x = bn_problem()
    theta = parameters_of(model)
    evaluator = Evaluator(model, x, y, batch_size=1000, bn_mode=bn_mode, bn_x=bn_x)
    with torch.no_grad():
        if bn_mode == "eval":
            truth = manual_loss(model, x, y, model[1].running_mean, model[1].running_var)
        elif bn_mode == "train":  # statistics of the evaluated batch itself (biased variance)
            h = model[0](x)
            truth = manual_loss(model, x, y, h.mean(0), h.var(0, unbiased=False))
        else:  # statistics of bn_x, as BatchNorm's cumulative running estimate (unbiased variance)
            h = model[0](bn_x)
            truth = manual_loss(model, x, y, h.mean(0), h.var(0, unbiased=True))
    assert evaluator.loss(theta).item() == pytest.approx(truth, rel=1e-10)
    assert model[1].running_mean.eq(5.0).all()  # the scanned model's own statistics are untouched


def test_bn_policies_give_different_landscapes_and_unknown_policy_is_rejected():
    model, x, y, bn_x = bn_problem()
    theta = parameters_of(model)
    losses = {m: Evaluator(model, x, y, bn_mode=m, bn_x=bn_x).loss(theta).item() for m in ("eval", "train", "recompute")}
    assert len({round(v, 6) for v in losses.values()}) == 3
    with pytest.raises(ValueError, match="unknown BatchNorm mode 'frozen': expected one of eval, recompute, train"):
        Evaluator(model, x, y, bn_mode="frozen")


def test_ring_scan_coordinates_lie_on_circles(linear_problem, tmp_path):
    from losslandscape.landscape.scans import RingScan

    model, x, y, theta, d1, d2 = linear_problem
    scan = RingScan(radii=[0.5, 2.0], angles=8)
    coordinates = scan.coordinates().numpy()
    np.testing.assert_allclose(np.hypot(coordinates[:, 0], coordinates[:, 1]), [0.5] * 8 + [2.0] * 8)
    result = run_scan(scan, theta, [d1, d2], {"train": Evaluator(model, x, y)}, tmp_path / "r.npz", progress=False)
    assert result.values["train_loss"].shape == (2, 8)
    # phi = 90 degrees on the second circle: theta + 2 d2
    w = (theta["weight"] + 2.0 * d2["weight"]).numpy()
    b = (theta["bias"] + 2.0 * d2["bias"]).numpy()
    assert result.values["train_loss"][1, 2] == pytest.approx(numpy_cross_entropy(x.numpy(), y.numpy(), w, b)[0], rel=1e-10)


@pytest.mark.parametrize("points_per_batch", [1, 4])
@pytest.mark.parametrize("make_model", [
    lambda: SmallCNN((1, 8, 8), 10, batch_norm=True),
    lambda: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10)),
])
def test_first_layer_shortcut_gives_the_same_numbers(make_model, points_per_batch):
    from losslandscape.landscape.first_layer import first_layer

    torch.manual_seed(4)
    model = make_model().eval()
    x, y = torch.randn(30, 1, 8, 8), torch.randint(0, 10, (30,))
    assert first_layer(model, x[:2]) in ("conv.0", "1")
    theta = parameters_of(model)
    d = [{n: torch.randn_like(t) * 0.2 for n, t in theta.items()} for _ in range(2)]
    coordinates = PlaneScan(x_points=3, y_points=4).coordinates()
    plain = Evaluator(model, x, y, batch_size=8)
    fast = Evaluator(model, x, y, batch_size=8, first_layer_mb=64)
    with torch.inference_mode():
        expected = plain.metrics_at(theta, d, coordinates, points_per_batch)
        got = fast.metrics_at(theta, d, coordinates, points_per_batch)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    assert isinstance(dict(model.named_modules())[first_layer(model, x[:2])], (torch.nn.Conv2d, torch.nn.Linear))


def test_first_layer_shortcut_is_skipped_when_a_parametrized_module_comes_first():
    from losslandscape.landscape.first_layer import first_layer

    model = torch.nn.Sequential(torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)).eval()
    assert first_layer(model, torch.randn(2, 4)) is None


def test_the_allocator_setting_applies_exactly_where_glibc_is():
    from losslandscape.allocator import keep_freed_memory

    assert keep_freed_memory() is (sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc")


def test_the_automatic_batch_keeps_a_cpu_pass_within_the_caches_and_changes_no_number():
    """``evaluation.batch_size: auto`` on the CPU: the SmallCNN's largest activation on a 3 x 32 x 32
    image is its first conv's output, 16 x 32 x 32 float32 = 64 KiB, so 16 MiB hold 256 examples;
    the 8 x 8 digits' 4 KiB give the 4096 cap, and batch statistics keep the 4096 of every device."""
    from losslandscape.landscape.batches import CPU_ACTIVATION_BUDGET, FULL_BATCH, auto_batch_size, tensor_bytes

    cifar_cnn, digits_cnn = SmallCNN((3, 32, 32), 10).eval(), SmallCNN((1, 8, 8), 10).eval()
    assert CPU_ACTIVATION_BUDGET // (16 * 32 * 32 * 4) == 256 == auto_batch_size(cifar_cnn, torch.randn(2, 3, 32, 32), False)
    assert auto_batch_size(digits_cnn, torch.randn(2, 1, 8, 8), False) == FULL_BATCH == 4096
    assert auto_batch_size(cifar_cnn, torch.randn(2, 3, 32, 32), batch_statistics=True) == FULL_BATCH
    # a module may return a record of tensors (Hugging Face): its largest tensor counts
    assert tensor_bytes({"logits": torch.zeros(2, 5), "hidden": (torch.zeros(2, 7, 3), None)}) == 2 * 7 * 3 * 4

    torch.manual_seed(0)
    x, y = torch.randn(700, 3, 32, 32), torch.randint(0, 10, (700,))
    auto = Evaluator(cifar_cnn, x, y)  # the default
    assert auto.batch_size == 256 and [len(yb) for _, yb in auto.data] == [256, 256, 188]
    theta = parameters_of(cifar_cnn)
    direction = {k: torch.randn_like(v) for k, v in theta.items()}
    coordinates = torch.tensor([[0.0], [0.3]])
    one_batch = Evaluator(cifar_cnn, x, y, batch_size=None).metrics_at(theta, [direction], coordinates)
    torch.testing.assert_close(auto.metrics_at(theta, [direction], coordinates), one_batch, rtol=1e-5, atol=1e-6)
    assert Evaluator(cifar_cnn, x, y, batch_size=100).batch_size == 100  # a number is taken as it is
