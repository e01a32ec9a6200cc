"""Task ``mine``: directions with the curve shapes intuition cannot produce (w-peak, vvv-basin, any
template) and the wine-bottle bottom in 2D, mined by projected gradient descent (``mining`` group).

For each of ``mining.runs`` runs (run i starts from direction seed i): mine, save the directions,
scan them at full resolution, label the curves with the shape classifier, measure ``d^T H d``, and
count the run a success when the label is the preset's target. One record per finished run, so a
killed job continues with the next run. ``mining.saddle`` adds the 2D saddle: a filter-normalized
Gaussian (v-basin) direction crossed with the mined one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..errors import ConfigError
from ..directions.hessian import HessianEigenvector
from ..directions.noise import NoiseDirection
from ..directions.normalization import ParamDict, dot, global_norm, orthogonalize
from ..directions.store import load_direction, save_direction
from ..files import as_json, read_npz, write_json, write_npz
from ..store import content_digest, load_record, read_record, result_key, save_record
from ..hessian import HessianOperator, hessian_quadratic_form
from ..landscape.scans import LineScan, PlaneScan, ScanResult, run_scan
from ..landscape.shapes import center_is_local_maximum, classify_curve
from ..mining.miner import DirectionMiner, MiningResult
from ..plots.exports import share_surface
from ..plots.landscape import plot_contour, plot_curves, plot_surface
from ..plots.mining import plot_mining_traces, plot_wine_bottle
from .common import Session, evaluators_for, run_task, summary_head
from .references import Checkpoints, direction_context, scanned_model
from .landscape import label_curve

INITS = ("gaussian", "hessian_bottom")


def run_mine(cfg: DictConfig) -> dict[str, Any]:
    return run_task(cfg, _mine)


def _mine(session: Session) -> dict[str, Any]:
    cfg, m, out = session.cfg, session.cfg.mining, session.output_dir
    if m.get("objective") is None:
        raise ConfigError("mining has no objective: choose a preset, mining=w_peak | vvv_basin | template | ring (base holds their shared settings)")
    objective = built(m.objective)  # validates the targets before training
    miner: DirectionMiner = built(m.miner)
    check_settings(m, cfg.evaluation)
    checkpoints = Checkpoints(session)
    model, theta, checkpoint_path = scanned_model(session, checkpoints)
    evaluators = evaluators_for(session, model)
    evaluator = evaluators[str(m.split)]
    operator = HessianOperator(evaluator.loss, theta)  # curvature of the mined split's loss at theta
    context = direction_context(session, checkpoints, theta, evaluator.loss)
    provenance = session.provenance(checkpoint=str(checkpoint_path), train_key=checkpoints.train_key, objective=objective.describe(),
                                    bn_mode=cfg.evaluation.bn_mode, split=str(m.split))
    miner_settings = {"steps": miner.steps, "batch_size": miner.batch_size, "normalization": miner.normalization,
                      "bias_bn": miner.bias_bn, "scale": miner.scale, "init": str(m.init)}
    starts = InitialDirections(str(m.init), miner, context)

    runs, scans = [], {}
    for index in range(int(m.runs)):
        stem = f"mined{index:02d}"
        directions, mined = mined_directions(session, stem, objective, miner, evaluator, theta, starts, index,
                                             {**objective.describe(), **miner_settings}, provenance)
        measure = measure_line if objective.num_directions == 1 else measure_ring
        record, results = measure(session, stem, objective, directions, theta, evaluators, operator, provenance)
        runs.append({"run": index, **record, "wall_time": mined["wall_time"], "final_objective": mined["final_objective"]})
        scans.update(results)
        print(f"   run {index}: {record['label']}" + (" (success)" if record["success"] else ""))

    summary_runs = {"target_label": objective.target_label, "runs": runs, "objective": objective.describe(), **miner_settings}
    if objective.target_label is not None:
        summary_runs["successes"] = sum(r["success"] for r in runs)
        summary_runs["success_rate"] = summary_runs["successes"] / len(runs)
    best = next((r for r in runs if r["success"]), runs[0])
    figures = figures_of_runs(session, objective, runs, scans, best)
    if bool(m.saddle) and objective.num_directions == 1:
        summary_runs["saddle"], saddle_figures = saddle_surface(session, best, theta, evaluators, operator, miner, context, provenance)
        figures += saddle_figures
    write_json(out / "mining" / "runs.json", summary_runs)
    session.tracker.log_figures("mining", figures)
    return {
        **summary_head(session, "mine"),
        "checkpoint": str(checkpoint_path),
        "mining": summary_runs,
        "figures": [str(f) for f in figures],
        "headline": headline(summary_runs),
    }


def built(node: DictConfig):
    """``instantiate`` with a bad setting's own ValueError, not Hydra's wrapper around it."""
    try:
        return instantiate(node, _convert_="all")
    except InstantiationException as error:
        if isinstance(error.__cause__, ValueError):
            raise error.__cause__ from None
        raise


def check_settings(m: DictConfig, evaluation: DictConfig) -> None:
    """One clear error per bad setting, before any training."""
    if str(m.init) not in INITS:
        raise ConfigError(f"unknown mining.init {m.init!r}: expected one of {', '.join(INITS)}")
    if int(m.runs) < 1:
        raise ConfigError(f"mining.runs must be at least 1, got {m.runs}")
    if str(m.split) not in evaluation.splits:
        raise ConfigError(f"mining.split={m.split} is not evaluated: add it to evaluation.splits (now {list(evaluation.splits)})")
    if int(m.scan_points) < 11 or int(m.plane_points) < 5:
        raise ConfigError(f"mining.scan_points must be >= 11 and mining.plane_points >= 5, got {m.scan_points} and {m.plane_points}")
    if int(m.get("rays", 12)) < 2:
        raise ConfigError(f"mining.rays must be at least 2, got {m.rays}")


class InitialDirections:
    """Where run ``i`` starts: filter-normalized Gaussian noise of direction seed ``i`` (one seed per
    direction), or the Hessian's most negative eigenvector(s) (the same start for every run: runs
    then differ in their mini-batches only)."""

    def __init__(self, init: str, miner: DirectionMiner, context):
        self.init, self.context = init, context
        self.noise = NoiseDirection("gaussian", miner.normalization, miner.bias_bn, miner.scale)
        self.eigenvectors = HessianEigenvector("bottom", miner.normalization, miner.bias_bn, miner.scale) if init == "hessian_bottom" else None

    def __call__(self, run: int, count: int) -> list[ParamDict]:
        if self.eigenvectors is not None:
            return [self.eigenvectors(self.context, k) for k in range(count)]
        return [self.noise(self.context, count * run + k) for k in range(count)]


def mined_directions(session, stem, objective, miner, evaluator, theta, starts, index, recipe, provenance):
    """The directions of run ``index``: loaded when a previous job finished mining them, else mined and saved."""
    record_path = session.output_dir / "mining" / f"{stem}.json"
    recipe, seed = as_json(recipe), starts.context.seed_for(index)
    key = result_key({"measure": "mining", "recipe": recipe, "seed": seed, "theta": content_digest(theta),
                      "evaluation": evaluator.fingerprint})
    if (record := load_record(record_path, key)) is not None:
        directions = [load_direction(session.output_dir / "directions" / name, theta[next(iter(theta))].device)[0]
                      for name in record["directions"]]
        return [{n: d[n].to(theta[n].dtype) for n in theta} for d in directions], record
    result: MiningResult = miner.mine(objective, evaluator, theta, starts(index, objective.num_directions), seed,
                                      bool(session.cfg.progress), label=f"run {index + 1}/{session.cfg.mining.runs}")
    directions = result.directions
    if objective.num_directions == 2:  # the plane's second axis exactly orthogonal (mining kept cos^2 ~ 0)
        directions = [directions[0], orthogonalize(directions[1], directions[0])]
    files = [save_direction(session.output_dir / "directions", f"{stem}_{k}", d, {**recipe, "seed": seed, "run": index})
             for k, d in enumerate(directions)]
    session.tracker.log_files(f"mined-{stem}", "direction", files, recipe)
    write_npz(session.output_dir / "mining" / f"{stem}_trace.npz", {k: np.asarray(v) for k, v in result.trace.items()},
              {**provenance, "seed": seed})
    record = {"recipe": recipe, "seed": seed, "directions": [f.name for f in files], "wall_time": result.wall_time,
              "final_objective": result.trace["objective"][-1]}
    save_record(record_path, record, key)
    return directions, record


def curvature(operator: HessianOperator, direction: ParamDict) -> dict[str, float]:
    """``d^T H d`` (the second derivative of the scanned curve at 0) and its normalized Rayleigh quotient."""
    form, squared_norm = hessian_quadratic_form(operator, direction)
    return {"dHd": form, "dHd_over_norm2": form / squared_norm}


def measure_line(session, stem, objective, directions, theta, evaluators, operator, provenance):
    """Full-resolution scan of the mined direction, its labels per split and its curvature."""
    m = session.cfg.mining
    path = session.output_dir / "curves" / f"{stem}.npz"
    result = run_scan(LineScan(stem, objective.span, int(m.scan_points)), theta, directions, evaluators, path,
                      {**provenance, "path": str(path)}, int(session.cfg.evaluation.points_per_batch), False)
    labels = label_curve(result, session.cfg.shapes, path)
    label = labels[str(m.split)]["label"]
    session.tracker.log_scan(result, [])
    record = {"label": label, "labels": {s: v["label"] for s, v in labels.items()},
              "success": objective.target_label is not None and label == objective.target_label,
              "curvature": curvature(operator, directions[0]), "file": str(path)}
    return record, {stem: result}


def measure_ring(session, stem, objective, directions, theta, evaluators, operator, provenance):
    """Lines through theta at ``rays`` angles of the mined plane (success: every one a w-peak) and the surface."""
    m, ppb = session.cfg.mining, int(session.cfg.evaluation.points_per_batch)
    first, second = directions
    split, rays = str(m.split), int(m.rays)
    ray_labels, results = [], {}
    for k in range(rays):
        phi = math.pi * k / rays
        ray = {n: math.cos(phi) * first[n] + math.sin(phi) * second[n] for n in first}
        path = session.output_dir / "curves" / f"{stem}_ray{k:02d}.npz"
        result = run_scan(LineScan(f"{stem}_ray{k:02d}", objective.span, int(m.scan_points)), theta, [ray], evaluators, path,
                          {**provenance, "phi": phi}, ppb, False)
        ray_labels.append(classify_curve(result.axes["lambda"], result.values[f"{split}_loss"],
                                         float(session.cfg.shapes.prominence), float(session.cfg.shapes.flat_tolerance)).label)
    path = session.output_dir / "surfaces" / f"{stem}_plane.npz"
    n = int(m.plane_points) | 1  # odd: theta on the grid
    plane = run_scan(PlaneScan(f"{stem}_plane", objective.span, objective.span, n, n, orthogonalize=False), theta, directions,
                     evaluators, path, {**provenance, "path": str(path)}, ppb, bool(session.cfg.progress))
    results[f"{stem}_plane"] = plane
    interactive, _ = share_surface(plane, session.output_dir)  # figures/<stem>_plane.html, surfaces/<stem>_plane.{vtu,ply,obj}
    session.tracker.log_scan(plane, [], interactive)
    w_peaks = sum(label == "w-peak" for label in ray_labels)
    curvatures = [curvature(operator, d) for d in directions]
    record = {
        "label": "wine-bottle" if w_peaks == rays else f"{w_peaks}/{rays} rays w-peak",
        "ray_labels": ray_labels,
        "w_peak_rays": w_peaks / rays,
        "success": w_peaks == rays,
        "center_is_local_max": center_is_local_maximum(plane.values[f"{split}_loss"]),
        "cosine": float(dot(first, second) / (global_norm(first) * global_norm(second))),
        "curvature": curvatures,
        "curvature_signature": [sign(c["dHd"]) for c in curvatures],
        "file": str(path),
    }
    return record, results


def sign(value: float) -> str:
    return "+" if value > 0 else "-" if value < 0 else "0"


def saddle_surface(session, best, theta, evaluators, operator, miner, context, provenance):
    """The plane of a filter-normalized Gaussian direction (v-basin) and the best mined direction,
    the first made orthogonal to the second; labels of both centre lines and the curvature signature.

    The Gaussian axis spans a third of the mined one: along it the loss rises by orders of magnitude,
    along the mined one it falls by a factor of about two, and on log10 contours over that window
    both show (on equal spans the rise swamps the dip and the saddle looks like a plain valley)."""
    m, split = session.cfg.mining, str(session.cfg.mining.split)
    out = session.output_dir
    mined = ScanResult.load(best["file"])
    mined_direction = load_direction(out / "directions" / mined_direction_file(out, best["run"]), theta[next(iter(theta))].device)[0]
    mined_direction = {n: mined_direction[n].to(theta[n].dtype) for n in theta}
    noise = NoiseDirection("gaussian", miner.normalization, miner.bias_bn, miner.scale)(context, 10_000 + best["run"])
    directions = [orthogonalize(noise, mined_direction), mined_direction]
    span = tuple(float(v) for v in mined.axes["lambda"][[0, -1]])
    n = int(m.plane_points) | 1
    path = out / "surfaces" / "saddle.npz"
    plane = run_scan(PlaneScan("saddle", tuple(v / 3 for v in span), span, n, n, orthogonalize=False), theta, directions, evaluators, path,
                     {**provenance, "path": str(path)}, int(session.cfg.evaluation.points_per_batch), bool(session.cfg.progress))
    grid, axis = plane.values[f"{split}_loss"], plane.axes["x"]
    prominence, tolerance = float(session.cfg.shapes.prominence), float(session.cfg.shapes.flat_tolerance)
    curvatures = [curvature(operator, d) for d in directions]
    record = {
        "labels": {"gaussian": classify_curve(axis, grid[n // 2, :], prominence, tolerance).label,
                   "mined": classify_curve(plane.axes["y"], grid[:, n // 2], prominence, tolerance).label},
        "curvature": curvatures,
        "curvature_signature": [sign(c["dHd"]) for c in curvatures],
        "file": str(path),
    }
    labels = (r"$\alpha$ (Gaussian, v-basin)", r"$\beta$ (mined, w-peak)")
    figures = plot_contour(plane, out / "figures" / "saddle_contour", split, 20, True, axis_labels=labels, equal_aspect=False)
    figures += plot_surface(plane, out / "figures" / "saddle_surface", split, True, axis_labels=("Gaussian", "mined"))
    interactive, shared = share_surface(plane, out, True, axis_labels=("alpha (Gaussian)", "beta (mined)"))
    figures += shared[:1]
    session.tracker.log_scan(plane, figures, interactive)
    return record, figures


def mined_direction_file(out: Path, run: int) -> str:
    return read_record(out / "mining" / f"mined{run:02d}.json")[0]["directions"][0]


def figures_of_runs(session, objective, runs, scans, best) -> list[Path]:
    """The mining traces of all runs, the best run's curve (or wine-bottle surface), and all curves together."""
    out, split = session.output_dir / "figures", str(session.cfg.mining.split)
    traces = [read_npz(session.output_dir / "mining" / f"mined{r['run']:02d}_trace.npz")[0] for r in runs]
    figures = plot_mining_traces(traces, out / "mining_trace", type(objective).__name__)
    stem = f"mined{best['run']:02d}"
    if objective.num_directions == 1:
        target = f", target {objective.target_label}" if objective.target_label else ""
        # log scale: a mined w-peak's train loss moves by a factor of two, far below the test loss
        figures += plot_curves([scans[stem]], out / "mined", log_scale=True,
                               title=f"mined direction (run {best['run']}): {best['label']}{target}")
        figures += plot_curves([scans[f"mined{r['run']:02d}"] for r in runs], out / "mined_runs", log_scale=True,
                               title=f"{len(runs)} mined directions ({split}): " + ", ".join(r["label"] for r in runs))
    else:
        figures += plot_wine_bottle(scans[f"{stem}_plane"], objective.a, out / "wine_bottle", split,
                                    title=f"mined plane (run {best['run']}): {best['label']}")
    return figures


def headline(summary: dict[str, Any]) -> list[str]:
    runs = summary["runs"]
    lines = [f"{len(runs)} runs, target {summary['target_label']}: labels " + ", ".join(r["label"] for r in runs)]
    if "success_rate" in summary:
        lines.append(f"success rate {100 * summary['success_rate']:.0f} % ({summary['successes']}/{len(runs)})")
    curvatures = [r["curvature"] if isinstance(r["curvature"], dict) else r["curvature"][0] for r in runs]
    lines.append("d^T H d of the mined directions: " + ", ".join(f"{c['dHd']:.3g}" for c in curvatures))
    if "saddle" in summary:
        s = summary["saddle"]
        lines.append(f"saddle: Gaussian line {s['labels']['gaussian']}, mined line {s['labels']['mined']}, "
                     f"curvature signature ({', '.join(s['curvature_signature'])})")
    return lines
