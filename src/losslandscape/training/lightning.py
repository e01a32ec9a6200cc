"""Lightning adapters: the training module, the in-memory data module, the epoch checkpointer, the
resume point, the training's progress."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any, Callable, TextIO

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from ..data.splits import DataSplits
from ..files import atomic_path
from ..losses import Loss, as_loss
from ..progress import interactive
from .checkpoints import save_checkpoint

SCHEDULES = ("cosine", "step", "constant")


class SupervisedModule(pl.LightningModule):
    """Trains any ``nn.Module`` on the configured loss (the one every measure reads, default
    cross-entropy); logs train/test loss and the loss's metric (accuracy, R^2, ...)."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        schedule: str = "cosine",
        epochs: int = 1,
        step_size: int = 10,
        gamma: float = 0.1,
        loss: Loss | None = None,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
        self.model = model
        self.criterion = as_loss(loss)
        self.optimizer_factory = optimizer
        self.schedule, self.epochs, self.step_size, self.gamma = schedule, epochs, step_size, gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        x, y = batch
        outputs = self.model(x)
        units = max(self.criterion.units(y), 1)
        # bound to the batch: an R^2 here uses the batch's own target variance (a training curve, not a measure)
        loss, metric = self.criterion.for_split(y).sums(outputs, y) / units
        on_step = split == "train"
        self.log(f"{split}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=units)
        if self.criterion.metric:
            self.log(f"{split}/{self.criterion.metric}", metric.detach(), on_step=False, on_epoch=True, prog_bar=True, batch_size=units)
        return loss

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(self.model.parameters())
        if self.schedule == "constant":
            return optimizer
        if self.schedule == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(self.epochs, 1))
        else:
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=self.step_size, gamma=self.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class SplitsDataModule(pl.LightningDataModule):
    """Serves resident :class:`DataSplits`; the shuffle order is fixed by ``seed``.

    Every epoch draws its order from the one ``generator`` (a base-seed draw by the DataLoader, then
    a permutation), so the order of epoch e depends on the seed and on e; :class:`DataOrderSwitch`
    reseeds that generator between two epochs to give a spawned child its own order. The generator's
    state is part of Lightning's checkpoint, so a resumed run draws the orders it would have drawn.
    """

    def __init__(self, data: DataSplits, batch_size: int, seed: int):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"train.batch_size must be positive, got {batch_size}")
        self.data, self.batch_size, self.seed = data, batch_size, seed
        self.generator = torch.Generator().manual_seed(seed)
        self.restored = False

    def state_dict(self) -> dict[str, Any]:
        return {"data_order": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["data_order"])
        self.restored = True

    def train_dataloader(self) -> DataLoader:
        if not self.restored:  # a fresh fit starts from the seed; a resumed one where its checkpoint left off
            self.generator.manual_seed(self.seed)
        dataset = TensorDataset(self.data.train_x, self.data.train_y)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=True, generator=self.generator)

    def val_dataloader(self) -> DataLoader:
        dataset = TensorDataset(self.data.test_x, self.data.test_y)
        return DataLoader(dataset, batch_size=max(self.batch_size, 1024))


class DataOrderSwitch(pl.Callback):
    """Spawns a child (Fort et al. 2020): after ``epoch`` epochs in the parent's order, the data order
    continues from ``seed``, as if a new run's shuffle started there. A child spawned at epoch 0 gets
    a data module seeded with ``seed`` from the start (the first epoch's loader exists before any hook).

    At that point the weights are compared with the parent's saved checkpoint ``parent`` (if it
    exists) and replaced by it when they differ, so the child starts exactly from the parent;
    ``record`` says what was found.
    """

    def __init__(self, datamodule: SplitsDataModule, epoch: int, seed: int, parent: Path, parent_key: str):
        self.datamodule, self.epoch, self.seed, self.parent = datamodule, int(epoch), int(seed), Path(parent)
        self.record: dict[str, Any] = {"spawn_epoch": self.epoch, "spawn_data_seed": self.seed, "parent_key": parent_key,
                                       "parent_checkpoint": str(self.parent)}

    def state_dict(self) -> dict[str, Any]:
        return {"record": self.record}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.record = state["record"]

    def on_train_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        # spawned at initialization: the data module already serves the child's order (a resumed run is past it)
        if self.epoch == 0 and trainer.current_epoch == 0:
            self._compare_with_parent(module)

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.current_epoch + 1 == self.epoch:  # the epoch's batches are all drawn: the next order is the child's
            self.datamodule.generator.manual_seed(self.seed)
            self._compare_with_parent(module)

    def _compare_with_parent(self, module: pl.LightningModule) -> None:
        self.record.update(parent_found=self.parent.is_file(), max_abs_difference=None, replaced_by_parent=False)
        if not self.parent.is_file():
            return
        saved = torch.load(self.parent, map_location="cpu", weights_only=True)["state_dict"]
        current = module.model.state_dict()
        difference = max((float((current[n].detach().cpu().double() - saved[n].double()).abs().max()) for n in saved if saved[n].numel()), default=0.0)
        self.record["max_abs_difference"] = difference
        if difference > 0:  # copied in place: the optimizer keeps its references and its state
            module.model.load_state_dict({n: v.to(current[n].device) for n, v in saved.items()})
            self.record["replaced_by_parent"] = True


class EpochCheckpointer(pl.Callback):
    """Saves ``epoch_NNN.pt`` after every ``every`` epochs: the trajectory later measures walk along."""

    def __init__(self, directory: Path, every: int, metadata: dict[str, Any]):
        self.directory, self.every, self.metadata = Path(directory), max(int(every), 1), metadata
        self.history: list[dict[str, float]] = []

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith(("loss_epoch", "accuracy", "r2")) or k == "test/loss"}
        metrics = {k.replace("_epoch", ""): v for k, v in metrics.items()}
        self.history.append({"epoch": epoch, **metrics})
        if epoch % self.every == 0 or epoch == trainer.max_epochs:
            save_checkpoint(self.directory / f"epoch_{epoch:03d}.pt", module.model, {**self.metadata, "epoch": epoch, "metrics": metrics})


class ResumePoint(pl.Callback):
    """Saves the whole training state after every epoch into ``path`` (Lightning's checkpoint: weights,
    optimizer and schedule, loop counters, every callback's and the data module's state, plus the global
    random generators, which draw e.g. dropout masks): a killed run resumed from it (``ckpt_path=``)
    trains on exactly as an uninterrupted one, repeating only the epoch it was killed in.

    Added after every other callback, so what it saves includes their end-of-epoch changes (a spawned
    child's new data order)."""

    def __init__(self, path: Path):
        self.path = Path(path)

    def state_dict(self) -> dict[str, Any]:
        state = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        with atomic_path(self.path) as tmp:  # a kill while saving keeps the previous epoch's resume point
            trainer.save_checkpoint(tmp)


class EpochLines(pl.Callback):
    """One line per training epoch for log files: the epoch, its metrics and its time."""

    def __init__(self, stream: TextIO | None = None):
        self.stream, self.started = stream, time.perf_counter()

    def on_train_epoch_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if not k.endswith(("_step", "_epoch"))}  # k_epoch == k
        shown = ", ".join(f"{k} {v:.4g}" for k, v in sorted(metrics.items()))
        stream = sys.stderr if self.stream is None else self.stream
        print(f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {shown} ({time.perf_counter() - self.started:.1f} s)",
              file=stream, flush=True)


def training_progress(enabled: bool) -> tuple[bool, list[pl.Callback]]:
    """``(enable_progress_bar, callbacks)`` for a Lightning trainer: its live bar on a terminal, epoch lines elsewhere."""
    if not enabled:
        return False, []
    if interactive():  # tqdm's bar, as the scans': Lightning would pick a Rich bar wherever `rich` happens to be installed
        return True, [pl.callbacks.TQDMProgressBar()]
    return False, [EpochLines()]
