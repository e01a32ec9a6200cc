"""Train once, reuse everywhere: checkpoints cached under a hash of the training-relevant config.

Two jobs that start at once on the same key train once: the first takes a file lock, the second
waits on it and then finds the finished checkpoints.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..data.splits import DataSplits
from ..files import stable_hash, write_json
from .checkpoints import save_checkpoint
from .lightning import ClassifierModule, EpochCheckpointer, SplitsDataModule

log = logging.getLogger(__name__)


def training_config(cfg: DictConfig) -> dict[str, Any]:
    """Everything that changes the trained weights, and nothing else (scan settings are not here)."""
    return {
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "train": OmegaConf.to_container(cfg.train, resolve=True),
        "seed": int(cfg.seed),
    }


@dataclass
class TrainedRun:
    """The cached checkpoints of one training config: ``init.pt``, ``epoch_NNN.pt``, ``final.pt``."""

    directory: Path
    key: str
    history: list[dict[str, float]]
    reused: bool

    @property
    def final(self) -> Path:
        return self.directory / "final.pt"

    @property
    def init(self) -> Path:
        return self.directory / "init.pt"

    def epochs(self) -> list[Path]:
        return sorted(self.directory.glob("epoch_*.pt"))


def train_or_reuse(
    cfg: DictConfig, data: DataSplits, device: torch.device, logger: Any = None, progress: bool = True
) -> TrainedRun:
    """Return the cached checkpoints of this config, training them first if no finished run exists."""
    config = training_config(cfg)
    key = stable_hash(config)
    model_name = cfg.model._target_.rsplit(".", 1)[-1].lower()
    directory = Path(cfg.cache_dir) / f"{model_name}-{data.name}-seed{cfg.seed}-{key}"
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory) + ".lock"):
        if (directory / "final.pt").is_file():  # written last, so its presence means the run finished
            history = json.loads((directory / "history.json").read_text())
            log.info("reusing trained checkpoints %s", directory)
            return TrainedRun(directory, key, history, reused=True)
        history = _train(cfg, config, key, data, directory, device, logger, progress)
        return TrainedRun(directory, key, history, reused=False)


def _train(cfg, config, key, data, directory, device, logger, progress) -> list[dict[str, float]]:
    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model = instantiate(cfg.model, input_shape=data.input_shape, num_classes=data.num_classes)
    metadata = {
        "model": config["model"],
        "dataset": config["dataset"],
        "train": config["train"],
        "seed": config["seed"],
        "train_key": key,
        "input_shape": list(data.input_shape),
        "num_classes": data.num_classes,
    }
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "config.json", config)
    save_checkpoint(directory / "init.pt", model, {**metadata, "epoch": 0})
    train = cfg.train
    module = ClassifierModule(
        model, instantiate(train.optimizer), train.schedule, train.epochs, train.step_size, train.gamma
    )
    checkpointer = EpochCheckpointer(directory, train.checkpoint_every, metadata)
    trainer = pl.Trainer(
        max_epochs=int(train.epochs),
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        deterministic=True,
        logger=logger if logger is not None else False,
        enable_checkpointing=False,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=int(train.log_every_n_steps),
    )
    torch.set_float32_matmul_precision("highest")
    trainer.callbacks.append(checkpointer)
    trainer.fit(module, datamodule=SplitsDataModule(data, int(train.batch_size), int(cfg.seed)))
    write_json(directory / "history.json", checkpointer.history)
    save_checkpoint(directory / "final.pt", model, {**metadata, "epoch": int(train.epochs), "metrics": checkpointer.history[-1] if checkpointer.history else {}})
    return checkpointer.history
