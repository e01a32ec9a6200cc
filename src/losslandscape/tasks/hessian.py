"""Task ``hessian``: eigenpairs, trace, spectral density and the Hessian lens at the scanned model.

Every estimate differentiates the one evaluator twice and records its number of Hessian-vector
products, wall time and tolerance. Files go to ``hessian/``, headline numbers to ``summary.json``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ..errors import ConfigError
from ..directions.store import save_direction
from ..files import write_json, write_npz
from ..store import cached_record, content_digest, result_key
from ..hessian import (
    HessianOperator,
    density_grid,
    hessian_lens,
    hessian_eigenpairs,
    hutchinson_trace,
    hutchpp_trace,
    names_with_prefix,
    power_iteration_eigenpairs,
    slq,
    spectral_density,
    weight_names,
)
from ..plots.hessian import plot_hessian_lens, plot_spectral_density
from ..plots.style import model_on_data
from .common import Session, evaluators_for, run_task, summary_head
from .references import Checkpoints, direction_context, scanned_model

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
    evaluation = cfg.evaluation
    evaluator = evaluators_for(session, model, [str(h.split)], dtype=dtype)[str(h.split)]  # the scans' objective, in dtype
    names = parameter_subset(theta, str(h.parameters))
    operator = HessianOperator.from_evaluator(evaluator, theta, names, str(h.hvp_mode), h.batches_per_term)
    seed, progress = int(h.seed), bool(cfg.progress)
    with torch.inference_mode():
        loss_at_theta = float(evaluator.loss(theta))
    summary: dict[str, Any] = {"parameters": operator.dim, "split": str(h.split), "dtype": str(h.dtype), "bn_mode": evaluation.bn_mode,
                               "loss": loss_at_theta}
    # each estimate is one unit of the result store: a rerun reuses those finished under the same key
    function = {"theta": content_digest(theta), "parameters": operator.names, "evaluation": evaluator.fingerprint,
                "hvp": [str(h.hvp_mode), h.batches_per_term], "seed": seed}

    def unit(name: str, settings: Any, compute) -> dict[str, Any]:
        key = result_key({"measure": f"hessian_{name}", "settings": settings, **function})
        return cached_record(out / "units" / f"{name}.json", key, compute)

    def eigen_unit(which: str, k: int) -> dict[str, Any]:
        values, vectors, record = eigenpairs(operator, k, which, h.eigen, seed, progress)
        for i, v in enumerate(vectors):
            save_direction(session.output_dir / "directions", f"hessian_{which}{i}", operator.to_full_dict(v),
                           {"type": "HessianEigenvector", "which": which, "index": i, "eigenvalue": float(values[i])})
        return {"eigenvalues": values.tolist(), **_plain(record)}

    eigen = {which: unit(f"eigen_{which}", {"k": k, **_container(h.eigen)}, lambda which=which, k=k: eigen_unit(which, k))
             for which, k in (("top", int(h.eigen.top_k)), ("bottom", int(h.eigen.bottom_k))) if k > 0}
    write_json(out / "eigenpairs.json", eigen)
    summary.update({f"{which}_eigenvalues": e["eigenvalues"] for which, e in eigen.items()})

    trace = {}
    if int(h.trace.hutchinson_samples) > 0:
        trace["hutchinson"] = unit("trace_hutchinson", int(h.trace.hutchinson_samples),
                                   lambda: _plain(hutchinson_trace(operator, int(h.trace.hutchinson_samples), seed)))
    if int(h.trace.hutchpp_products) > 0:
        trace["hutchpp"] = unit("trace_hutchpp", int(h.trace.hutchpp_products),
                                lambda: _plain(hutchpp_trace(operator, int(h.trace.hutchpp_products), seed)))
    write_json(out / "trace.json", trace)
    best = trace.get("hutchpp") or trace.get("hutchinson")
    if best:
        summary["trace"], summary["trace_standard_error"] = best["estimate"], best["standard_error"]

    figures, heading = [], f"{model_on_data(session.provenance()['config'])}, {h.split} {session.loss.name}"
    if int(h.density.runs) > 0:
        steps = min(int(h.density.steps), operator.dim)
        quadrature = unit("density", {"runs": int(h.density.runs), "steps": steps},
                          lambda: _plain(slq(operator, int(h.density.runs), steps, seed, progress=progress)))
        nodes, weights = np.asarray(quadrature["nodes"]), np.asarray(quadrature["weights"])
        grid = density_grid(nodes, h.density.sigma)
        density = spectral_density(nodes, weights, grid, h.density.sigma)
        write_npz(out / "density.npz", {"nodes": nodes, "weights": weights, "grid": grid, "density": density},
                  session.provenance(checkpoint=str(checkpoint_path), num_products=quadrature["num_products"], wall_time=quadrature["wall_time"]))
        figures += plot_spectral_density(grid, density, nodes, session.output_dir / "figures" / "hessian_density", heading)
        session.tracker.log_spectrum("hessian/density", nodes, weights, eigen)
        summary["density"] = {"runs": int(h.density.runs), "num_products": quadrature["num_products"], "wall_time": quadrature["wall_time"]}

    if direction_maker is not None:
        context = direction_context(session, checkpoints, theta, evaluator.loss)
        lens = unit("lens", {"curvature": _container(h.curvature), "direction": _container(cfg.direction), "trace": summary.get("trace")},
                    lambda: hessian_lens(operator, evaluator, theta, direction_maker, context, h.curvature, summary.get("trace")))
        write_json(out / "curvature.json", lens)
        figures += plot_hessian_lens(lens, session.output_dir / "figures" / "hessian_lens", heading)
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


def _container(node) -> Any:
    return OmegaConf.to_container(node, resolve=True)


def _plain(record: dict) -> dict:
    """JSON-ready copy of an estimator's record (arrays and tensors as lists)."""
    return {k: (v.tolist() if hasattr(v, "tolist") else v) for k, v in record.items() if k != "probes"}
