"""Directions saved with their recipe and a content hash, reusable across checkpoints and runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..files import save_torch, tensor_dict_hash
from .normalization import ParamDict

FORMAT = "losslandscape-direction/1"


def save_direction(directory: str | Path, name: str, direction: ParamDict, recipe: dict[str, Any]) -> Path:
    """Write ``directory/name-HASH.pt``; the hash names the content, the recipe says how it was made."""
    digest = tensor_dict_hash(direction)
    path = Path(directory) / f"{name}-{digest}.pt"
    tensors = {n: t.detach().cpu() for n, t in direction.items()}
    save_torch(path, {"format": FORMAT, "tensors": tensors, "hash": digest, "recipe": recipe})
    return path


def load_direction(path: str | Path, device: str | torch.device = "cpu") -> tuple[ParamDict, dict[str, Any]]:
    """``(direction, recipe)`` from a file written by :func:`save_direction`, hash verified."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"direction file not found: {path}")
    data = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ValueError(f"{path} is not a losslandscape direction file (expected format {FORMAT!r})")
    if tensor_dict_hash(data["tensors"]) != data["hash"]:
        raise ValueError(f"direction file {path} is corrupt: its content does not match its hash {data['hash']}")
    return {n: t.to(device) for n, t in data["tensors"].items()}, data["recipe"]
