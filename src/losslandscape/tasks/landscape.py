"""Task ``landscape`` (the default): train or reuse the checkpoints, then scan around the final model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..directions.checkpoints import TrajectoryPCA, difference
from ..directions.normalization import dot, orthogonalize
from ..directions.store import save_direction
from ..landscape.evaluator import ParamDict
from ..landscape.scans import ScanResult, run_scan
from ..landscape.shapes import classify_curve
from ..plots.landscape import plot_contour, plot_curves, plot_ring, plot_surface
from .common import Checkpoints, Session, direction_context, evaluators_for, run_task, trained_checkpoints, scanned_model


def run_landscape(cfg: DictConfig) -> dict[str, Any]:
    return run_task(cfg, _landscape)


def _landscape(session: Session) -> dict[str, Any]:
    cfg, out = session.cfg, session.output_dir
    scans = [instantiate(node) for node in cfg.scan.values()]
    direction_maker = instantiate(cfg.direction)
    run = trained_checkpoints(session)
    checkpoints = Checkpoints(session, run)
    model, theta, checkpoint_path = scanned_model(session, checkpoints)
    evaluators = evaluators_for(session, model)
    context = direction_context(session, checkpoints, theta, evaluators_for_loss(evaluators))

    origin = getattr(direction_maker, "origin", None)
    center = theta if origin is None else checkpoints.params(origin)
    needed = max((s.num_directions for s in scans if s.kind != "interpolation"), default=0)
    directions = [direction_maker(context, i) for i in range(needed)]
    recipe = direction_maker.describe()
    direction_files = [
        save_direction(out / "directions", f"direction{i}", d, {**recipe, "seed": context.seed_for(i)})
        for i, d in enumerate(directions)
    ]
    provenance = session.provenance(
        checkpoint=str(checkpoint_path),
        train_key=run.key,
        direction=recipe,
        directions=[p.name for p in direction_files],
        bn_mode=cfg.evaluation.bn_mode,
        split_sizes={s: len(e) for s, e in evaluators.items()},
    )

    results = {}
    for scan in scans:
        scan_center, scan_directions = center, directions[: scan.num_directions]
        if scan.kind == "interpolation":
            scan_center = checkpoints.params(scan.start)
            scan_directions = [difference(checkpoints.params(scan.end), scan_center)]
        elif scan.num_directions == 2 and scan.orthogonalize:
            scan_directions = [scan_directions[0], orthogonalize(scan_directions[1], scan_directions[0])]
        folder = "curves" if scan.num_directions == 1 else "surfaces"
        path = out / folder / f"{scan.name}.npz"
        result = run_scan(scan, scan_center, scan_directions, evaluators, path, {**provenance, "path": str(path)},
                          int(cfg.evaluation.points_per_batch), bool(cfg.progress))
        entry = {"file": str(path), "center": {key: result.center_value(key) for key in result.values}}
        if scan.num_directions == 1:
            entry["shape"] = label_curve(result, cfg.shapes, path)
        path_xy = trajectory_path(checkpoints, scan_center, scan_directions) if isinstance(direction_maker, TrajectoryPCA) and scan.kind == "plane" else None
        figures = plot_result(result, out / "figures", cfg.task, entry.get("shape"), path_xy)
        entry["figures"] = [str(f) for f in figures]
        session.tracker.log_scan(result, figures)
        results[scan.name] = entry

    final = run.history[-1] if run.history else {}
    return {
        "task": "landscape",
        "dataset": session.data.name,
        "model": cfg.model._target_,
        "checkpoint": str(checkpoint_path),
        "reused_checkpoints": run.reused,
        "train_accuracy": final.get("train/accuracy"),
        "test_accuracy": final.get("test/accuracy"),
        "direction": recipe,
        "scans": results,
    }


def evaluators_for_loss(evaluators):
    """The differentiable loss a direction may need (the gradient): the training split if evaluated."""
    evaluator = evaluators.get("train") or next(iter(evaluators.values()))
    return evaluator.loss


def label_curve(result: ScanResult, shapes_cfg: DictConfig, path: Path) -> dict[str, Any]:
    """Shape label of every loss curve of a 1D scan, stored back into the scan's file."""
    labels = {}
    for key in [k for k in result.values if k.endswith("_loss")]:
        shape = classify_curve(result.axes["lambda"], result.values[key], float(shapes_cfg.prominence), float(shapes_cfg.flat_tolerance))
        labels[key.removesuffix("_loss")] = shape.to_dict()
    result.provenance["shape"] = labels
    result.save(path)
    return labels


def trajectory_path(checkpoints: Checkpoints, center: ParamDict, directions: list[ParamDict]) -> np.ndarray:
    """Coordinates of every saved checkpoint projected onto the (orthogonal) scan directions."""
    points = []
    for params in checkpoints.trajectory():
        offset = difference(params, center)
        points.append([float(dot(offset, d) / dot(d, d)) for d in directions])
    return np.asarray(points)


def plot_result(result: ScanResult, folder: Path, task_cfg: DictConfig, shape: dict | None, path_xy: np.ndarray | None) -> list[Path]:
    log_scale = bool(task_cfg.log_scale)
    split = result.provenance["splits"][0]
    if result.kind in ("line", "interpolation"):
        title = result.name if not shape else f"{result.name}: " + ", ".join(f"{s} {v['label']}" for s, v in shape.items())
        xlabel = "t" if result.kind == "interpolation" else r"$\lambda$"
        return plot_curves([result], folder / result.name, log_scale=log_scale, title=title, xlabel=xlabel)
    if result.kind == "ring":
        return plot_ring(result, folder / result.name, split, log_scale)
    return plot_contour(result, folder / f"{result.name}_contour", split, int(task_cfg.contour_levels), log_scale, path_xy) + plot_surface(
        result, folder / f"{result.name}_surface", split, log_scale
    )
