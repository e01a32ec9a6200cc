"""Task ``hessian`` end to end on a model small enough for the exact Hessian."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from losslandscape.directions.store import load_direction
from losslandscape.landscape.evaluator import Evaluator
from losslandscape.tasks.hessian import run_hessian
from losslandscape.tasks.landscape import run_landscape
from losslandscape.training.checkpoints import model_from_checkpoint

SMALL = ["dataset=moons", "dataset.n_samples=300", "model=mlp", "model.hidden=[6]", "model.activation=tanh", "train.epochs=3", "train.batch_size=32"]


def exact_hessian(cfg, checkpoint):
    """The dense Hessian of the training loss at the checkpoint, by torch.func.hessian (independent of Lanczos)."""
    model = model_from_checkpoint(checkpoint).double()
    data = instantiate(cfg.dataset)
    evaluator = Evaluator(model, data.train_x.double(), data.train_y)
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat = torch.cat([p.detach().flatten() for _, p in model.named_parameters()])

    def loss(vector):
        parts = torch.split(vector, [int(np.prod(s)) for s in shapes])
        return evaluator.loss({n: p.view(s) for n, p, s in zip(names, parts, shapes)})

    return torch.func.hessian(loss)(flat)


def test_hessian_task_matches_the_exact_hessian(tiny_config):
    cfg = tiny_config(*SMALL, "task=hessian", "hessian.eigen.top_k=3", "hessian.eigen.bottom_k=2", "hessian.eigen.tol=1e-8",
                      "hessian.trace.hutchinson_samples=30", "hessian.trace.hutchpp_products=45", "hessian.density.runs=3",
                      "hessian.density.steps=20", "hessian.curvature.directions=4", "logger=wandb", "logger.mode=offline")
    summary = run_hessian(cfg)["hessian"]
    checkpoint = json.loads((Path(cfg.output_dir) / "summary.json").read_text())["checkpoint"]
    hessian = exact_hessian(cfg, checkpoint)
    eigenvalues = torch.linalg.eigvalsh(hessian).numpy()
    assert summary["parameters"] == hessian.shape[0] == 2 * 6 + 6 + 6 * 2 + 2
    np.testing.assert_allclose(summary["top_eigenvalues"], eigenvalues[::-1][:3], rtol=1e-6)
    np.testing.assert_allclose(summary["bottom_eigenvalues"], eigenvalues[:2], rtol=1e-6, atol=1e-10)
    trace = float(torch.trace(hessian))
    assert abs(summary["trace"] - trace) <= 4 * summary["trace_standard_error"] + 1e-9
    lens = json.loads((Path(cfg.output_dir) / "hessian" / "curvature.json").read_text())
    for row in lens["directions"]:  # smooth (tanh) network: the curve's curvature at 0 is the Hessian's, up to the window
        assert row["fitted_curvature"] == pytest.approx(row["curvature"], rel=0.05, abs=1e-6)
    assert lens["trace_over_dim"] == pytest.approx(summary["trace"] / hessian.shape[0])
    out = Path(cfg.output_dir)
    for name in ["hessian/eigenpairs.json", "hessian/trace.json", "hessian/density.npz", "figures/hessian_density.png", "figures/hessian_lens.png"]:
        assert (out / name).stat().st_size > 0, name
    top0, recipe = load_direction(next((out / "directions").glob("hessian_top0-*.pt")))
    assert recipe["eigenvalue"] == pytest.approx(summary["top_eigenvalues"][0])

    from losslandscape.tracking.wandb_records import finished_run_file, logged_history, logged_summary

    records = finished_run_file(out)
    logged = {key for row in logged_history(records) for key in row}
    assert {"hessian/density/histogram/_type", "hessian/density/nodes/_type", "hessian/density/top_eigenvalues/_type",
            "hessian/hessian_lens/_type"} <= logged
    assert logged_summary(records)["hessian/top_eigenvalues"] == pytest.approx(summary["top_eigenvalues"])


@pytest.mark.parametrize("which", ["top", "bottom"])
def test_eigenvector_directions_scan_with_their_curvature(tiny_config, which):
    cfg = tiny_config(*SMALL, f"direction=hessian_{which}", "scan=line", "scan.line.span=[-0.01,0.01]", "scan.line.points=11")
    summary = run_landscape(cfg)
    recipe = summary["direction"]
    assert recipe["type"] == "HessianEigenvector" and len(recipe["eigenvalues"]) >= 1
    ordered = sorted(recipe["eigenvalues"], reverse=which == "top")
    assert recipe["eigenvalues"] == pytest.approx(ordered)  # top: descending; bottom: most negative first
    # along a unit eigenvector scaled to ||theta||, the curve bends with the eigenvalue (smooth tanh network)
    from losslandscape.hessian import fitted_curvature
    from losslandscape.landscape.scans import ScanResult

    curve = ScanResult.load(summary["scans"]["line"]["file"])
    model = model_from_checkpoint(summary["checkpoint"])
    theta_norm2 = float(sum((p.detach().double() ** 2).sum() for p in model.parameters()))
    fitted = fitted_curvature(curve.axes["lambda"], curve.values["train_loss"]) / theta_norm2
    assert fitted == pytest.approx(recipe["eigenvalues"][0], rel=0.05, abs=2e-3)


def test_bad_hessian_settings_are_rejected(tiny_config):
    with pytest.raises(ValueError, match="hessian.parameters='nothing.here' selects no parameter"):
        run_hessian(tiny_config(*SMALL, "task=hessian", "hessian.parameters=nothing.here"))
    with pytest.raises(ValueError, match="hessian.dtype=float16: expected one of float64, float32"):
        run_hessian(tiny_config(*SMALL, "task=hessian", "hessian.dtype=float16"))
