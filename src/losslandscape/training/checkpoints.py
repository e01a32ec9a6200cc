"""Checkpoint files that rebuild their model without the command that made them.

A checkpoint is a plain dict of tensors, strings and numbers, so it loads with
``torch.load(weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate

from ..errors import UserError
from ..files import save_torch

FORMAT = "losslandscape-checkpoint/1"


class CheckpointError(UserError):
    """A checkpoint that is missing, unreadable, or does not fit the model it is loaded into."""


def save_checkpoint(path: str | Path, model: torch.nn.Module, metadata: dict[str, Any]) -> None:
    """Save ``model``'s state with ``metadata`` (model and dataset config, input shape, classes, epoch)."""
    state = {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}
    save_torch(path, {"format": FORMAT, "state_dict": state, **metadata})


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        # not torch's own text: it advises weights_only=False, which would run any code in the file
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(error).__name__}): it is corrupt or not a tensors-only torch file; "
            "give a checkpoint written by `python run.py task=train` (code in a file is never executed)"
        ) from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a losslandscape checkpoint (expected format {FORMAT!r}); "
            "train it with `python run.py task=train` or save it with losslandscape.training.save_checkpoint"
        )
    return checkpoint


def model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model from the checkpoint alone: its own model config, input shape and classes."""
    checkpoint = load_checkpoint(path)
    model = instantiate(
        checkpoint["model"], input_shape=tuple(checkpoint["input_shape"]), num_classes=checkpoint["num_classes"]
    )
    load_state(model, checkpoint, path)
    return model.to(device).eval()


def load_into_configured_model(
    path: str | Path, model_cfg: Any, input_shape: tuple[int, ...], num_classes: int, device: str | torch.device = "cpu"
) -> torch.nn.Module:
    """Build the configured model for this dataset and load the checkpoint into it, checking both fit."""
    checkpoint = load_checkpoint(path)
    if tuple(checkpoint["input_shape"]) != tuple(input_shape) or checkpoint["num_classes"] != num_classes:
        raise CheckpointError(
            f"{path} was trained on inputs {tuple(checkpoint['input_shape'])} with {checkpoint['num_classes']} classes "
            f"(dataset {checkpoint['dataset'].get('_target_')}), but the configured dataset has inputs "
            f"{tuple(input_shape)} with {num_classes} classes; configure the dataset it was trained on"
        )
    model = instantiate(model_cfg, input_shape=tuple(input_shape), num_classes=num_classes)
    load_state(model, checkpoint, path)
    return model.to(device).eval()


def load_state(model: torch.nn.Module, checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> None:
    """Load the checkpoint's weights into ``model``, explaining any mismatch of architecture."""
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    found = {name: tuple(t.shape) for name, t in checkpoint["state_dict"].items()}
    if expected != found:
        missing = sorted(set(expected) - set(found))
        unexpected = sorted(set(found) - set(expected))
        reshaped = sorted(n for n in set(expected) & set(found) if expected[n] != found[n])
        raise CheckpointError(
            f"{path} was trained with model {checkpoint['model'].get('_target_')} and does not fit "
            f"{type(model).__name__}: {len(missing)} tensors missing {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]}, {len(reshaped)} of another shape "
            f"{[(n, found[n], expected[n]) for n in reshaped[:3]]}. Configure the model it was trained with."
        )
    model.load_state_dict(checkpoint["state_dict"])
