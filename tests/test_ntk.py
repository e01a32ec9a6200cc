"""Fort et al. 2020's NTK measures (kernel, kernel distance, velocity, task=ntk) and the trajectory-PCA path."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from losslandscape.directions.checkpoints import TrajectoryPCA
from losslandscape.directions.context import DirectionContext
from losslandscape.files import read_npz
from losslandscape.store import save_arrays
from losslandscape.measures.ntk import empirical_ntk, jacobian_matrix, kernel_distance, kernel_velocities, parameter_groups
from losslandscape.models import MLP, SmallCNN
from losslandscape.plots import landscape as landscape_plots
from losslandscape.tasks.landscape import trajectory_path
from losslandscape.tasks.ntk import run_ntk

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


def explicit_jacobian(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(n C, P) Jacobian assembled row by row with plain autograd: one backward per logit."""
    model.eval()
    out = model(x)
    rows = []
    for a in range(out.shape[0]):
        for c in range(out.shape[1]):
            grads = torch.autograd.grad(out[a, c], list(model.parameters()), retain_graph=True)
            rows.append(torch.cat([g.flatten() for g in grads]))
    return torch.stack(rows)


# ---------------------------------------------------------------- kernel distance and velocity


def test_kernel_distance_known_values():
    k = torch.randn(6, 6, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    k = k @ k.T
    assert kernel_distance(k, k) == pytest.approx(0.0, abs=1e-15)
    assert kernel_distance(k, 3.5 * k) == pytest.approx(0.0, abs=1e-15)  # blind to the kernel's scale
    assert kernel_distance(k, -k) == pytest.approx(2.0, abs=1e-15)
    disjoint_a, disjoint_b = torch.zeros(4, 4), torch.zeros(4, 4)
    disjoint_a[:2, :2], disjoint_b[2:, 2:] = torch.ones(2, 2), torch.eye(2)
    assert kernel_distance(disjoint_a, disjoint_b) == 1.0
    # <diag(1,0), diag(1,1)> = 1, norms 1 and sqrt 2
    assert kernel_distance(torch.diag(torch.tensor([1.0, 0.0])), torch.eye(2)) == pytest.approx(1 - 1 / math.sqrt(2), abs=1e-15)
    assert math.isnan(kernel_distance(torch.zeros(3, 3), k[:3, :3]))
    with pytest.raises(ValueError, match="different shapes"):
        kernel_distance(k, k[:3, :3])


def test_velocity_is_distance_per_epoch_between_saved_epochs():
    velocity = kernel_velocities([0, 1, 3, 7], [math.nan, 0.2, 0.4, 0.8])
    assert math.isnan(velocity[0]) and velocity[1:] == pytest.approx([0.2, 0.2, 0.2])


# ---------------------------------------------------------------- the empirical NTK


@pytest.mark.parametrize("chunk,megabytes", [(None, 256.0), (2, 256.0), (3, 1e-4)])  # 1e-4 MB: one tensor per group, one example per block
def test_torch_func_kernel_equals_explicit_autograd_jacobian_products(chunk, megabytes):
    torch.manual_seed(0)
    model = MLP((3,), 4, hidden=[5, 6], activation="tanh").double()
    x = torch.randn(7, 3, dtype=torch.float64)
    j = explicit_jacobian(model, x)
    full = j @ j.T
    blocks = full.reshape(7, 4, 7, 4)
    assert torch.allclose(jacobian_matrix(model, x, example_chunk=chunk).reshape(28, -1), j, atol=1e-13, rtol=0)
    assert torch.allclose(empirical_ntk(model, x, "full", example_chunk=chunk, max_jacobian_mb=megabytes), full, atol=1e-12, rtol=0)
    trace = empirical_ntk(model, x, "trace", example_chunk=chunk, max_jacobian_mb=megabytes)
    assert torch.allclose(trace, torch.einsum("acbc->ab", blocks), atol=1e-12, rtol=0)
    summed = empirical_ntk(model, x, "sum", example_chunk=chunk, max_jacobian_mb=megabytes)
    assert torch.allclose(summed, blocks.sum(dim=(1, 3)), atol=1e-12, rtol=0)


def test_linear_model_kernel_is_analytic_and_does_not_depend_on_the_weights():
    # f(x) = W x + b: d f_c / d W_c'j = delta_cc' x_j, d f_c / d b_c' = delta_cc', so K = (X X^T + 1) kron I_C
    torch.manual_seed(1)
    model = MLP((5,), 3, hidden=[]).double()
    x = torch.randn(8, 5, dtype=torch.float64)
    gram = x @ x.T + 1.0
    expected = torch.kron(gram, torch.eye(3, dtype=torch.float64))
    assert torch.allclose(empirical_ntk(model, x, "full"), expected, atol=1e-12, rtol=0)
    assert torch.allclose(empirical_ntk(model, x, "trace"), 3 * gram, atol=1e-12, rtol=0)
    assert torch.allclose(empirical_ntk(model, x, "sum"), 3 * gram, atol=1e-12, rtol=0)
    moved = {n: 10 * torch.randn_like(p) for n, p in model.named_parameters()}  # "training" changes W and b, not K
    assert torch.allclose(empirical_ntk(model, x, "full", params=moved), expected, atol=1e-12, rtol=0)


def test_batchnorm_model_is_evaluated_with_its_running_statistics():
    torch.manual_seed(2)
    model = SmallCNN((1, 8, 8), 3, channels=[4], hidden=5, batch_norm=True).double()
    model.train()
    with torch.no_grad():  # running statistics away from their defaults
        model(3 * torch.randn(64, 1, 8, 8, dtype=torch.float64) + 1)
    x = torch.randn(6, 1, 8, 8, dtype=torch.float64)
    full = empirical_ntk(model, x, "full")
    assert not model.training
    j = explicit_jacobian(model, x)  # eval mode: every logit depends on its own input only
    assert torch.allclose(full, j @ j.T, atol=1e-10, rtol=1e-10)
    assert torch.allclose(empirical_ntk(model, x[:2], "full"), full[:6, :6], atol=1e-10, rtol=1e-10)


def test_parameter_groups_stay_within_the_budget_unless_one_tensor_alone_exceeds_it():
    params = {"a": torch.zeros(10), "b": torch.zeros(5), "c": torch.zeros(30), "d": torch.zeros(2)}
    assert list(parameter_groups(params, outputs=2, budget=40)) == [["a", "b"], ["c"], ["d"]]
    assert list(parameter_groups(params, outputs=1, budget=1e9)) == [["a", "b", "c", "d"]]


# ---------------------------------------------------------------- task=ntk


LINEAR = ["dataset=moons", "dataset.n_samples=200", "model=mlp", "model.hidden=[]", "task=ntk", "task.examples=15",
          "task.dtype=float64", "train.epochs=3", "train.batch_size=32", "progress=false", "logger=none"]
SMALL_CNN = ["task=ntk", "model.channels=[4]", "model.hidden=8", "task.examples=6", "train.epochs=2", "train.batch_size=256",
             "progress=false", "logger=none"]


def test_ntk_task_on_a_linear_model_finds_the_constant_analytic_kernel(tiny_config):
    cfg = tiny_config(*LINEAR, "logger=wandb", "logger.mode=offline")
    summary = run_ntk(cfg)
    out = Path(cfg.output_dir)
    dynamics = json.loads((out / "ntk" / "dynamics.json").read_text())
    assert summary["ntk"]["epochs"] == dynamics["epochs"] == [0, 1, 2, 3]
    assert max(dynamics["distance_to_init"]) < 1e-14 and max(dynamics["velocity"][1:]) < 1e-14
    data = instantiate(cfg.dataset)
    x = data.train_x[torch.as_tensor(dynamics["indices"])].double()
    expected = torch.kron(x @ x.T + 1.0, torch.eye(2, dtype=torch.float64))
    for epoch in dynamics["epochs"]:
        kernel, provenance = read_npz(out / "ntk" / "kernels" / f"epoch_{epoch:03d}.npz")
        assert np.allclose(kernel["kernel"], expected.numpy(), atol=1e-12, rtol=0)
        assert provenance["bn"].startswith("eval")
    init, final = (torch.load(next(Path(cfg.cache_dir).glob("*/"))/ name, weights_only=True)["state_dict"] for name in ("init.pt", "final.pt"))
    assert (init["head.weight"] - final["head.weight"]).abs().max() > 1e-2  # training moved the weights, not the kernel
    assert (out / "figures" / "ntk_dynamics.png").stat().st_size > 0 and (out / "figures" / "ntk_distance_matrix.pdf").stat().st_size > 0
    matrix, _ = read_npz(out / "ntk" / "distance_matrix.npz")
    assert np.abs(matrix["distance"]).max() < 1e-14

    from losslandscape.tracking.wandb_records import finished_run_file, logged_history, logged_summary

    records = finished_run_file(out)
    logged = {key for row in logged_history(records) for key in row}
    assert {"ntk/ntk_dynamics/path", "ntk/ntk_distance_matrix/path"} <= logged
    assert logged_summary(records)["ntk/distance_to_init"] == pytest.approx(summary["ntk"]["distance_to_init"])


def test_ntk_task_resumes_from_its_kernel_files_and_gives_the_same_numbers(tiny_config):
    cfg = tiny_config(*SMALL_CNN)
    first = run_ntk(cfg)
    kernels = Path(cfg.output_dir) / "ntk" / "kernels"
    velocity = first["ntk"]["velocity"]
    assert first["ntk"]["kernel_shape"] == [60, 60] and velocity[1] > 0 and first["ntk"]["distance_to_init"][-1] > 0
    untouched = (kernels / "epoch_000.npz").stat().st_mtime_ns
    (kernels / "epoch_001.npz").unlink()  # killed before it was written
    arrays, provenance = read_npz(kernels / "epoch_002.npz")  # written under other settings: recomputed
    save_arrays(kernels / "epoch_002.npz", {"kernel": np.zeros_like(arrays["kernel"])}, provenance, "stale")
    second = run_ntk(tiny_config(*SMALL_CNN, "resume=false"))
    assert (kernels / "epoch_000.npz").stat().st_mtime_ns == untouched
    assert second["ntk"]["distance_to_init"] == first["ntk"]["distance_to_init"]
    assert second["ntk"]["velocity"][1:] == velocity[1:]
    assert np.abs(read_npz(kernels / "epoch_002.npz")[0]["kernel"]).max() > 0


@pytest.mark.parametrize("override,message", [
    ("task.kernel=diagonal", "task.kernel=diagonal: expected one of full, trace, sum"),
    ("task.examples=0", "task.examples=0: expected an integer >= 1"),
    ("task.examples=100000", r"task.examples must be an integer in \[1, "),
    ("task.split=valid", "task.split=valid: expected one of train, test"),
    ("task.dtype=float16", "task.dtype=float16: expected one of float32, float64"),
    ("task.example_chunk=0", "task.example_chunk=0: expected an integer >= 1 or null"),
    ("checkpoint=final.pt", "checkpoint=final.pt: task=ntk uses the cached training runs; set checkpoint=null"),
])  # fmt: skip
def test_ntk_task_rejects_bad_settings_before_training(tiny_config, override, message):
    cfg = tiny_config(*SMALL_CNN, override)
    with pytest.raises(ValueError, match=message):
        run_ntk(cfg)
    assert not Path(cfg.cache_dir).exists() or not any(Path(cfg.cache_dir).glob("*/init.pt"))


def test_the_ntk_and_trajectory_pca_recipes_compose():
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        ntk = compose(config_name="config", overrides=["experiment=fig_ntk"])
        pca = compose(config_name="config", overrides=["experiment=fig_trajectory_pca"])
    assert ntk.task.name == "ntk" and ntk.gallery.panels == ["figures/ntk_dynamics.png", "figures/ntk_distance_matrix.png"]
    assert pca.task.name == "landscape" and list(pca.scan) == ["plane"] and pca.direction._target_.endswith("TrajectoryPCA")
    assert pca.gallery.panels == ["figures/plane_contour.png"]


# ---------------------------------------------------------------- the trajectory-PCA path on the plane


def test_trajectory_on_a_plane_projects_to_its_exact_coordinates(monkeypatch):
    # checkpoints theta + a_k u + b_k v with u, v orthonormal, a . b = 0 and ||a|| > ||b||: the (uncentred)
    # trajectory PCs are u and v exactly, signed so that the start is negative, so the drawn path is (a_k, b_k) / ||theta||
    generator = torch.Generator().manual_seed(3)
    theta = {"w": torch.randn(4, 3, generator=generator, dtype=torch.float64), "b": torch.randn(5, generator=generator, dtype=torch.float64)}
    q, _ = torch.linalg.qr(torch.randn(17, 2, generator=generator, dtype=torch.float64))
    u = {"b": q[:5, 0], "w": q[5:, 0].reshape(4, 3)}  # flattened in sorted-name order, as TrajectoryPCA does
    v = {"b": q[:5, 1], "w": q[5:, 1].reshape(4, 3)}
    a, b = [-2.0, -1.0, 1.0, 0.0], [-1.0, 1.0, -1.0, 0.0]
    trajectory = [{n: theta[n] + ak * u[n] + bk * v[n] for n in theta} for ak, bk in zip(a, b)]
    context = DirectionContext(theta, 0, None, lambda: trajectory, None)
    directions, explained = TrajectoryPCA().components(context, 2)
    norm = math.sqrt(sum(float((t**2).sum()) for t in theta.values()))
    path = trajectory_path(SimpleNamespace(trajectory=lambda: trajectory), theta, directions)
    assert np.allclose(path, np.stack([a, b], axis=1) / norm, atol=1e-12)
    assert explained[:2].tolist() == pytest.approx([6 / 9, 3 / 9], abs=1e-12)

    drawn = {}
    monkeypatch.setattr(landscape_plots, "save_figure", lambda figure, stem: drawn.setdefault("figure", figure) and [])
    grid = SimpleNamespace(name="plane", axes={"x": np.linspace(-1, 1, 5), "y": np.linspace(-1, 1, 3)},
                           values={"train_loss": np.arange(15.0).reshape(3, 5) + 1})
    landscape_plots.plot_contour(grid, "unused", path_xy=path)
    lines = {line.get_label(): line for line in drawn["figure"].axes[0].get_lines()}
    assert np.allclose(np.stack(lines["training path (saved epochs)"].get_data(), axis=1), path)
    assert np.allclose(np.stack(lines["initialization"].get_data(), axis=1), path[:1])
