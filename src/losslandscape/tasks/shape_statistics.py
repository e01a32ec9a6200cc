"""Task ``shape_statistics``: how often does a direction type give each curve shape?

The seed paper's first observation is that 1D curves along Gaussian-noise directions are almost
always v-basins. This task scans K directions of the configured type with the configured line
scan, labels every curve, and reports the fraction of each label.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
from hydra.utils import instantiate

from ..errors import ConfigError
from ..landscape.scans import LineScan, run_scan
from ..landscape.shapes import SHAPES, classify_curve
from ..plots.shapes import plot_shape_statistics
from .common import Session, evaluators_for, run_task, summary_head
from .references import Checkpoints, direction_context, scanned_model


def run_shape_statistics(cfg) -> dict[str, Any]:
    return run_task(cfg, _shape_statistics)


def _shape_statistics(session: Session) -> dict[str, Any]:
    cfg, out = session.cfg, session.output_dir
    if "line" not in cfg.scan:
        raise ConfigError("task=shape_statistics scans with scan.line: add `scan=line` (or keep the default scans)")
    task = cfg.task
    count, split = int(task.directions), str(task.split)
    if count < 1:
        raise ConfigError(f"task.directions must be at least 1, got {count}")
    if split not in cfg.evaluation.splits:
        raise ConfigError(f"task.split={split} is not evaluated: evaluation.splits is {list(cfg.evaluation.splits)}")
    scan: LineScan = instantiate(cfg.scan.line)
    direction_maker = instantiate(cfg.direction)
    checkpoints = Checkpoints(session)
    model, theta, checkpoint_path = scanned_model(session, checkpoints)
    evaluators = evaluators_for(session, model, [split])
    context = direction_context(session, checkpoints, theta, evaluators[split].loss)
    provenance = session.provenance(checkpoint=str(checkpoint_path), direction=direction_maker.describe(), bn_mode=cfg.evaluation.bn_mode)

    curves, labels = [], []
    for index in range(count):  # one resumable file per direction: a killed job keeps finished curves
        direction = direction_maker(context, index)
        path = out / "curves" / "shape_statistics" / f"direction{index:03d}.npz"
        result = run_scan(scan, theta, [direction], evaluators, path, {**provenance, "index": index}, int(cfg.evaluation.points_per_batch), progress=False)
        curve = result.values[f"{split}_loss"]
        shape = classify_curve(result.axes["lambda"], curve, float(cfg.shapes.prominence), float(cfg.shapes.flat_tolerance))
        curves.append(curve)
        labels.append(shape.label)
    counts = Counter(labels)
    fractions = {label: counts.get(label, 0) / count for label in SHAPES}
    lambdas = scan.axes()["lambda"]
    figures = plot_shape_statistics(lambdas, np.asarray(curves), labels, fractions, out / "figures" / "shape_statistics",
                                    title=f"{count} {_direction_name(direction_maker.describe())} directions ({split} loss)")
    session.tracker.log_scan_collection("shape_statistics", lambdas, np.asarray(curves), labels, figures)
    return {
        **summary_head(session, "shape_statistics"),
        "checkpoint": str(checkpoint_path),
        "direction": direction_maker.describe(),
        "directions": count,
        "split": split,
        "fractions": fractions,
        "labels": labels,
        "figures": [str(f) for f in figures],
    }


def _direction_name(recipe: dict) -> str:
    if "ratio" in recipe:
        return f"sign-consistent (r = {recipe['ratio']:g}) {recipe['distribution']}"
    return recipe.get("distribution", recipe["type"])
