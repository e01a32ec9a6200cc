"""What every task does first: device, data, tracker, trained checkpoints."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf

from ..data.splits import DataSplits
from ..files import package_versions, write_json
from ..training.cache import TrainedRun, train_or_reuse
from ..tracking.wandb_tracker import NullTracker

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    """``auto`` picks the GPU when there is one; an explicit GPU that is absent is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name} asked for a GPU but torch sees none; use device=cpu or device=auto")
    return device


@dataclass
class Session:
    """The resolved pieces a task works with."""

    cfg: DictConfig
    output_dir: Path
    device: torch.device
    data: DataSplits
    tracker: Any

    def provenance(self, **extra: Any) -> dict[str, Any]:
        return {"config": OmegaConf.to_container(self.cfg, resolve=True), "versions": package_versions(), **extra}


def open_session(cfg: DictConfig) -> Session:
    """Validate the config, load the data and start the tracker, in that order (cheap checks first)."""
    device = resolve_device(str(cfg.device))
    output_dir = Path(to_absolute_path(str(cfg.output_dir)))
    output_dir.mkdir(parents=True, exist_ok=True)
    cfg.cache_dir = to_absolute_path(str(cfg.cache_dir))
    torch.manual_seed(int(cfg.seed))
    data = instantiate(cfg.dataset)
    if cfg.logger is None or cfg.logger.get("_target_") is None:
        tracker = NullTracker()
    else:
        config = OmegaConf.to_container(cfg, resolve=True)
        tracker = instantiate(cfg.logger, _partial_=True)(output_dir=str(output_dir), run_config=config)
    return Session(cfg, output_dir, device, data, tracker)


def trained_checkpoints(session: Session) -> TrainedRun:
    """Cached checkpoints for this config (training them if needed), with their curves in the tracker."""
    run = train_or_reuse(
        session.cfg, session.data, session.device, session.tracker.lightning_logger(), bool(session.cfg.progress)
    )
    if run.reused:
        session.tracker.log_history(run.history)
    return run


def run_task(cfg: DictConfig, body) -> dict[str, Any]:
    """Open the session, run ``body``, write ``summary.json`` and close the tracker with the right exit code."""
    session = open_session(cfg)
    try:
        summary = body(session)
        write_json(session.output_dir / "summary.json", summary)
        session.tracker.log_summary(summary)
    except BaseException:
        session.tracker.finish(exit_code=1)
        raise
    session.tracker.finish(exit_code=0)
    print_summary(summary, session.output_dir)
    return summary


def print_summary(summary: dict[str, Any], output_dir: Path) -> None:
    """A few lines a person reads at the end of a run: accuracy, loss at the center, where the files are."""
    def percent(value):
        return "n/a" if value is None else f"{100 * value:.2f} %"

    lines = [f"== {summary['task']}: {summary.get('model', '').rsplit('.', 1)[-1]} on {summary.get('dataset')}"]
    if "train_accuracy" in summary:
        reused = " (reused cached checkpoints)" if summary.get("reused_checkpoints") else ""
        lines.append(f"   accuracy: train {percent(summary['train_accuracy'])}, test {percent(summary['test_accuracy'])}{reused}")
    for name, scan in summary.get("scans", {}).items():
        center = ", ".join(f"{k.replace('_loss', '')} {v:.4f}" for k, v in scan["center"].items() if k.endswith("_loss"))
        lines.append(f"   {name}: loss at the center {center}")
    lines.append(f"   results: {output_dir} (summary.json, curves/, surfaces/, figures/)")
    print("\n".join(lines))
