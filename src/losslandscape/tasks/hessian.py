"""Task ``hessian``: eigenpairs, trace, spectral density and the Hessian lens at the scanned model.

Every estimate differentiates the one evaluator twice and records its number of Hessian-vector
products, wall time and tolerance. Files go to ``hessian/``, headline numbers to ``summary.json``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate

from ..errors import ConfigError
from ..directions.store import save_direction
from ..files import write_json, write_npz
from ..hessian import (
    HessianOperator,
    density_grid,
    directional_curvature,
    fitted_curvature,
    hessian_eigenpairs,
    hutchinson_trace,
    hutchpp_trace,
    names_with_prefix,
    power_iteration_eigenpairs,
    slq,
    spectral_density,
    weight_names,
)
from ..landscape.batches import Residency
from ..landscape.evaluator import Evaluator, as_dtype
from ..plots.hessian import plot_hessian_lens, plot_spectral_density
from .common import Checkpoints, Session, direction_context, run_task, scanned_model, summary_head

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def run_hessian(cfg) -> dict[str, Any]:
    return run_task(cfg, _hessian)


def _hessian(session: Session) -> dict[str, Any]:
    cfg, h, out = session.cfg, session.cfg.hessian, session.output_dir / "hessian"
    if str(h.dtype) not in DTYPES:
        raise ConfigError(f"unknown hessian.dtype {h.dtype!r}: expected float64 or float32")
    if h.eigen.method not in ("lanczos", "power"):
        raise ConfigError(f"unknown hessian.eigen.method {h.eigen.method!r}: expected lanczos or power")
    direction_maker = instantiate(cfg.direction) if h.curvature.directions else None
    checkpoints = Checkpoints(session)
    model, _, checkpoint_path = scanned_model(session, checkpoints)
    dtype = DTYPES[str(h.dtype)]
    model = model.to(dtype)
    theta = {n: p.detach().clone() for n, p in model.named_parameters()}
    x, y = session.data.split(str(h.split))
    evaluation = cfg.evaluation
    bn_x = as_dtype(session.data.train_x[: int(evaluation.bn_examples)], dtype)
    evaluator = Evaluator(model, as_dtype(x, dtype), as_dtype(y, dtype), evaluation.batch_size, evaluation.bn_mode, bn_x,
                          loss=session.loss, residency=Residency.from_config(evaluation))
    names = parameter_subset(theta, str(h.parameters))
    operator = HessianOperator.from_evaluator(evaluator, theta, names, str(h.hvp_mode), h.batches_per_term)
    seed, progress = int(h.seed), bool(cfg.progress)
    summary: dict[str, Any] = {"parameters": operator.dim, "split": str(h.split), "dtype": str(h.dtype), "bn_mode": evaluation.bn_mode}

    eigen = {}
    for which, k in (("top", int(h.eigen.top_k)), ("bottom", int(h.eigen.bottom_k))):
        if k > 0:
            values, vectors, record = eigenpairs(operator, k, which, h.eigen, seed, progress)
            eigen[which] = {"eigenvalues": values.tolist(), **_plain(record)}
            for i, v in enumerate(vectors):
                save_direction(session.output_dir / "directions", f"hessian_{which}{i}", operator.to_full_dict(v),
                               {"type": "HessianEigenvector", "which": which, "index": i, "eigenvalue": float(values[i])})
    write_json(out / "eigenpairs.json", eigen)
    summary.update({f"{which}_eigenvalues": e["eigenvalues"] for which, e in eigen.items()})

    trace = {}
    if int(h.trace.hutchinson_samples) > 0:
        trace["hutchinson"] = _plain(hutchinson_trace(operator, int(h.trace.hutchinson_samples), seed))
    if int(h.trace.hutchpp_products) > 0:
        trace["hutchpp"] = _plain(hutchpp_trace(operator, int(h.trace.hutchpp_products), seed))
    write_json(out / "trace.json", trace)
    best = trace.get("hutchpp") or trace.get("hutchinson")
    if best:
        summary["trace"], summary["trace_standard_error"] = best["estimate"], best["standard_error"]

    figures = []
    if int(h.density.runs) > 0:
        quadrature = slq(operator, int(h.density.runs), min(int(h.density.steps), operator.dim), seed, progress=progress)
        grid = density_grid(quadrature["nodes"], h.density.sigma)
        density = spectral_density(quadrature["nodes"], quadrature["weights"], grid, h.density.sigma)
        write_npz(out / "density.npz", {"nodes": quadrature["nodes"], "weights": quadrature["weights"], "grid": grid, "density": density},
                  session.provenance(checkpoint=str(checkpoint_path), num_products=quadrature["num_products"], wall_time=quadrature["wall_time"]))
        figures += plot_spectral_density(grid, density, quadrature["nodes"], session.output_dir / "figures" / "hessian_density")
        session.tracker.log_spectrum("hessian/density", quadrature["nodes"], quadrature["weights"], eigen)
        summary["density"] = {"runs": int(h.density.runs), "num_products": quadrature["num_products"], "wall_time": quadrature["wall_time"]}

    if direction_maker is not None:
        context = direction_context(session, checkpoints, theta, evaluator.loss)
        lens = hessian_lens(operator, evaluator, theta, direction_maker, context, h.curvature, summary.get("trace"))
        write_json(out / "curvature.json", lens)
        figures += plot_hessian_lens(lens, session.output_dir / "figures" / "hessian_lens")
        summary["lens"] = {k: lens[k] for k in ("positive_fraction", "trace_over_dim", "mean_curvature")}
    session.tracker.log_figures("hessian", figures)
    summary["num_products"] = operator.num_products
    return {**summary_head(session, "hessian"), "checkpoint": str(checkpoint_path), "hessian": summary}


def parameter_subset(theta, which: str) -> list[str] | None:
    """``all``, ``weights`` (dim > 1) or the parameters whose names start with a prefix."""
    if which == "all":
        return None
    names = weight_names(theta) if which == "weights" else names_with_prefix(theta, which)
    if not names:
        raise ConfigError(f"hessian.parameters={which!r} selects no parameter; names are e.g. {sorted(theta)[:4]}")
    return names


def eigenpairs(operator, k: int, which: str, settings, seed: int, progress: bool):
    """Lanczos (default) or PyHessian's deflated power iteration (top only, for comparison)."""
    if settings.method == "power":
        if which == "bottom":
            raise ConfigError("hessian.eigen.method=power finds the largest-magnitude eigenvalues only; set hessian.eigen.bottom_k=0 or use lanczos")
        return power_iteration_eigenpairs(operator, k, float(settings.tol), int(settings.max_steps), seed, progress=progress)
    return hessian_eigenpairs(operator, k, which, float(settings.tol), int(settings.max_steps), seed, progress=progress)


def hessian_lens(operator, evaluator, theta, direction_maker, context, settings, trace) -> dict[str, Any]:
    """Curvature of K random directions, d^T H d / ||d||^2, next to tr(H)/D and to the curvature
    fitted to each direction's measured 1D curve at 0 (the seed paper's Hessian explanation of v-basins)."""
    lambdas = np.linspace(-float(settings.window), float(settings.window), int(settings.points))
    rows = []
    start = time.perf_counter()
    for index in range(int(settings.directions)):
        d = direction_maker(context, index)
        subset = set(operator.names)  # outside the operator's parameters the direction is zero
        d = {n: v if n in subset else torch.zeros_like(v) for n, v in d.items()}
        curvature = directional_curvature(operator, {n: d[n] for n in operator.names})
        norm2 = float(sum((d[n].double() ** 2).sum() for n in operator.names))
        with torch.inference_mode():
            losses = evaluator.metrics_at(theta, [d], torch.from_numpy(lambdas)[:, None])[:, 0].double().cpu().numpy()
        rows.append({"curvature": curvature, "fitted_curvature": fitted_curvature(lambdas, losses) / norm2 if norm2 else float("nan")})
    curvatures = np.array([r["curvature"] for r in rows])
    return {
        "directions": rows,
        "positive_fraction": float((curvatures > 0).mean()),
        "mean_curvature": float(curvatures.mean()),
        "trace_over_dim": None if trace is None else trace / operator.dim,
        "window": float(settings.window),
        "wall_time": time.perf_counter() - start,
    }


def _plain(record: dict) -> dict:
    """JSON-ready copy of an estimator's record (arrays and tensors as lists)."""
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in record.items() if k != "probes"}
