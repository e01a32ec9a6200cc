"""Build any model from its config: the built-in architectures and the user's own ``nn.Module``.

A built-in model takes ``(input_shape, num_classes, **hyperparameters)``; a user's class or
factory (``model=custom model._target_=my_models.TinyNet``) gets those two arguments only when its
signature asks for them, so ``TinyNet(width=64)`` works as it is written.
"""

from __future__ import annotations

import inspect
from math import prod
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..data.splits import DataSplits
from ..errors import UserError


class ModelError(UserError):
    """A model config that does not import, does not build, or does not give an ``nn.Module``."""


def output_size(data: DataSplits) -> int:
    """Outputs a model needs for this data: the classes, else one per target value (regression)."""
    if getattr(data, "num_classes", None):
        return int(data.num_classes)
    return max(1, prod(tuple(data.train_y.shape[1:])))


def build_model(model_cfg: Any, input_shape: tuple[int, ...], num_classes: int | None) -> torch.nn.Module:
    """The configured model, with ``input_shape`` and ``num_classes`` passed where its constructor takes them."""
    config = OmegaConf.to_container(model_cfg, resolve=True) if isinstance(model_cfg, DictConfig) else dict(model_cfg)
    target = config.get("_target_")
    if not target or target == "???":
        raise ModelError("model._target_ is not set: give the importable class or function that builds your model, "
                         "e.g. model=custom model._target_=my_models.TinyNet")
    factory = locate(target)
    accepted = accepted_arguments(factory)
    extra = {name: value for name, value in (("input_shape", tuple(input_shape)), ("num_classes", num_classes))
             if name not in config and (name in accepted or "**" in accepted)}
    try:
        model = instantiate(config, **extra)
    except Exception as error:  # the user's constructor: one line saying which call failed
        cause = error.__cause__ or error
        raise ModelError(f"model._target_={target} could not be built with {sorted(set(config) - {'_target_'} | set(extra))}: "
                         f"{type(cause).__name__}: {cause}") from error
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"model._target_={target} returned {type(model).__name__}, not a torch.nn.Module")
    if not any(True for _ in model.parameters()):
        raise ModelError(f"model._target_={target} built a module without parameters: there is no landscape to measure")
    return model


def locate(target: str):
    """The object ``target`` names, or one clear error (module not found, attribute missing)."""
    from hydra._internal.utils import _locate

    try:
        return _locate(target)
    except Exception as error:
        raise ModelError(f"model._target_={target} does not import: {error}. A file of your own is importable from the "
                         "directory you launch in (or add its folder to PYTHONPATH)") from error


def accepted_arguments(factory) -> set[str]:
    """Names the callable takes as keywords, ``**`` when it takes any."""
    try:
        parameters = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {"**" if p.kind is inspect.Parameter.VAR_KEYWORD else p.name for p in parameters}
