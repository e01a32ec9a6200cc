"""The Hessian toolbox against exact dense Hessians of tiny float64 networks.

References: ``torch.func.hessian`` of the flattened ``Evaluator.loss`` (eval-mode models), dense
``torch.linalg.eigvalsh``, and central finite differences of gradients.

Train-mode BatchNorm (``bn_mode="train"``), torch 2.13: forward-over-reverse HVPs (one
``jvp(grad(f))``) are correct there and agree with double backward and with finite differences,
but ``torch.func.hessian`` (= ``jacfwd(jacrev(f))``, nested vmaps) returns a wrong, non-symmetric
matrix (errors ~5e-2 in the block of BN-weight rows x preceding-conv columns), as does
``jacrev(jacrev(f))``; ``jacfwd(grad(f))`` and ``torch.autograd.functional.hessian`` are right.
So the train-mode reference here is ``torch.autograd.functional.hessian``, and the operator
accepts forward mode for train-mode BN.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from losslandscape.hessian import (
    DenseOperator,
    HessianOperator,
    ParameterLayout,
    density_grid,
    directional_curvature,
    fitted_curvature,
    hessian_eigenpairs,
    hessian_quadratic_form,
    hutchinson_trace,
    hutchpp_trace,
    lanczos,
    names_with_prefix,
    power_iteration_eigenpairs,
    slq,
    slq_moments,
    spectral_density,
    weight_names,
)
from losslandscape.landscape.evaluator import Evaluator, parameters_of

DT = torch.float64


@pytest.fixture(autouse=True, scope="module")
def single_thread():
    """These networks are tiny: thread hand-offs, not arithmetic, dominate (10-100x on a busy 2-core box)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ---------------------------------------------------------------- fixtures and exact references


def tiny_mlp_evaluator(bn_mode: str = "eval") -> Evaluator:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 12), nn.Tanh(), nn.Linear(12, 3)).to(DT)
    x, y = torch.randn(64, 5, dtype=DT), torch.randint(0, 3, (64,))
    return Evaluator(model, x, y, batch_size=24, bn_mode=bn_mode)  # 24 + 24 + 16: unequal batches


def tiny_bn_cnn(seed: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    ).to(DT)
    bn = model[1]
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        bn.running_mean.copy_(0.3 * torch.randn(4, dtype=DT))
        bn.running_var.copy_(0.5 + torch.rand(4, dtype=DT))
        bn.weight.copy_(1 + 0.2 * torch.randn(4, dtype=DT))
        bn.bias.copy_(0.1 * torch.randn(4, dtype=DT))
    return model


def tiny_cnn_evaluator(bn_mode: str = "eval") -> Evaluator:
    model = tiny_bn_cnn()
    x, y = torch.randn(40, 1, 6, 6, dtype=DT), torch.randint(0, 3, (40,))
    bn_x = torch.randn(32, 1, 6, 6, dtype=DT) if bn_mode == "recompute" else None
    return Evaluator(model, x, y, batch_size=16, bn_mode=bn_mode, bn_x=bn_x)


EVALUATORS = {"mlp": tiny_mlp_evaluator, "bn_cnn": tiny_cnn_evaluator}
_CACHE: dict = {}


def flat_loss(evaluator: Evaluator, theta, names=None):
    """The loss as a function of the flat vector over ``names`` (others fixed at theta)."""
    layout = ParameterLayout.of(theta, names)
    return lambda vector: evaluator.loss({**theta, **layout.unflatten(vector)}), layout.flatten(theta)


def exact_hessian(evaluator: Evaluator, theta, names=None) -> torch.Tensor:
    f, flat = flat_loss(evaluator, theta, names)
    if evaluator.bn_mode == "train":  # torch.func.hessian is wrong there (module docstring)
        return torch.autograd.functional.hessian(f, flat)
    return torch.func.hessian(f)(flat)


def setup(kind: str):
    """(evaluator, theta, exact Hessian, its eigenvalues), cached per model kind."""
    if kind not in _CACHE:
        evaluator = EVALUATORS[kind]()
        theta = parameters_of(evaluator.model)
        hessian = exact_hessian(evaluator, theta)
        _CACHE[kind] = evaluator, theta, hessian, torch.linalg.eigvalsh(hessian)
    return _CACHE[kind]


def random_vector(dim: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(dim, generator=torch.Generator().manual_seed(seed), dtype=DT)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def decaying_spectrum_matrix(dim: int = 120, seed: int = 0) -> torch.Tensor:
    """A random symmetric matrix with eigenvalues 1/i^2: a few dominant directions, a long tail."""
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=torch.Generator().manual_seed(seed), dtype=DT))
    eigenvalues = 1.0 / torch.arange(1, dim + 1, dtype=DT) ** 2
    return (q * eigenvalues) @ q.T


# ---------------------------------------------------------------- Hessian-vector products


def test_layout_round_trip_and_subsets():
    _, theta, _, _ = setup("bn_cnn")
    layout = ParameterLayout.of(theta)
    flat = layout.flatten(theta)
    assert flat.numel() == 243 == layout.dim
    assert all(torch.equal(a, theta[n]) for n, a in layout.unflatten(flat).items())
    assert weight_names(theta) == ["0.weight", "4.weight"]
    assert names_with_prefix(theta, "1.") == ["1.weight", "1.bias"]


@pytest.mark.parametrize("kind", ["mlp", "bn_cnn"])
def test_hvp_modes_match_exact_hessian(kind):
    evaluator, theta, hessian, _ = setup(kind)
    v = random_vector(hessian.shape[0])
    expected = hessian @ v
    products = {
        "reverse": HessianOperator(evaluator.loss, theta, mode="reverse").matvec(v),
        "forward": HessianOperator(evaluator.loss, theta, mode="forward").matvec(v),
        "reverse per batch": HessianOperator.from_evaluator(evaluator, theta, mode="reverse").matvec(v),
        "forward per batch": HessianOperator.from_evaluator(evaluator, theta, mode="forward").matvec(v),
        "reverse two batches per term": HessianOperator.from_evaluator(evaluator, theta, batches_per_term=2).matvec(v),
    }
    for name, product in products.items():
        assert product.dtype == DT
        assert (product - expected).abs().max() < 1e-10 * expected.abs().max(), name


def test_per_batch_terms_sum_to_the_whole_split_loss():
    evaluator, theta, _, _ = setup("mlp")
    operator = HessianOperator.from_evaluator(evaluator, theta)
    assert len(operator.terms) == 3  # 64 samples in batches of 24
    total = sum(term(theta) for term in operator.terms)
    assert abs(float(total - evaluator.loss(theta))) < 1e-14


@pytest.mark.parametrize("kind", ["mlp", "bn_cnn"])
def test_hvp_matches_central_finite_differences_of_gradients(kind):
    evaluator, theta, _, _ = setup(kind)
    f, flat = flat_loss(evaluator, theta)
    v = random_vector(flat.numel(), seed=3)
    eps = 1e-5
    gradient = torch.func.grad(f)
    finite_difference = (gradient(flat + eps * v) - gradient(flat - eps * v)) / (2 * eps)
    product = HessianOperator.from_evaluator(evaluator, theta).matvec(v)
    assert relative_error(product, finite_difference) < 1e-6  # central differences: O(eps^2) ~ 1e-8


def test_forward_mode_through_train_mode_batch_norm_is_correct():
    evaluator = tiny_cnn_evaluator(bn_mode="train")
    assert evaluator.bn_mode == "train"
    theta = parameters_of(evaluator.model)
    hessian = exact_hessian(evaluator, theta)
    assert (hessian - hessian.T).abs().max() < 1e-14  # a true Hessian: symmetric
    v = random_vector(hessian.shape[0], seed=5)
    reverse = HessianOperator.from_evaluator(evaluator, theta, mode="reverse").matvec(v)
    forward = HessianOperator.from_evaluator(evaluator, theta, mode="forward").matvec(v)
    forward_whole = HessianOperator(evaluator.loss, theta, mode="forward").matvec(v)
    expected = hessian @ v
    for product in (reverse, forward, forward_whole):
        assert (product - expected).abs().max() < 1e-10 * expected.abs().max()
    f, flat = flat_loss(evaluator, theta)
    eps = 1e-5
    finite_difference = (torch.func.grad(f)(flat + eps * v) - torch.func.grad(f)(flat - eps * v)) / (2 * eps)
    assert relative_error(forward, finite_difference) < 1e-6
    # batch statistics make the Hessian differ from the eval-mode one: the check is not vacuous
    assert relative_error(expected, setup("bn_cnn")[2] @ v) > 0.05


def test_recompute_mode_uses_statistics_fixed_at_theta():
    evaluator = tiny_cnn_evaluator(bn_mode="recompute")
    theta = parameters_of(evaluator.model)
    v = random_vector(243, seed=6)
    direct = HessianOperator(evaluator.loss, theta, mode="reverse").matvec(v)
    batched = HessianOperator.from_evaluator(evaluator, theta, mode="forward").matvec(v)
    assert (batched - direct).abs().max() < 1e-10 * direct.abs().max()
    assert relative_error(direct, setup("bn_cnn")[2] @ v) > 1e-3  # other statistics than theta's running ones


def test_restricted_operator_is_the_principal_submatrix():
    evaluator, theta, hessian, _ = setup("bn_cnn")
    layout = ParameterLayout.of(theta)
    for names, mode in ((weight_names(theta), "reverse"), (names_with_prefix(theta, "1."), "forward")):
        index = torch.cat([torch.arange(*_span(layout, n)) for n in names])
        operator = HessianOperator.from_evaluator(evaluator, theta, names=names, mode=mode)
        dense = torch.stack([operator.matvec(e) for e in torch.eye(operator.dim, dtype=DT)], dim=1)
        assert operator.dim == len(index) and operator.num_products == len(index)
        assert (dense - hessian[index][:, index]).abs().max() < 1e-10 * hessian.abs().max()


def _span(layout: ParameterLayout, name: str) -> tuple[int, int]:
    """Where ``name`` sits in the full flat vector."""
    position = layout.names.index(name)
    start = sum(layout.sizes[:position])
    return start, start + layout.sizes[position]


def test_operator_rejects_bad_input_with_clear_errors():
    evaluator, theta, _, _ = setup("mlp")
    with pytest.raises(ValueError, match="unknown HVP mode 'sideways'"):
        HessianOperator(evaluator.loss, theta, mode="sideways")
    with pytest.raises(ValueError, match="unknown parameter names"):
        HessianOperator(evaluator.loss, theta, names=["conv.weight"])
    with pytest.raises(ValueError, match="non-empty"):
        HessianOperator(evaluator.loss, theta, names=[])
    with pytest.raises(ValueError, match="batches_per_term"):
        HessianOperator.from_evaluator(evaluator, theta, batches_per_term=0)


def test_operator_dtype_follows_float32_theta():
    evaluator, theta, hessian, _ = setup("mlp")
    model32 = tiny_mlp_evaluator().model.float()
    evaluator32 = Evaluator(model32, evaluator.x.float(), evaluator.y, batch_size=24)
    operator = HessianOperator.from_evaluator(evaluator32, parameters_of(model32), mode="forward")
    v = random_vector(operator.dim)
    product = operator.matvec(v)
    assert operator.dtype == product.dtype == torch.float32
    assert relative_error(product.double(), hessian @ v) < 1e-5
    assert operator.to_full_dict(product)["0.weight"].dtype == torch.float32


# ---------------------------------------------------------------- Lanczos and power iteration


def test_lanczos_basis_is_orthonormal_and_projects_to_the_tridiagonal():
    evaluator, theta, hessian, _ = setup("mlp")
    operator = HessianOperator.from_evaluator(evaluator, theta)
    alphas, betas, q = lanczos(operator, 40, seed=0)
    assert q.shape == (40, 111) and q.dtype == torch.float64 and operator.num_products == 40
    assert (q @ q.T - torch.eye(40, dtype=DT)).abs().max() < 1e-13
    off_diagonal = torch.tensor(betas[:-1])
    tridiagonal = torch.diag(torch.tensor(alphas)) + torch.diag(off_diagonal, 1) + torch.diag(off_diagonal, -1)
    assert (q @ hessian @ q.T - tridiagonal).abs().max() < 1e-12 * hessian.abs().max()
    assert betas[-1] > 0


def test_lanczos_without_reorthogonalization_loses_orthogonality():
    operator = DenseOperator(decaying_spectrum_matrix(120))
    _, _, q = lanczos(operator, 60, seed=0, reorthogonalize=False)
    assert (q @ q.T - torch.eye(60, dtype=DT)).abs().max() > 1e-3  # why full reorthogonalization is the default


def test_lanczos_restarts_after_breakdown_and_finds_multiple_eigenvalues():
    q, _ = torch.linalg.qr(random_vector(30 * 30, seed=2).view(30, 30))
    eigenvalues = torch.tensor([5.0] * 4 + [2.0] * 6 + [-1.0] * 20, dtype=DT)  # three distinct values
    operator = DenseOperator((q * eigenvalues) @ q.T)
    values, vectors, record = hessian_eigenpairs(operator, k=4, which="top", seed=0, max_steps=30)
    assert record["restarts"] >= 3  # each Krylov space holds one vector per eigenspace
    assert torch.allclose(values, torch.full((4,), 5.0, dtype=DT), rtol=1e-10)
    assert max(record["residual_norms"]) < 1e-10
    values, _, record = hessian_eigenpairs(operator, k=3, which="bottom", seed=1, progress=True)
    assert record["restarts"] >= 2 and torch.allclose(values, torch.full((3,), -1.0, dtype=DT), rtol=1e-10)
    with pytest.raises(ValueError, match="unknown eigenpair selection 'middle'"):
        hessian_eigenpairs(operator, k=1, which="middle")
    with pytest.raises(ValueError, match="k=31"):
        hessian_eigenpairs(operator, k=31)


@pytest.mark.parametrize("kind", ["mlp", "bn_cnn"])
@pytest.mark.parametrize("which", ["top", "bottom"])
def test_lanczos_eigenpairs_match_eigvalsh(kind, which):
    evaluator, theta, _, exact = setup(kind)
    operator = HessianOperator.from_evaluator(evaluator, theta, mode="forward")
    k = 5
    values, vectors, record = hessian_eigenpairs(operator, k=k, which=which, tol=1e-8, seed=1)
    expected = exact.flip(0)[:k] if which == "top" else exact[:k]
    assert torch.all((values - expected).abs() <= 1e-6 * expected.abs())
    assert all(record["converged"])
    assert all(r <= 1e-6 * abs(v) for r, v in zip(record["residual_norms"], values.tolist()))
    assert record["num_products"] == record["lanczos_steps"] < operator.dim  # fewer products than a dense Hessian
    assert record["check_products"] == k and record["wall_time"] > 0
    assert vectors.shape == (k, operator.dim) and (vectors @ vectors.T - torch.eye(k, dtype=DT)).abs().max() < 1e-8
    if which == "bottom":
        assert values[0] < 0  # the test networks sit away from a minimum: true negative curvature


def test_lanczos_on_parameter_subsets_matches_principal_submatrix():
    evaluator, theta, hessian, _ = setup("bn_cnn")
    names = weight_names(theta)
    index = torch.cat([torch.arange(0, 36), torch.arange(48, 240)])  # 0.weight, 4.weight
    assert ParameterLayout.of(theta, names).dim == len(index)
    exact = torch.linalg.eigvalsh(hessian[index][:, index])
    operator = HessianOperator.from_evaluator(evaluator, theta, names=names)
    for which, expected in (("top", exact.flip(0)[:3]), ("bottom", exact[:3])):
        values, vectors, _ = hessian_eigenpairs(operator, k=3, which=which, tol=1e-8, as_dicts=True)
        assert torch.all((values - expected).abs() <= 1e-6 * expected.abs())
        assert set(vectors[0]) == set(names)


def test_power_iteration_finds_the_top_eigenvalue_with_more_products():
    evaluator, theta, _, exact = setup("mlp")
    assert exact[-1] > abs(exact[0])  # power iteration targets the largest magnitude
    operator = HessianOperator.from_evaluator(evaluator, theta)
    values, vectors, record = power_iteration_eigenpairs(operator, k=2, tol=1e-8, max_iter=500, seed=0, progress=True)
    assert abs(values[0] - exact[-1]) <= 1e-4 * exact[-1]
    assert abs(values[1] - exact[-2]) <= 1e-3 * exact[-2]
    assert all(record["converged"]) and record["residual_norms"][0] < 1e-2 * float(exact[-1])
    assert abs(float(vectors[0] @ vectors[1])) < 1e-10  # deflation keeps the pairs orthogonal
    _, _, lanczos_record = hessian_eigenpairs(operator, k=2, tol=1e-8, seed=0)
    assert lanczos_record["num_products"] < record["num_products"]


# ---------------------------------------------------------------- trace


def test_hutchinson_standard_error_covers_the_true_trace():
    _, _, hessian, _ = setup("mlp")
    operator = DenseOperator(hessian)
    true_trace = float(hessian.trace())
    results = [hutchinson_trace(operator, num_samples=30, seed=seed) for seed in range(20)]
    covered = sum(abs(r["estimate"] - true_trace) <= 2 * r["standard_error"] for r in results)
    assert covered >= 16  # ~95 % expected for a 2-sigma interval
    assert all(r["num_products"] == 30 and r["num_samples"] == 30 for r in results)
    # the reported error is the right size: its mean is within a factor of 2 of the observed spread
    spread = np.std([r["estimate"] for r in results])
    assert 0.5 < np.mean([r["standard_error"] for r in results]) / spread < 2.0


def test_hutchinson_on_the_hessian_operator():
    evaluator, theta, hessian, _ = setup("bn_cnn")
    operator = HessianOperator.from_evaluator(evaluator, theta, mode="forward")
    result = hutchinson_trace(operator, num_samples=40, seed=0)
    assert operator.num_products == result["num_products"] == 40
    assert abs(result["estimate"] - float(hessian.trace())) < 4 * result["standard_error"]


def test_hutchpp_beats_hutchinson_on_a_decaying_spectrum():
    matrix = decaying_spectrum_matrix(120)
    operator, true_trace = DenseOperator(matrix), float(matrix.trace())
    plain = [hutchinson_trace(operator, 30, seed)["estimate"] - true_trace for seed in range(30)]
    plus = [hutchpp_trace(operator, 30, seed) for seed in range(30)]
    mse_plain = np.mean(np.square(plain))
    mse_plus = np.mean([(r["estimate"] - true_trace) ** 2 for r in plus])
    assert mse_plus < 0.01 * mse_plain
    assert all(r["num_products"] == 30 and r["sketch_size"] == 10 for r in plus)


def test_hutchpp_on_the_hessian_and_exact_when_the_sketch_spans_everything():
    _, _, hessian, _ = setup("mlp")
    operator = DenseOperator(hessian)
    true_trace = float(hessian.trace())
    spanning = hutchpp_trace(operator, num_products=3 * 111 + 1, seed=0)
    assert abs(spanning["estimate"] - true_trace) < 1e-10 * abs(true_trace)
    plain = [hutchinson_trace(operator, 45, seed)["estimate"] - true_trace for seed in range(20)]
    plus = [hutchpp_trace(operator, 45, seed)["estimate"] - true_trace for seed in range(20)]
    assert np.mean(np.square(plus)) < np.mean(np.square(plain))
    with pytest.raises(ValueError, match="at least 3 products"):
        hutchpp_trace(operator, num_products=2)


# ---------------------------------------------------------------- spectral density (SLQ)


def test_slq_is_exact_gauss_quadrature_for_each_probe():
    evaluator, theta, hessian, exact = setup("mlp")
    operator = HessianOperator.from_evaluator(evaluator, theta)
    result = slq(operator, num_runs=3, lanczos_steps=3, seed=0, return_probes=True, progress=True)
    assert result["nodes"].shape == result["weights"].shape == (3, 3) and result["num_products"] == 9
    np.testing.assert_allclose(result["weights"].sum(axis=1), 1.0, atol=1e-12)
    scale = float(exact.abs().max())
    power = torch.eye(111, dtype=DT)
    for order in range(6):  # 3-point Gauss quadrature is exact up to degree 5
        quadratic_forms = torch.einsum("rd,de,re->r", result["probes"], power, result["probes"]).numpy()
        moments = slq_moments(result["nodes"], result["weights"], order)
        np.testing.assert_allclose(moments, quadratic_forms, rtol=0, atol=1e-10 * scale**order)
        power = power @ hessian
    full = slq(DenseOperator(hessian), num_runs=1, lanczos_steps=111, seed=1)
    np.testing.assert_allclose(np.sort(full["nodes"][0]), exact.numpy(), atol=1e-10 * scale)


def test_slq_moments_estimate_normalized_traces():
    _, _, hessian, exact = setup("bn_cnn")
    result = slq(DenseOperator(hessian), num_runs=200, lanczos_steps=6, seed=0)
    dim = hessian.shape[0]
    for order, target in ((1, float(exact.sum()) / dim), (2, float((exact**2).sum()) / dim)):
        per_run = slq_moments(result["nodes"], result["weights"], order)
        standard_error = per_run.std(ddof=1) / math.sqrt(len(per_run))
        assert abs(per_run.mean() - target) < 4 * standard_error
        assert standard_error < 0.1 * abs(target)  # the check has teeth: a 10 % error would fail it


def test_spectral_density_integrates_to_one():
    evaluator, theta, _, exact = setup("bn_cnn")
    result = slq(HessianOperator.from_evaluator(evaluator, theta, mode="forward"), num_runs=4, lanczos_steps=20, seed=0)
    nodes, weights = result["nodes"], result["weights"]
    for sigma in (None, 1e-3):
        grid = density_grid(nodes, sigma=sigma, num_points=20001, padding=8)
        density = spectral_density(nodes, weights, grid, sigma=sigma)
        assert density.min() >= 0 and abs(np.trapezoid(density, grid) - 1.0) < 1e-6
    assert nodes.max() <= float(exact[-1]) + 1e-10 and nodes.min() >= float(exact[0]) - 1e-10  # Ritz values interlace
    assert abs(nodes.max() - float(exact[-1])) < 1e-6 * float(exact[-1])  # 20 steps find the top outlier


# ---------------------------------------------------------------- directional curvature


def test_directional_curvature_is_the_rayleigh_quotient():
    evaluator, theta, hessian, _ = setup("bn_cnn")
    layout = ParameterLayout.of(theta)
    d_flat = 3.0 * random_vector(layout.dim, seed=9)
    direction = layout.unflatten(d_flat)
    expected = float(d_flat @ hessian @ d_flat / (d_flat @ d_flat))
    operator = HessianOperator.from_evaluator(evaluator, theta)
    assert abs(directional_curvature(operator, direction) - expected) < 1e-10 * abs(expected)
    assert abs(directional_curvature(operator.hvp, direction) - expected) < 1e-10 * abs(expected)
    # restricted: the curvature within the weights only, ignoring the direction's other entries
    sub = HessianOperator.from_evaluator(evaluator, theta, names=weight_names(theta))
    index = torch.cat([torch.arange(0, 36), torch.arange(48, 240)])
    d_sub, h_sub = d_flat[index], hessian[index][:, index]
    assert abs(directional_curvature(sub, direction) - float(d_sub @ h_sub @ d_sub / (d_sub @ d_sub))) < 1e-10 * abs(expected)
    with pytest.raises(ValueError, match="zero direction"):
        directional_curvature(operator, {n: torch.zeros_like(v) for n, v in theta.items()})


def test_fitted_curvature_of_an_exact_quadratic():
    lambdas = np.linspace(-1, 1, 41)
    losses = 2.0 + 0.7 * lambdas + 0.5 * 3.25 * lambdas**2
    assert abs(fitted_curvature(lambdas, losses) - 3.25) < 1e-10
    garbage = np.where(np.abs(lambdas) > 0.31, 100 * lambdas**4, losses)  # outside the window: ignored
    garbage[0] = np.nan
    assert abs(fitted_curvature(lambdas, garbage, window=0.3) - 3.25) < 1e-10
    with pytest.raises(ValueError, match="at least 3"):
        fitted_curvature(lambdas, losses, window=0.01)


def test_fitted_curvature_of_the_loss_curve_is_the_unnormalized_quadratic_form():
    evaluator, theta, _, _ = setup("mlp")
    layout = ParameterLayout.of(theta)
    direction = layout.unflatten(3.0 * random_vector(layout.dim, seed=4) / math.sqrt(layout.dim))  # ||d|| ~ 3
    operator = HessianOperator.from_evaluator(evaluator, theta)
    form, squared_norm = hessian_quadratic_form(operator, direction)
    lambdas = np.linspace(-0.01, 0.01, 11)
    losses = [float(evaluator.loss({n: theta[n] + lam * direction[n] for n in theta})) for lam in lambdas]
    fitted = fitted_curvature(lambdas, losses, window=0.01)
    assert abs(fitted - form) < 1e-4 * abs(form)  # d^T H d, not divided by ||d||^2 ...
    assert abs(fitted - directional_curvature(operator, direction)) > 0.5 * abs(fitted)  # ... which differs here
    assert abs(squared_norm - 9.0) < 3.0
