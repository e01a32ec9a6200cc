"""Training one run with Lightning: the checkpoints ``init.pt``, ``epoch_NNN.pt`` and ``final.pt`` of a
cache directory, resumable after a kill from ``resume.ckpt`` (the last finished epoch's whole state)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ..data.splits import DataSplits
from ..files import write_json
from ..models.building import build_model, output_size
from .cache import effective_seeds, parent_config, run_directory, training_loss
from .checkpoints import save_checkpoint
from .lightning import DataOrderSwitch, EpochCheckpointer, ResumePoint, SplitsDataModule, SupervisedModule, training_progress

RESUME_FILE = "resume.ckpt"  # the last finished epoch's whole training state, while a run is unfinished

log = logging.getLogger(__name__)


def fit_run(cfg: DictConfig, config: dict[str, Any], key: str, data: DataSplits, directory: Path, device: torch.device,
            logger: Any, progress: bool) -> list[dict[str, float]]:
    """Train this config into ``directory`` (continuing a killed run from its resume point); the epochs' history."""
    seeds = effective_seeds(cfg)
    pl.seed_everything(seeds["init_seed"], workers=True, verbose=False)
    model = build_model(cfg.model, data.input_shape, output_size(data))
    metadata = {
        "model": config["model"],
        "dataset": config["dataset"],
        "train": config["train"],
        "seed": config["seed"],
        "train_key": key,
        "input_shape": list(data.input_shape),
        "num_classes": output_size(data),
    }
    directory.mkdir(parents=True, exist_ok=True)
    write_json(directory / "config.json", config)
    resume = resume_point(directory)
    if resume is None:
        save_checkpoint(directory / "init.pt", model, {**metadata, "epoch": 0})
    train = cfg.train
    module = SupervisedModule(
        model, instantiate(train.optimizer), train.schedule, train.epochs, train.step_size, train.gamma, training_loss(cfg)
    )
    checkpointer = EpochCheckpointer(directory, train.checkpoint_every, metadata)
    show_bar, progress_callbacks = training_progress(progress)  # a live bar on a terminal, a line per epoch in a log
    trainer = pl.Trainer(
        max_epochs=int(train.epochs),
        accelerator="gpu" if device.type == "cuda" else "cpu",
        devices=[device.index or 0] if device.type == "cuda" else 1,
        deterministic=True,
        logger=logger if logger is not None else False,
        enable_checkpointing=False,
        enable_progress_bar=show_bar,
        callbacks=progress_callbacks,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=int(train.log_every_n_steps),
    )
    torch.set_float32_matmul_precision("highest")
    trainer.callbacks.append(checkpointer)
    spawned_at_init = train.get("spawn_epoch") == 0
    datamodule = SplitsDataModule(data, int(train.batch_size), int(train.spawn_data_seed) if spawned_at_init else seeds["data_seed"])
    switch = spawn_switch(cfg, data, datamodule)
    if switch is not None:
        trainer.callbacks.append(switch)
    trainer.callbacks.append(ResumePoint(directory / RESUME_FILE))  # last: it saves the others' end-of-epoch state
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    finally:
        # Lightning leaves deterministic algorithms on after fit, and some CPU kernels round otherwise then:
        # what a job measures must not depend on whether it trained in the same process
        torch.use_deterministic_algorithms(deterministic)
    if switch is not None:
        write_json(directory / "spawn.json", switch.record)
    write_json(directory / "history.json", checkpointer.history)
    save_checkpoint(directory / "final.pt", model, {**metadata, "epoch": int(train.epochs), "metrics": checkpointer.history[-1] if checkpointer.history else {}})
    (directory / RESUME_FILE).unlink(missing_ok=True)  # final.pt says finished; the optimizer state is not kept
    return checkpointer.history


def resume_point(directory: Path) -> Path | None:
    """The resume point a killed run of this directory left, announced in one line; ``None`` when there is
    none (or it cannot be read: then the run starts over, with a warning)."""
    path = directory / RESUME_FILE
    if not path.is_file():
        return None
    try:
        # memory-mapped: the epoch is read (and the file's structure checked) without loading the tensors
        # that Lightning is about to load
        epoch = int(torch.load(path, map_location="cpu", weights_only=True, mmap=True)["epoch"]) + 1
    except Exception as error:  # noqa: BLE001 - any unreadable file means the same: start over
        log.warning("cannot read the resume point %s (%s): training %s from the start", path, error, directory.name)
        path.unlink(missing_ok=True)
        return None
    print(f"== continuing the training of {directory.name} after epoch {epoch} (the killed run's {RESUME_FILE})")
    return path


def spawn_switch(cfg: DictConfig, data: DataSplits, datamodule: SplitsDataModule) -> DataOrderSwitch | None:
    """How a child is trained (Fort et al. 2020): it re-runs its parent's first ``spawn_epoch`` epochs
    exactly (same initialization, data order, optimizer and schedule, so the optimizer state at the
    spawn point is the parent's, momentum included; checkpoints do not store optimizer states), then
    continues with its own data order from ``spawn_data_seed``. At the spawn point the weights are
    compared with the parent's saved checkpoint, when the parent has one, and replaced by it if they
    differ (non-deterministic kernels): the child then starts from the parent's checkpoint exactly.
    """
    spawn = cfg.train.get("spawn_epoch")
    if spawn is None:
        return None
    parent_dir, parent_key = run_directory(parent_config(cfg), data)
    saved = parent_dir / ("init.pt" if int(spawn) == 0 else f"epoch_{int(spawn):03d}.pt")
    return DataOrderSwitch(datamodule, int(spawn), int(cfg.train.spawn_data_seed), saved, parent_key)
