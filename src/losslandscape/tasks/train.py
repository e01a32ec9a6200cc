"""Task ``train``: train (or find in the cache) the checkpoints of this config and report them."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from .common import Session, run_task, summary_head, trained_checkpoints


def run_train(cfg: DictConfig) -> dict[str, Any]:
    return run_task(cfg, _train)


def _train(session: Session) -> dict[str, Any]:
    run = trained_checkpoints(session)
    final = run.history[-1] if run.history else {}
    return {
        **summary_head(session, "train"),
        "checkpoint_dir": str(run.directory),
        "train_key": run.key,
        "checkpoints": [str(p) for p in [run.init, *run.epochs(), run.final]],
        "reused_checkpoints": run.reused,
        "train_accuracy": final.get("train/accuracy"),
        "test_accuracy": final.get("test/accuracy"),
        "history": run.history,
    }
