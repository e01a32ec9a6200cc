"""Certified scans against independent truth: standard errors from numpy, coverage of a closed-form
population loss over seeds, the exact path bit for bit, refined planes against the full grid."""

import math

import numpy as np
import pytest
import torch
from scipy.stats import binom

from losslandscape.landscape.batches import Residency
from losslandscape.landscape.certified import Precision, interval
from losslandscape.landscape.evaluator import Evaluator, parameters_of
from losslandscape.landscape.refine import Refine, contour_agreement, contour_levels, interpolate, refine_plane
from losslandscape.landscape.scans import LineScan, PlaneScan, ScanResult, run_scan
from losslandscape.landscape.shapes import shape_within_error
from losslandscape.losses import MeanSquaredError
from losslandscape.measures.interpolation import barrier_within_error

DIM, NOISE = 5, 0.5


def regression_split(examples: int, seed: int):
    """``y = x . w_true + noise`` with ``x ~ N(0, I)``: at weights ``w`` the population MSE is
    ``||w - w_true||^2 + NOISE^2`` in closed form."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(examples, DIM, generator=generator, dtype=torch.float64)
    w_true = torch.linspace(-1.0, 1.0, DIM, dtype=torch.float64)
    y = x @ w_true + NOISE * torch.randn(examples, generator=generator, dtype=torch.float64)
    return x, y[:, None], w_true


def linear_regressor() -> torch.nn.Module:
    model = torch.nn.Linear(DIM, 1, bias=False).double()
    with torch.no_grad():
        model.weight.zero_()
    return model


def population_mse(w: torch.Tensor, w_true: torch.Tensor) -> float:
    return float((w - w_true).square().sum()) + NOISE**2


def at_least_nominal(covered: int, trials: int, confidence: float) -> int:
    """The fewest covered trials a correct ``confidence`` interval gives with probability 0.999."""
    return int(binom.ppf(0.001, trials, confidence))


def test_the_standard_error_is_the_numpy_one_over_the_examples(tmp_path):
    x, y, _ = regression_split(1_000, seed=1)
    model = linear_regressor()
    theta = parameters_of(model)
    direction = {"weight": torch.ones(1, DIM, dtype=torch.float64)}
    result = run_scan(LineScan(span=(-1.0, 1.0), points=5), theta, [direction],
                      {"train": Evaluator(model, x, y, batch_size=64, loss=MeanSquaredError())}, tmp_path / "l.npz", progress=False)
    for lam, se, r2_se in zip(result.axes["lambda"], result.errors["train_loss"], result.errors["train_r2"]):
        residual = (x @ (lam * torch.ones(DIM, dtype=torch.float64)) - y[:, 0]).numpy()
        per_example = residual**2
        assert se == pytest.approx(per_example.std(ddof=1) / math.sqrt(len(per_example)), rel=1e-9)
        r2 = 1 - per_example / y.numpy().var()
        assert r2_se == pytest.approx(r2.std(ddof=1) / math.sqrt(len(r2)), rel=1e-9)
    assert (result.examples["train"] == 1_000).all()
    reloaded = ScanResult.load(tmp_path / "l.npz")
    np.testing.assert_array_equal(reloaded.errors["train_loss"], result.errors["train_loss"])
    np.testing.assert_array_equal(reloaded.examples["train"], result.examples["train"])


def coverage_trial(seed: int, precision: Precision | None, lam: float = 0.7):
    x, y, w_true = regression_split(20_000, seed)
    model = linear_regressor()
    direction = {"weight": torch.ones(1, DIM, dtype=torch.float64)}
    evaluator = Evaluator(model, x, y, batch_size=100, loss=MeanSquaredError(metric=None))
    loss, _, se, _, units = evaluator.certified_at(parameters_of(model), [direction], torch.tensor([[lam]]), 1, precision)[0].tolist()
    low, high = interval(loss, se, 0.95)
    return low <= population_mse(lam * torch.ones(DIM, dtype=torch.float64), w_true) <= high, units, loss, se


def test_early_stopped_intervals_cover_the_population_loss_at_the_nominal_rate():
    trials = 200
    outcomes = [coverage_trial(seed, Precision(relative=0.05, seed=seed)) for seed in range(trials)]
    covered = sum(o[0] for o in outcomes)
    units = np.array([o[1] for o in outcomes])
    assert covered >= at_least_nominal(covered, trials, 0.95), f"{covered}/{trials} intervals cover the truth"
    assert covered <= trials  # (for the report: the rate is covered / trials)
    assert units.max() < 20_000 / 3, "early stopping read most of the split"
    assert all(1.96 * o[3] <= 0.05 * o[2] + 1e-12 for o in outcomes), "a point stopped before its precision"
    assert (units % 100 == 0).all()


def test_full_pass_intervals_cover_the_population_loss_at_the_nominal_rate():
    trials = 100
    covered = sum(coverage_trial(1000 + seed, None)[0] for seed in range(trials))
    assert covered >= at_least_nominal(covered, trials, 0.95), f"{covered}/{trials} intervals cover the truth"


@pytest.mark.parametrize("precision", [None, {"relative": 0.0, "absolute": 0.0}])
@pytest.mark.parametrize("workers", [1, 2])
def test_an_exact_request_gives_todays_numbers_bit_for_bit(tmp_path, precision, workers):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3))  # class-major head
    x, y = torch.randn(300, 6), torch.randint(0, 3, (300,))
    theta = parameters_of(model)
    directions = [{k: torch.randn_like(v) for k, v in theta.items()} for _ in range(2)]
    scan = PlaneScan(x_points=4, y_points=3, precision=precision)
    assert scan.precision is None
    evaluator = Evaluator(model, x, y, batch_size=64, first_layer_mb=16, workers=workers)
    result = run_scan(scan, theta, directions, {"train": evaluator}, tmp_path / "p.npz", progress=False)
    today = Evaluator(model, x, y, batch_size=64, first_layer_mb=16, workers=workers).metrics_at(theta, directions, scan.coordinates())
    for m, key in enumerate(["train_loss", "train_accuracy"]):
        np.testing.assert_array_equal(result.values[key].ravel(), today[:, m].double().numpy())
    assert "precision" not in scan.describe()  # an exact scan keeps its fingerprint


def test_precision_and_refine_enter_the_scan_fingerprint():
    plain, stopped = PlaneScan().describe(), PlaneScan(precision={"relative": 0.01}).describe()
    refined = PlaneScan(refine={"stride": 4}).describe()
    assert stopped["precision"]["relative"] == 0.01 and refined["refine"]["stride"] == 4
    assert len({str(plain), str(stopped), str(refined)}) == 3


def test_every_point_reads_the_same_examples_in_the_same_order():
    """Common random numbers: the errors of neighbouring points are nearly the same, so their
    difference is far more precise than either value."""
    x, y, w_true = regression_split(20_000, seed=7)
    model = linear_regressor()
    direction = {"weight": torch.ones(1, DIM, dtype=torch.float64)}
    evaluator = Evaluator(model, x, y, batch_size=100, loss=MeanSquaredError(metric=None))
    lams = torch.tensor([[0.70], [0.72]])
    rows = evaluator.certified_at(parameters_of(model), [direction], lams, 1, Precision(relative=0.05, seed=3))
    truth = [population_mse(float(l) * torch.ones(DIM, dtype=torch.float64), w_true) for l in lams]
    errors = rows[:, 0].numpy() - np.array(truth)
    difference_error = abs((rows[1, 0] - rows[0, 0]).item() - (truth[1] - truth[0]))
    assert difference_error < 0.1 * abs(errors).max()
    again = evaluator.certified_at(parameters_of(model), [direction], lams, 1, Precision(relative=0.05, seed=3))
    assert torch.equal(rows, again)


def bumpy_surface(n: int) -> np.ndarray:
    """A bowl with a narrow bump off-centre: curvature concentrated in a small region."""
    y, x = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    return x**2 + 0.5 * y**2 + 0.6 * np.exp(-((x - 0.3) ** 2 + (y + 0.2) ** 2) / 0.03)


def test_a_refined_plane_places_every_contour_within_one_step_at_a_fraction_of_the_points():
    n = 41
    truth = bumpy_surface(n)
    rows, known, cells = refine_plane((n, n), lambda index: truth[index[:, 0], index[:, 1]][:, None], Refine(stride=8, budget=0.5))
    filled = interpolate(rows, known, cells)[..., 0]
    np.testing.assert_array_equal(filled[known], truth[known])
    agreement = contour_agreement(truth, filled, contour_levels(truth, 20))
    assert agreement >= 0.99, f"contours agree at {agreement:.3f}"
    assert known.mean() <= 0.35, f"evaluated {known.mean():.2f} of the grid"
    # the planner refines where the bump curves the surface, not over the plain bowl
    y, x = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    near_bump = (x - 0.3) ** 2 + (y + 0.2) ** 2 < 0.1
    assert known[near_bump].mean() > 2 * known[~near_bump].mean()


def test_the_refine_budget_is_a_hard_limit():
    n = 41
    truth = bumpy_surface(n) + np.sin(9 * np.arange(n))[None, :]  # rough everywhere: wants every point
    _, known, _ = refine_plane((n, n), lambda index: truth[index[:, 0], index[:, 1]][:, None], Refine(stride=8, budget=0.2))
    assert known.sum() <= 0.2 * n * n


def test_a_refined_scan_stores_and_marks_its_evaluated_points(tmp_path):
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, y = torch.randn(200, 4), torch.randint(0, 3, (200,))
    theta = parameters_of(model)
    directions = [{k: 3 * torch.randn_like(v) for k, v in theta.items()} for _ in range(2)]
    full = run_scan(PlaneScan(x_points=21, y_points=21), theta, directions, {"train": Evaluator(model, x, y)},
                    tmp_path / "full.npz", progress=False)
    refined = run_scan(PlaneScan(x_points=21, y_points=21, refine={"stride": 4, "budget": 0.6}), theta, directions,
                       {"train": Evaluator(model, x, y)}, tmp_path / "refined.npz", progress=False)
    mask = ScanResult.load(tmp_path / "refined.npz").evaluated["grid"].astype(bool)
    assert mask.shape == (21, 21) and mask.mean() <= 0.6
    np.testing.assert_array_equal(refined.values["train_loss"][mask], full.values["train_loss"][mask])
    assert (refined.examples["train"][~mask] == 0).all() and (refined.examples["train"][mask] == 200).all()
    z = full.values["train_loss"]
    agreement = contour_agreement(z, refined.values["train_loss"], contour_levels(z, 20))
    assert agreement >= 0.95, f"contours agree at {agreement:.3f} with {mask.mean():.2f} of the points"


def test_a_bad_refine_stride_is_one_clear_error():
    with pytest.raises(ValueError, match="must divide x_points - 1"):
        PlaneScan(x_points=20, y_points=21, refine={"stride": 4})


def test_a_shape_decided_within_the_error_bars_is_marked_uncertain():
    lam = np.linspace(-1, 1, 21)
    curve = lam**2
    curve[17] = 0.30  # a side basin at 0.7 of prominence 0.06, against a threshold of 0.05 (5 % of the range 1)
    sure = shape_within_error(lam, curve, np.full_like(lam, 1e-4))
    assert sure.label == "w-basin" and not sure.uncertain
    unsure = shape_within_error(lam, curve, np.full_like(lam, 0.02))
    assert unsure.label == "w-basin" and unsure.uncertain and "within the error bars" in unsure.reason
    assert not shape_within_error(lam, lam**2, np.full_like(lam, 0.02)).uncertain  # a clear v-basin stays sure


def test_a_barrier_below_its_error_bars_is_reported_as_such():
    t = np.linspace(0, 1, 11)
    bump = 0.01 * np.sin(np.pi * t)
    small = barrier_within_error(t, 1.0 + bump, np.full_like(t, 0.02))
    clear = barrier_within_error(t, 1.0 + bump, np.full_like(t, 0.0005))
    assert small["within_error"] and not clear["within_error"]
    assert clear["barrier"] == pytest.approx(0.01)
    assert clear["barrier_se"] == pytest.approx(0.0005 * math.sqrt(1 + 0.25 + 0.25))


def test_bad_precision_and_refine_settings_get_one_clear_line_each(tmp_path):
    from conftest import TINY, compose_config
    from losslandscape.errors import ConfigError
    from losslandscape.validation import validate_config

    good = compose_config(tmp_path, [*TINY, "scan.line.precision={relative:0.01,confidence:0.95}",
                                     "scan.plane.refine={stride:4,budget:0.5}", "scan.plane.x_points=9", "scan.plane.y_points=9"])
    validate_config(good)
    bad = compose_config(tmp_path, [*TINY, "scan.line.precision={relative:-1}", "scan.plane.precision={confidence:1.5,z:2}",
                                    "scan.plane.refine={stride:3}", "scan.plane.x_points=9", "scan.plane.y_points=10"])
    with pytest.raises(ConfigError) as error:
        validate_config(bad)
    problems = error.value.problems
    assert "scan.line.precision={relative:-1}: relative=-1: expected a number >= 0" in problems
    assert any(p.startswith("scan.plane.precision=") and "confidence=1.5: expected a number > 0 and < 1" in p for p in problems)
    assert "scan.plane.refine={stride:3}: stride=3: expected a power of 2 >= 2" in problems
    good_stride = compose_config(tmp_path, [*TINY, "scan.plane.refine={stride:4}", "scan.plane.x_points=9", "scan.plane.y_points=10"])
    with pytest.raises(ConfigError) as error:
        validate_config(good_stride)
    assert error.value.problems == ["scan.plane.refine.stride=4: must divide x_points - 1 and y_points - 1 (now 9 x 10); "
                                    "e.g. 21 points with stride 4"]


def test_the_python_api_streams_and_stops_points_early_like_the_cli():
    """``ll.scan(resident=False)`` gives the resident numbers bit for bit; ``precision`` reads fewer
    examples and stays within its interval of the exact value."""
    import losslandscape as ll

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
    x, y = torch.randn(3000, 4), torch.randint(0, 3, (3000,))
    exact = ll.scan(model, (x, y), grid=7, batch_size=256)
    streamed = ll.scan(model, (x, y), grid=7, batch_size=256, resident=False)
    np.testing.assert_array_equal(streamed.values["train_loss"], exact.values["train_loss"])
    early = ll.scan(model, (x, y), grid=7, batch_size=256, precision={"relative": 0.05})
    assert (early.examples["train"] < 3000).all()
    half_width = 1.96 * early.errors["train_loss"]
    assert (np.abs(early.values["train_loss"] - exact.values["train_loss"]) < 3 * half_width).all()


@pytest.mark.parametrize("workers, residency", [(1, None), (2, None), (1, Residency(False, loader_workers=1))],
                         ids=["resident", "two-workers", "streamed"])
def test_early_stopped_points_under_vmap_stop_where_each_stops_alone(tmp_path, workers, residency):
    """A vmapped group of points reads together, but each point leaves it at the batch where it stops
    when evaluated on its own: the same examples read, the same numbers (up to vmap's rounding)."""
    torch.manual_seed(0)
    # 40 inputs: the first-layer shortcut applies (fan-in >= 16 per direction), under vmap too
    model = torch.nn.Sequential(torch.nn.Linear(40, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    x, y = torch.randn(6000, 40, dtype=torch.float64), torch.randint(0, 3, (6000,))
    theta = parameters_of(model)
    directions = [{k: torch.randn_like(v) for k, v in theta.items()} for _ in range(2)]
    scan = PlaneScan(x_span=(-1.5, 1.5), y_span=(-1.5, 1.5), x_points=7, y_points=6, precision={"relative": 0.02})
    results = {}
    for points_per_batch in (1, 8):
        evaluator = Evaluator(model, x, y, batch_size=100, first_layer_mb=16, workers=workers, residency=residency)
        results[points_per_batch] = run_scan(scan, theta, directions, {"train": evaluator},
                                             tmp_path / f"ppb{points_per_batch}.npz", points_per_batch=points_per_batch,
                                             progress=False)
    alone, together = results[1], results[8]
    read = alone.examples["train"]
    assert read.min() < 6000 and len(np.unique(read)) >= 3, "the test needs points that stop at different batches"
    np.testing.assert_array_equal(together.examples["train"], read)
    for key in ("train_loss", "train_accuracy"):
        np.testing.assert_allclose(together.values[key], alone.values[key], rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(together.errors[key], alone.errors[key], rtol=1e-9, atol=1e-12)
    exact = Evaluator(model, x, y, batch_size=100).metrics_at(theta, directions, scan.coordinates())[:, 0].numpy()
    assert (np.abs(together.values["train_loss"].ravel() - exact) <= 3 * 1.96 * together.errors["train_loss"].ravel()).all()
