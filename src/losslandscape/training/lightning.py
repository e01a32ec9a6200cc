"""Lightning adapters: the classifier module, the in-memory data module, the epoch checkpointer."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from ..data.splits import DataSplits
from .checkpoints import save_checkpoint

SCHEDULES = ("cosine", "step", "constant")


class ClassifierModule(pl.LightningModule):
    """Cross-entropy training of any ``nn.Module`` classifier; logs train/test loss and accuracy."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        schedule: str = "cosine",
        epochs: int = 1,
        step_size: int = 10,
        gamma: float = 0.1,
    ):
        super().__init__()
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
        self.model = model
        self.optimizer_factory = optimizer
        self.schedule, self.epochs, self.step_size, self.gamma = schedule, epochs, step_size, gamma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        accuracy = (logits.argmax(dim=1) == y).float().mean()
        on_step = split == "train"
        self.log(f"{split}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(y))
        self.log(f"{split}/accuracy", accuracy, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(y))
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
    """Serves resident :class:`DataSplits`; the shuffle order is fixed by ``seed``."""

    def __init__(self, data: DataSplits, batch_size: int, seed: int):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"train.batch_size must be positive, got {batch_size}")
        self.data, self.batch_size, self.seed = data, batch_size, seed

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        dataset = TensorDataset(self.data.train_x, self.data.train_y)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=True, generator=generator)

    def val_dataloader(self) -> DataLoader:
        dataset = TensorDataset(self.data.test_x, self.data.test_y)
        return DataLoader(dataset, batch_size=max(self.batch_size, 1024))


class EpochCheckpointer(pl.Callback):
    """Saves ``epoch_NNN.pt`` after every ``every`` epochs: the trajectory later measures walk along."""

    def __init__(self, directory: Path, every: int, metadata: dict[str, Any]):
        self.directory, self.every, self.metadata = Path(directory), max(int(every), 1), metadata
        self.history: list[dict[str, float]] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.endswith(("loss_epoch", "accuracy")) or k == "test/loss"}
        metrics = {k.replace("_epoch", ""): v for k, v in metrics.items()}
        self.history.append({"epoch": epoch, **metrics})
        if epoch % self.every == 0 or epoch == trainer.max_epochs:
            save_checkpoint(self.directory / f"epoch_{epoch:03d}.pt", module.model, {**self.metadata, "epoch": epoch, "metrics": metrics})
