"""Task ``taxonomy``: every measure of Yang et al. 2021 for one trained config.

For the models trained with seeds ``seed, seed+1, ...`` (``task.models`` of them, one data split):
local measures per model (Hessian top eigenvalue and trace, train/test loss and accuracy) and global
measures per pair (mode connectivity along a trained Bezier curve and along the linear path, the
linear-path barrier, linear CKA of the penultimate features, L2 distance). ``summary.json`` holds
one flat number per measure (the mean over models or pairs), which ``task=phase_plot`` collects
over a load x temperature sweep. Each model and each pair is one resumable file in ``taxonomy/``.
"""

from __future__ import annotations

import copy
import itertools
import time
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from ..errors import ConfigError
from ..files import write_json, write_npz
from ..store import cached_record, content_digest, load_tensors, save_tensors
from ..hessian import HessianOperator, hessian_eigenpairs, hutchinson_trace, hutchpp_trace
from ..landscape.evaluator import parameters_of
from ..measures.mode_connectivity import (
    CurveTraining,
    bezier_point,
    linear_point,
    mode_connectivity,
    path_metrics,
    train_bezier_control,
)
from ..measures.interpolation import barrier
from ..measures.similarity import feature_layer, l2_distance, linear_cka, parameter_norm, penultimate_features
from ..plots.taxonomy import plot_mode_connectivity
from ..training.cache import training_config
from .common import Session, configured_model, evaluators_for, load_model, require_accuracy, run_task, summary_head, trained_checkpoints
from .references import Checkpoints
from .hessian import DTYPES, parameter_subset

# The flat numbers of summary.json that task=phase_plot draws (mean over models, or over pairs).
MEASURES = (
    "test_accuracy", "train_accuracy", "test_loss", "train_loss", "generalization_gap",
    "hessian_top_eigenvalue", "hessian_trace",
    "mode_connectivity", "linear_mode_connectivity", "linear_barrier",
    "cka", "l2_distance", "relative_l2_distance",
)  # fmt: skip


def run_taxonomy(cfg) -> dict[str, Any]:
    return run_task(cfg, _taxonomy)


def _taxonomy(session: Session) -> dict[str, Any]:
    require_accuracy(session, "taxonomy")
    cfg, task, out = session.cfg, session.cfg.task, session.output_dir
    curve, seeds = check_settings(session)
    run = trained_checkpoints(session)
    checkpoints = Checkpoints(session, run)
    paths = {seed: checkpoints.path("final" if seed == int(cfg.seed) else f"seed:{seed}") for seed in seeds}
    models = {seed: load_model(session, path)
              for seed, path in paths.items()}
    progress = bool(cfg.progress)

    per_model = {}
    for seed in seeds:  # one resumable file per model
        key = session.result_key("taxonomy_model", weights=content_digest(models[seed].state_dict()),
                                 hessian=_container(cfg.hessian) if task.hessian else None)
        per_model[seed] = cached_record(out / "taxonomy" / "models" / f"seed{seed}.json", key,
                                        lambda seed=seed: model_measures(session, models[seed], seed))
    per_pair, curves = {}, {}
    for a, b in itertools.combinations(seeds, 2):
        name = f"seed{a}-seed{b}"
        per_pair[name], curves[name] = pair_measures(session, models[a], models[b], paths[a], paths[b], name, curve, progress)

    figures = plot_mode_connectivity(curves, out / "figures" / "mode_connectivity",
                                     title=f"{_model_name(cfg)} on {session.data.name}: Bezier curve vs linear path ({task.curve.split} split)")
    session.tracker.log_figures("taxonomy", figures)
    means = {**_mean_over(per_model.values(), ("test_accuracy", "train_accuracy", "test_loss", "train_loss", "generalization_gap",
                                                "hessian_top_eigenvalue", "hessian_trace")),
             **_mean_over(per_pair.values(), ("mode_connectivity", "linear_mode_connectivity", "linear_barrier", "cka",
                                              "l2_distance", "relative_l2_distance"))}
    write_json(out / "taxonomy" / "measures.json", {"measures": means, "models": per_model, "pairs": per_pair,
                                                    "provenance": session.provenance(checkpoints={s: str(p) for s, p in paths.items()})})
    return {
        **summary_head(session, "taxonomy"),
        "seeds": seeds,
        **means,
        "measures": [m for m in MEASURES if m in means],
        "per_model": {f"seed{s}": v for s, v in per_model.items()},
        "per_pair": per_pair,
        "training_config": training_config(cfg),  # what task=phase_plot reads the load and temperature from
        "figures": [str(f) for f in figures],
        "headline": headline(means),
    }


def check_settings(session: Session) -> tuple[CurveTraining, list[int]]:
    """Every setting checked with one clear message, before any training."""
    cfg, task = session.cfg, session.cfg.task
    if cfg.checkpoint:
        raise ConfigError("task=taxonomy compares the cached final models of several seeds; unset checkpoint (checkpoint=null)")
    seeds = [int(s) for s in task.seeds] if task.seeds is not None else [int(cfg.seed) + i for i in range(int(task.models))]
    if len(seeds) < 2 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"task.models must be at least 2, or task.seeds a list of at least 2 different seeds (mode connectivity, "
                         f"CKA and L2 compare pairs of models), got models={task.models}, seeds={task.seeds}")
    for key, split in (("task.curve.split", task.curve.split), ("task.cka.split", task.cka.split), ("hessian.split", cfg.hessian.split)):
        if split not in ("train", "test"):
            raise ConfigError(f"{key}={split!r} is unknown: expected train or test")
    if int(task.curve.points) < 3:
        raise ConfigError(f"task.curve.points must be at least 3 (t = 0, an inner point, t = 1), got {task.curve.points}")
    if task.cka.examples is not None and int(task.cka.examples) < 2:
        raise ConfigError(f"task.cka.examples must be at least 2 or null (the whole split), got {task.cka.examples}")
    if task.hessian:
        if str(cfg.hessian.dtype) not in DTYPES:
            raise ConfigError(f"unknown hessian.dtype {cfg.hessian.dtype!r}: expected float64 or float32")
        products, samples = int(cfg.hessian.trace.hutchpp_products), int(cfg.hessian.trace.hutchinson_samples)
        if products == 0 and samples == 0:
            raise ConfigError("the Hessian trace needs hessian.trace.hutchpp_products >= 3 or hessian.trace.hutchinson_samples >= 1 (or task.hessian=false)")
        if 0 < products < 3:
            raise ConfigError(f"hessian.trace.hutchpp_products must be 0 or at least 3, got {products}")
    settings = {k: v for k, v in _container(task.curve).items() if k not in ("split", "points")}
    curve = CurveTraining(**settings)
    model = instantiate_model(session)
    feature_layer(model, task.cka.layer)  # the named layer exists (checked on a fresh model, before training)
    if task.hessian:
        parameter_subset(parameters_of(model), str(cfg.hessian.parameters))
    return curve, seeds


def instantiate_model(session: Session) -> torch.nn.Module:
    return configured_model(session.cfg, session.data)


def model_measures(session: Session, model: torch.nn.Module, seed: int) -> dict[str, Any]:
    """Loss and accuracy on both splits, and (with ``task.hessian``) the Hessian's top eigenvalue and trace."""
    cfg = session.cfg
    theta = parameters_of(model)
    started = time.perf_counter()
    row: dict[str, Any] = {"seed": seed}
    # the trained model with its own statistics (bn_mode=eval), on the splits' configured subsets
    for split, evaluator in evaluators_for(session, model, ["train", "test"], bn_mode="eval").items():
        with torch.inference_mode():
            loss, accuracy = evaluator.metrics(theta).tolist()
        row[f"{split}_loss"], row[f"{split}_accuracy"] = loss, accuracy
    row["generalization_gap"] = row["train_accuracy"] - row["test_accuracy"]
    if cfg.task.hessian:
        row.update(hessian_measures(session, model))
    row["wall_time"] = time.perf_counter() - started
    return row


def hessian_measures(session: Session, model: torch.nn.Module) -> dict[str, Any]:
    """Top eigenvalue (Lanczos) and trace (Hutch++, else Hutchinson) with the settings of ``hessian.*``."""
    cfg, h = session.cfg, session.cfg.hessian
    dtype = DTYPES[str(h.dtype)]
    model = _copy_to(model, dtype)
    theta = parameters_of(model)
    evaluator = evaluators_for(session, model, [str(h.split)], dtype=dtype)[str(h.split)]  # task=hessian's objective
    operator = HessianOperator.from_evaluator(evaluator, theta, parameter_subset(theta, str(h.parameters)), str(h.hvp_mode), h.batches_per_term)
    values, _, record = hessian_eigenpairs(operator, 1, "top", float(h.eigen.tol), int(h.eigen.max_steps), int(h.seed), progress=bool(cfg.progress))
    if int(h.trace.hutchpp_products) > 0:
        trace = hutchpp_trace(operator, int(h.trace.hutchpp_products), int(h.seed))
    else:
        trace = hutchinson_trace(operator, int(h.trace.hutchinson_samples), int(h.seed))
    return {
        "hessian_top_eigenvalue": float(values[0]),
        "hessian_top_converged": bool(record["converged"][0]),
        "hessian_trace": float(trace["estimate"]),
        "hessian_trace_standard_error": float(trace["standard_error"]),
        "hessian_trace_method": trace["method"],
        "hessian_parameters": operator.dim,
        "hessian_products": operator.num_products,
    }


def pair_measures(session, model_a, model_b, path_a, path_b, name, curve: CurveTraining, progress: bool):
    """Mode connectivity (Bezier and linear), barrier, CKA and L2 of one pair; every file resumable."""
    cfg, task, out = session.cfg, session.cfg.task, session.output_dir
    folder = out / "taxonomy" / "pairs"
    ts = np.linspace(0.0, 1.0, int(task.curve.points))
    theta_a, theta_b = parameters_of(model_a), parameters_of(model_b)
    control_key = session.result_key("bezier_control", a=content_digest(model_a.state_dict()), b=content_digest(theta_b),
                                     curve=curve.describe())
    x_train, y_train = session.data.split("train")

    def trained_control():
        control, record = train_bezier_control(model_a, theta_a, theta_b, x_train.to(session.device), y_train.to(session.device), curve,
                                               folder / f"{name}-state.pt", control_key, progress, session.loss)
        record = {k: v for k, v in record.items() if k != "losses"} | {"loss_curve": record["losses"][:: max(1, len(record["losses"]) // 200)]}
        return control, record

    control, record = cached_tensors(folder / f"{name}-control.pt", control_key, trained_control)
    control = {n: v.to(theta_a[n].device) for n, v in control.items()}
    state = folder / f"{name}-state.pt"
    if state.is_file():
        state.unlink()  # the finished control point supersedes the training snapshot

    def evaluated():
        started = time.perf_counter()
        split = str(task.curve.split)  # BN statistics re-estimated at every t
        evaluator = evaluators_for(session, model_a, [split], bn_mode="recompute")[split]
        bezier = path_metrics(evaluator, lambda t: bezier_point(theta_a, control, theta_b, t), ts)
        linear = path_metrics(evaluator, lambda t: linear_point(theta_a, theta_b, t), ts)
        write_npz(out / "curves" / f"mode_connectivity_{name}.npz",
                  {"t": ts, "bezier_loss": bezier[:, 0], "bezier_accuracy": bezier[:, 1], "linear_loss": linear[:, 0], "linear_accuracy": linear[:, 1]},
                  session.provenance(a=str(path_a), b=str(path_b), split=str(task.curve.split), bn_mode=evaluator.bn_mode, curve=curve.describe()))
        mc, linear_mc = mode_connectivity(ts, bezier[:, 0]), mode_connectivity(ts, linear[:, 0])
        xs, _ = session.data.split(str(task.cka.split))
        xs = _cka_inputs(xs, task.cka.examples, int(cfg.seed))
        features_a = penultimate_features(model_a, xs, evaluator.batch_size, task.cka.layer)
        features_b = penultimate_features(model_b, xs, evaluator.batch_size, task.cka.layer)
        distance = l2_distance(theta_a, theta_b)
        return {
            "mode_connectivity": mc["mc"], "t_star": mc["t_star"], "endpoint_loss": mc["endpoint_mean"],
            "linear_mode_connectivity": linear_mc["mc"], "linear_t_star": linear_mc["t_star"],
            "linear_barrier": barrier(ts, linear[:, 0])["barrier"], "bezier_barrier": barrier(ts, bezier[:, 0])["barrier"],
            "cka": linear_cka(features_a, features_b), "cka_examples": len(xs), "feature_dim": features_a.shape[1],
            "l2_distance": distance, "relative_l2_distance": distance / parameter_norm(theta_a),
            "curve_training": record, "bn_mode": evaluator.bn_mode,
            "t": ts.tolist(), "bezier_loss": bezier[:, 0].tolist(), "linear_loss": linear[:, 0].tolist(),
            "evaluation_wall_time": time.perf_counter() - started,
        }

    key = session.result_key("taxonomy_pair", control=control_key, b=content_digest(model_b.state_dict()), points=len(ts),
                             split=str(task.curve.split), cka=_container(task.cka))
    result = cached_record(folder / f"{name}.json", key, evaluated)
    curves = {"t": np.asarray(result["t"]), "bezier": np.asarray(result["bezier_loss"]), "linear": np.asarray(result["linear_loss"]),
              "t_star": result["t_star"], "mc": result["mode_connectivity"]}
    summary = {k: v for k, v in result.items() if k not in ("t", "bezier_loss", "linear_loss", "curve_training")}
    summary["curve_final_loss"] = result["curve_training"]["final_loss"]
    summary["curve_training_wall_time"] = result["curve_training"]["wall_time"]
    return summary, curves


def cached_tensors(path, key: str, compute):
    """``(control point, record)`` stored at ``path`` under ``key``, else computed and stored."""
    if (stored := load_tensors(path, key)) is not None:
        return stored["control"], stored["record"]
    control, record = compute()
    save_tensors(path, {"control": {n: v.cpu() for n, v in control.items()}, "record": record}, key)
    return control, record


def _cka_inputs(x: torch.Tensor, examples, seed: int) -> torch.Tensor:
    if examples is None or int(examples) >= len(x):
        return x
    keep = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[: int(examples)]
    return x[keep]


def _copy_to(model: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    return copy.deepcopy(model).to(dtype)


def _mean_over(rows, keys) -> dict[str, float]:
    rows = list(rows)
    return {k: float(np.mean([r[k] for r in rows])) for k in keys if rows and all(k in r for r in rows)}


def _container(node) -> Any:
    return OmegaConf.to_container(node, resolve=True)


def _model_name(cfg) -> str:
    return cfg.model._target_.rsplit(".", 1)[-1]


def headline(means: dict[str, float]) -> list[str]:
    lines = []
    if "hessian_top_eigenvalue" in means:
        lines.append(f"Hessian: top eigenvalue {means['hessian_top_eigenvalue']:.4g}, trace {means['hessian_trace']:.4g} (mean over models)")
    lines.append(f"mode connectivity mc {means['mode_connectivity']:+.4g} (Bezier curve), {means['linear_mode_connectivity']:+.4g} (linear path); "
                 f"linear barrier {means['linear_barrier']:.4g}")
    lines.append(f"CKA {means['cka']:.4f}; L2 distance {means['l2_distance']:.4g} ({100 * means['relative_l2_distance']:.1f} % of ||theta||)")
    return lines
