"""Checkpoint files that rebuild their model without the command that made them.

A checkpoint is a plain dict of tensors, strings and numbers, so it loads with
``torch.load(weights_only=True)``: no pickled code is ever executed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

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
    """A checkpoint this package wrote (its weights and the config that rebuilds its model)."""
    checkpoint = _torch_load(Path(path))
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is not a losslandscape checkpoint (expected format {FORMAT!r}); "
            "train it with `python run.py task=train` or save it with losslandscape.training.save_checkpoint"
        )
    return checkpoint


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """``(state_dict, metadata)`` of a weights file in any common format, never unpickling code:

    a losslandscape checkpoint (metadata: its model and data config), a plain ``state_dict``
    (``.pt``/``.pth``/``.bin``), a Lightning ``.ckpt`` or any dict holding one under ``state_dict`` /
    ``model_state_dict``, a ``.safetensors`` file, or a Hugging Face model directory."""
    path = Path(path)
    if path.is_dir():
        return read_weights(_weights_in_directory(path))
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path)), {"format": "safetensors"}
        except (SafetensorError, OSError) as error:
            raise CheckpointError(f"cannot read safetensors file {path}: {error}") from error
    content = _torch_load(path)
    if isinstance(content, dict) and content.get("format") == FORMAT:
        return content["state_dict"], {key: value for key, value in content.items() if key != "state_dict"}
    if isinstance(content, dict) and "pytorch-lightning_version" in content:
        return content["state_dict"], {"format": "lightning", "epoch": content.get("epoch")}
    for key in ("state_dict", "model_state_dict"):
        if isinstance(content, dict) and isinstance(content.get(key), dict):
            return content[key], {"format": f"dict[{key!r}]"}
    if isinstance(content, dict) and content and all(isinstance(v, torch.Tensor) for v in content.values()):
        return content, {"format": "state_dict"}
    kind = type(content).__name__ if not isinstance(content, dict) else f"dict with keys {sorted(content)[:6]}"
    raise CheckpointError(f"{path} holds a {kind}, not model weights: expected a state_dict, a Lightning .ckpt, "
                          "a losslandscape checkpoint, a .safetensors file or a Hugging Face model directory")


def _weights_in_directory(path: Path) -> Path:
    """The weights file of a Hugging Face model directory (save_pretrained's names)."""
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (path / name).is_file():
            return path / name
    raise CheckpointError(f"{path} is a directory without model.safetensors or pytorch_model.bin (a Hugging Face "
                          "model directory, saved with save_pretrained, has one); sharded checkpoints are not supported")


def _torch_load(path: Path) -> Any:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for corrupt or foreign files
        # not torch's own text: it advises weights_only=False, which would run any code in the file
        raise CheckpointError(
            f"cannot read checkpoint {path} ({type(error).__name__}): it is corrupt or not a tensors-only torch file; "
            "give a state_dict (torch.save(model.state_dict(), path)), a .safetensors file or a checkpoint of "
            "`python run.py task=train` (code in a file is never executed)"
        ) from error


def model_from_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """Rebuild a model from the checkpoint alone: its own model config, input shape and classes."""
    from ..models.building import build_model

    checkpoint = load_checkpoint(path)
    model = build_model(checkpoint["model"], tuple(checkpoint["input_shape"]), checkpoint["num_classes"])
    load_state(model, checkpoint["state_dict"], path)
    return model.to(device).eval()


def load_into_configured_model(
    path: str | Path, model_cfg: Any, input_shape: tuple[int, ...], num_classes: int | None,
    device: str | torch.device = "cpu", prefix: str | None = None,
) -> torch.nn.Module:
    """Build the configured model for this dataset and load the weights file into it, checking both fit."""
    from ..models.building import build_model

    state, metadata = read_weights(path)
    if metadata.get("format") == FORMAT and (
        tuple(metadata["input_shape"]) != tuple(input_shape) or metadata["num_classes"] != num_classes
    ):
        raise CheckpointError(
            f"{path} was trained on inputs {tuple(metadata['input_shape'])} with {metadata['num_classes']} classes "
            f"(dataset {metadata['dataset'].get('_target_')}), but the configured dataset has inputs "
            f"{tuple(input_shape)} with {num_classes} classes; configure the dataset it was trained on"
        )
    model = build_model(model_cfg, tuple(input_shape), num_classes)
    load_state(model, state, path, prefix, trained_with=metadata.get("model", {}).get("_target_"))
    return model.to(device).eval()


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], path: str | Path = "checkpoint",
               prefix: str | None = None, trained_with: str | None = None) -> None:
    """Load ``state`` into ``model``, after stripping (or adding) the one key prefix that makes the
    names fit (Lightning's ``model.``, DataParallel's ``module.``), explaining any mismatch."""
    expected, tied = model.state_dict(), tied_names(model)
    state = fitted_names(set(expected), tied, state, prefix)
    missing = sorted(n for n in set(expected) - set(state) if tied.get(n) not in state)
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(n for n in set(expected) & set(state) if tuple(expected[n].shape) != tuple(state[n].shape))
    if missing or unexpected or reshaped:
        raise CheckpointError(mismatch_message(path, model, state, missing, unexpected, reshaped, expected, trained_with))
    model.load_state_dict(state, strict=False)


def fitted_names(expected: set[str], tied: dict[str, str], state: dict[str, torch.Tensor],
                 prefix: str | None) -> dict[str, torch.Tensor]:
    """``state`` renamed to the model's names ``expected``: with ``prefix`` stripped, or with the one
    prefix (stripped from the file's names or added to them) whose renaming gives every tensor."""
    if prefix:
        return {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}

    def fits(names) -> bool:  # only the model's names, and each of them (or its tied twin) there
        return set(names) <= expected and all(n in names or tied.get(n) in names for n in expected)

    def prefixes(names):
        return sorted({k[: i + 1] for k in names for i, c in enumerate(k) if c == "."})

    if fits(state):
        return state

    stripped = ({k[len(p):]: v for k, v in state.items() if k.startswith(p)} for p in prefixes(state))
    added = ({p + k: v for k, v in state.items()} for p in prefixes(expected))
    candidates = [renamed for renamed in (*stripped, *added) if fits(renamed)]
    return candidates[0] if len(candidates) == 1 else state


def tied_names(model: torch.nn.Module) -> dict[str, str]:
    """State names that alias another tensor of the model (tied embeddings): name -> the first name."""
    first: dict[int, str] = {}
    tied = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            tied[name] = first[id(tensor)]
            tied.setdefault(first[id(tensor)], name)
        else:
            first[id(tensor)] = name
    return tied


def mismatch_message(path, model, state, missing, unexpected, reshaped, expected, trained_with) -> str:
    import difflib

    def closest(name: str) -> str:
        match = difflib.get_close_matches(name, list(state), n=1, cutoff=0.5)
        return f"{name} (closest in file: {match[0]})" if match else name

    origin = f"was trained with model {trained_with} and " if trained_with else ""
    return (
        f"{path} {origin}does not fit {type(model).__name__}: {len(missing)} tensors missing "
        f"{[closest(n) for n in missing[:3]]}, {len(unexpected)} unexpected {unexpected[:3]}, {len(reshaped)} of another "
        f"shape {[(n, tuple(state[n].shape), tuple(expected[n].shape)) for n in reshaped[:3]]}. Configure the model "
        "the weights were saved from (or set checkpoint_prefix to the key prefix to strip)"
    )
