"""Task ``landscape`` (the default): train or reuse the checkpoints, then scan around the final model."""

from __future__ import annotations

import copy
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..directions.checkpoints import TrajectoryPCA, difference
from ..directions.normalization import dot, orthogonalize
from ..directions.store import save_direction
from ..landscape.evaluator import ParamDict
from ..files import as_json
from ..landscape.scans import ScanResult
from ..landscape.sharded import run_sharded_scan
from ..landscape.shapes import shape_within_error
from ..plots.exports import share_surface
from ..plots.landscape import plot_contour, plot_curves, plot_ring, plot_surface
from .common import Session, evaluators_for, run_task, measured_at, summary_head
from .references import Checkpoints, direction_context, scanned_model


def run_landscape(cfg: DictConfig) -> dict[str, Any]:
    return run_task(cfg, _landscape)


def _landscape(session: Session) -> dict[str, Any]:
    cfg, out = session.cfg, session.output_dir
    scans = [instantiate(node) for node in cfg.scan.values()]
    direction_maker = instantiate(cfg.direction)
    checkpoints = Checkpoints(session)
    model, theta, checkpoint_path = scanned_model(session, checkpoints)
    evaluators = evaluators_for(session, model)
    context = direction_context(session, checkpoints, theta, evaluators_for_loss(evaluators))

    origin = getattr(direction_maker, "origin", None)
    center = theta if origin is None else checkpoints.params(origin)
    needed = max((directions_needed(s) for s in scans), default=0)
    directions = [direction_maker(context, i) for i in range(needed)]
    recipe = direction_maker.describe()
    direction_files = [
        save_direction(out / "directions", f"direction{i}", d, {**recipe, "seed": context.seed_for(i)})
        for i, d in enumerate(directions)
    ]
    if direction_files:
        session.tracker.log_files("directions", "direction", direction_files, recipe)
    provenance = session.provenance(
        checkpoint=str(checkpoint_path),
        train_key=checkpoints.train_key,
        direction=recipe,
        directions=[p.name for p in direction_files],
        bn_mode=cfg.evaluation.bn_mode,
        split_sizes={s: len(e) for s, e in evaluators.items()},
    )

    entries = {}
    for scan in scans:
        results, shapes = [], {}
        for part, scan_center, scan_directions in placements(scan, center, directions, checkpoints):
            folder = "curves" if scan.num_directions == 1 else "surfaces"
            path = out / folder / f"{part.name}.npz"
            result = run_sharded_scan(part, scan_center, scan_directions, evaluators, path, {**provenance, "path": str(path)},
                                      int(cfg.evaluation.points_per_batch), bool(cfg.progress))
            entries[part.name] = {"file": str(path), "center": {key: result.center_value(key) for key in result.values}}
            if scan.num_directions == 1:
                shapes[part.name] = entries[part.name]["shape"] = label_curve(result, cfg.shapes, path if session.is_main else None)
            results.append(result)
        if not session.is_main:
            continue
        show_path = isinstance(direction_maker, TrajectoryPCA) and scan.kind == "plane"
        path_xy = trajectory_path(checkpoints, center, scan_directions) if show_path else None
        axis_labels = pca_axis_labels(direction_maker, context) if show_path else None
        figures = plot_scan(scan, results, out / "figures", cfg.task, shapes, path_xy, axis_labels)
        interactive = None
        if scan.kind == "plane":  # the surface to rotate (HTML, W&B panel) and to render (ParaView, Blender)
            interactive, shared = share_surface(results[0], out, bool(cfg.task.log_scale), path_xy)
            figures += shared[:1]
            entries[scan.name]["exports"] = [str(f) for f in shared[1:]]
        for result in results:
            entries[result.name]["figures"] = [str(f) for f in figures]
            session.tracker.log_scan(result, figures, interactive)

    return {
        **summary_head(session, "landscape"),
        "checkpoint": str(checkpoint_path),
        "reused_checkpoints": checkpoints.trained.reused if checkpoints.trained else None,
        **measured_at(evaluators, theta, session.loss),
        "loss": session.loss.describe(),
        "direction": recipe,
        "scans": entries,
    }


def evaluators_for_loss(evaluators):
    """The differentiable loss a direction may need (the gradient): the training split if evaluated."""
    evaluator = evaluators.get("train") or next(iter(evaluators.values()))
    return evaluator.loss


def label_curve(result: ScanResult, shapes_cfg: DictConfig, path: Path | None) -> dict[str, Any]:
    """Shape label of every loss curve of a 1D scan, stored back into the scan's file; ``uncertain``
    where the label rests on a decision within the curve's error bars."""
    labels = {}
    for key in [k for k in result.values if k.endswith("_loss")]:
        shape = shape_within_error(result.axes["lambda"], result.values[key], result.errors.get(key, np.full_like(result.values[key], np.nan)),
                                   float(shapes_cfg.prominence), float(shapes_cfg.flat_tolerance))
        labels[key.removesuffix("_loss")] = shape.to_dict()
    changed = result.provenance.get("shape") != as_json(labels)  # a file read back already has them
    result.provenance["shape"] = labels
    if path is not None and changed:
        result.save(path)
    return labels


def trajectory_path(checkpoints: Checkpoints, center: ParamDict, directions: list[ParamDict]) -> np.ndarray:
    """Coordinates of every saved checkpoint projected onto the (orthogonal) scan directions."""
    points = []
    for params in checkpoints.trajectory():
        offset = difference(params, center)
        points.append([float(dot(offset, d) / dot(d, d)) for d in directions])
    return np.asarray(points)


def pca_axis_labels(pca: TrajectoryPCA, context) -> tuple[str, str]:
    """The trajectory-PCA plane's axes with the share of the path's variance each component explains (Li et al. 2018)."""
    explained = pca.explained if pca.explained is not None else pca.components(context, 2)[1]  # kept from making the directions
    return tuple(f"PC {i + 1} ({100 * float(explained[i]):.1f} % of the variance)" for i in range(2))


def plot_scan(scan, results: list[ScanResult], folder: Path, task_cfg: DictConfig, shapes: dict, path_xy,
              axis_labels: tuple[str, str] | None = None) -> list[Path]:
    """The figures of one configured scan: all its curves on one axis, or its surface or rings."""
    log_scale = bool(task_cfg.log_scale)
    split = results[0].provenance["splits"][0]
    if scan.num_directions == 1:
        xlabel = "t" if scan.kind == "interpolation" else r"$\lambda$"
        return plot_curves(results, folder / scan.name, log_scale=log_scale, title=curve_title(scan.name, shapes, split), xlabel=xlabel)
    result = results[0]
    if scan.kind == "ring":
        return plot_ring(result, folder / scan.name, split, log_scale)
    labels = {"axis_labels": axis_labels} if axis_labels else {}
    return plot_contour(result, folder / f"{scan.name}_contour", split, int(task_cfg.contour_levels), log_scale, path_xy, **labels) + plot_surface(
        result, folder / f"{scan.name}_surface", split, log_scale
    )


def curve_title(name: str, shapes: dict[str, dict], split: str) -> str:
    """The title's second line, the measured shapes: ``measured shape: v-basin (train), v-basin (test)``
    for one curve; ``measured shapes (train loss): 3 v-basin, 1 v-side`` for several."""
    if len(shapes) == 1:
        (shape,) = shapes.values()
        return "measured shape: " + ", ".join(f"{v['label']} ({s})" for s, v in shape.items())
    counts = Counter(shape[split]["label"] for shape in shapes.values())
    return f"measured shapes ({split} loss): " + ", ".join(f"{n} {label}" for label, n in counts.most_common())


def directions_needed(scan) -> int:
    """How many configured directions a scan uses (an interpolation brings its own)."""
    if scan.kind == "interpolation":
        return 0
    return scan.curves if scan.num_directions == 1 else scan.num_directions


def placements(scan, center: ParamDict, directions: list[ParamDict], checkpoints: Checkpoints):
    """``(scan, center, directions)`` for every run of ``scan``: one per curve of a line scan."""
    if scan.kind == "interpolation":
        start = checkpoints.params(scan.start)
        return [(scan, start, [difference(checkpoints.params(scan.end), start)])]
    if scan.num_directions == 1:
        if scan.curves == 1:
            return [(scan, center, directions[:1])]
        return [(_renamed(scan, f"{scan.name}{i}"), center, [directions[i]]) for i in range(scan.curves)]
    first, second = directions[:2]
    return [(scan, center, [first, orthogonalize(second, first) if scan.orthogonalize else second])]


def _renamed(scan, name: str):
    part = copy.copy(scan)
    part.name = name
    return part
