"""Task ``landscape`` (the default): train or reuse the checkpoints, then scan around the final model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from ..directions.normalization import orthogonalize
from ..directions.store import save_direction
from ..files import stable_hash, write_json
from ..landscape.evaluator import Evaluator, parameters_of
from ..landscape.scans import ScanResult, run_scan
from ..plots.landscape import plot_contour, plot_curves, plot_surface
from ..training.checkpoints import load_into_configured_model
from .common import Session, open_session, run_task, trained_checkpoints


def direction_seed(seed: int, index: int) -> int:
    """Seed of the ``index``-th random direction of a run: independent of the training seed's stream."""
    return int(stable_hash({"seed": int(seed), "direction": int(index)}), 16) % (2**31)


def run_landscape(cfg: DictConfig) -> dict[str, Any]:
    return run_task(cfg, _landscape)


def _landscape(session: Session) -> dict[str, Any]:
    cfg, data, out = session.cfg, session.data, session.output_dir
    scans = [instantiate(node) for node in cfg.scan.values()]
    direction_maker = instantiate(cfg.direction)
    run = trained_checkpoints(session)
    checkpoint_path = Path(cfg.checkpoint) if cfg.checkpoint else run.final
    model = load_into_configured_model(checkpoint_path, cfg.model, data.input_shape, data.num_classes, session.device)
    theta = parameters_of(model)
    evaluation = cfg.evaluation
    evaluators = {s: Evaluator(model, *data.split(s), batch_size=evaluation.batch_size) for s in evaluation.splits}

    needed = max((scan.num_directions for scan in scans), default=0)
    directions = [direction_maker(theta, direction_seed(cfg.seed, i)) for i in range(needed)]
    direction_files = [
        save_direction(out / "directions", f"direction{i}", d, {**direction_maker.describe(), "seed": direction_seed(cfg.seed, i)})
        for i, d in enumerate(directions)
    ]
    provenance = session.provenance(
        checkpoint=str(checkpoint_path),
        train_key=run.key,
        directions=[p.name for p in direction_files],
        bn_mode=evaluation.bn_mode,
        split_sizes={s: len(e) for s, e in evaluators.items()},
    )

    results: dict[str, dict[str, Any]] = {}
    for scan in scans:
        scan_directions = directions[: scan.num_directions]
        if scan.kind == "plane" and scan.orthogonalize:
            scan_directions = [scan_directions[0], orthogonalize(scan_directions[1], scan_directions[0])]
        folder = "curves" if scan.kind == "line" else "surfaces"
        path = out / folder / f"{scan.name}.npz"
        result = run_scan(
            scan, theta, scan_directions, evaluators, path, {**provenance, "path": str(path)},
            evaluation.points_per_batch, bool(cfg.progress),
        )
        figures = _plot(result, out / "figures", cfg.task)
        session.tracker.log_scan(result, figures)
        results[scan.name] = {
            "file": str(path),
            "figures": [str(f) for f in figures],
            "center": {key: result.center_value(key) for key in result.values},
        }

    final = run.history[-1] if run.history else {}
    return {
        "task": "landscape",
        "dataset": data.name,
        "model": cfg.model._target_,
        "checkpoint": str(checkpoint_path),
        "reused_checkpoints": run.reused,
        "train_accuracy": final.get("train/accuracy"),
        "test_accuracy": final.get("test/accuracy"),
        "scans": results,
    }


def _plot(result: ScanResult, folder: Path, task_cfg: DictConfig) -> list[Path]:
    log_scale = bool(task_cfg.log_scale)
    if result.kind == "line":
        return plot_curves([result], folder / result.name, log_scale=log_scale)
    split = result.provenance["splits"][0]
    return plot_contour(result, folder / f"{result.name}_contour", split, int(task_cfg.contour_levels), log_scale) + plot_surface(
        result, folder / f"{result.name}_surface", split, log_scale
    )
