"""Train once, reuse everywhere: checkpoints cached under a hash of the training-relevant config.

Two jobs that start at once on the same key train once: the first takes a file lock, the second
waits on it and then finds the finished checkpoints.

Seeds: ``seed`` fixes everything unless ``train.init_seed`` (initialization, and any other
randomness drawn from the global generator during training, e.g. dropout) or ``train.data_seed``
(the shuffle order of the epochs) says otherwise. ``train.spawn_epoch`` / ``train.spawn_data_seed``
make the run a *child* (Fort et al. 2020): the parent's first ``spawn_epoch`` epochs, then the
child's own data order (see :func:`losslandscape.training.fit.spawn_switch`). Seeds that are null or
equal to ``seed`` are left out of the cache key, so configs written before these keys existed keep
their cached checkpoints. The training itself (Lightning) is :mod:`losslandscape.training.fit`.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ..data.splits import DataSplits
from ..files import as_json, stable_hash, write_json
from ..losses import Loss, as_loss
from ..models.building import build_model, output_size

SEED_KEYS = ("init_seed", "data_seed")
SPAWN_KEYS = ("spawn_epoch", "spawn_data_seed")

log = logging.getLogger(__name__)


def training_config(cfg: DictConfig, data: DataSplits | None = None) -> dict[str, Any]:
    """Everything that changes the trained weights, and nothing else (scan settings are not here):
    with the data, the content hash of its source files when the loader reads files (a file
    regenerated in place then trains anew instead of reusing the old model)."""
    fingerprint = getattr(data, "fingerprint", None)
    return {
        **({"data_files": fingerprint} if fingerprint else {}),
        "dataset": OmegaConf.to_container(cfg.dataset, resolve=True),
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "train": canonical_train(cfg),
        "seed": int(cfg.seed),
        **({"loss": OmegaConf.to_container(cfg.loss, resolve=True)} if cfg.get("loss") is not None else {}),
    }


def canonical_train(cfg: DictConfig) -> dict[str, Any]:
    """``cfg.train`` with the seed keys written once: a seed that is null or equals ``seed`` is dropped
    (it changes nothing), and so are the spawn keys of a run that is not a child. Old configs, null
    seeds and explicit ``init_seed=seed`` therefore share one cache key and one set of checkpoints."""
    train = OmegaConf.to_container(cfg.train, resolve=True)
    for key in SEED_KEYS:
        if train.get(key) is None or int(train[key]) == int(cfg.seed):
            train.pop(key, None)
        else:
            train[key] = int(train[key])
    if train.get("spawn_epoch") is None:
        for key in SPAWN_KEYS:
            train.pop(key, None)
    else:
        for key in SPAWN_KEYS:
            train[key] = int(train[key])
    return train


def check_seeds(cfg: DictConfig) -> None:
    """One clear error for impossible seed or spawn settings, before any training."""
    train = cfg.train
    for key in (*SEED_KEYS, "spawn_data_seed"):
        value = train.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f"train.{key} must be an integer seed or null, got {value!r}")
    spawn = train.get("spawn_epoch")
    if spawn is None:
        if train.get("spawn_data_seed") is not None:
            raise ValueError("train.spawn_data_seed is set but train.spawn_epoch is null; set the epoch the child is spawned at")
        return
    if isinstance(spawn, bool) or not isinstance(spawn, int) or not 0 <= spawn <= int(train.epochs):
        raise ValueError(f"train.spawn_epoch must be an integer in [0, train.epochs={train.epochs}], got {spawn!r}")
    if train.get("spawn_data_seed") is None:
        raise ValueError("train.spawn_epoch is set but train.spawn_data_seed is null; give the child its own data-order seed")


def effective_seeds(cfg: DictConfig) -> dict[str, int]:
    """The initialization and data-order seeds this run trains with (null means ``seed``)."""
    seed = int(cfg.seed)
    return {key: seed if cfg.train.get(key) is None else int(cfg.train[key]) for key in SEED_KEYS}


def parent_config(cfg: DictConfig) -> DictConfig:
    """The run a child is spawned from: the same config without the spawn keys."""
    return OmegaConf.merge(cfg, {"train": {key: None for key in SPAWN_KEYS}})


def run_directory(cfg: DictConfig, data: DataSplits, identity: dict[str, Any] | None = None) -> tuple[Path, str]:
    """Where this config's checkpoints live, and its cache key (of ``identity``, :func:`cache_identity` by
    default). The name carries the seeds that differ from ``seed`` and the spawn (``-init1``, ``-data2``,
    ``-spawn5d3``), only when they are set."""
    key = stable_hash(identity or cache_identity(cfg, data))
    return Path(cfg.cache_dir) / f"{run_prefix(cfg, data)}-{key}", key


def cache_identity(cfg: DictConfig, data: DataSplits) -> dict[str, Any]:
    """What the cache key hashes: the training config, the data by content and the model's definition
    (its structure and parameter shapes): regenerated data or edited model code trains anew."""
    data_content = {"tensors": data.content_hash, "files": getattr(data, "fingerprint", None)}
    return {"config": training_config(cfg), "data": data_content, "model_definition": model_definition(cfg, data)}


def model_definition(cfg: DictConfig, data: DataSplits) -> str:
    """Hash of the configured model's structure (its modules as printed) and parameter names and shapes."""
    with torch.random.fork_rng(devices=[]):  # building draws initial weights: the caller's generator is left as it was
        model = build_model(cfg.model, data.input_shape, output_size(data))
    shapes = [(name, list(p.shape)) for name, p in model.named_parameters()]
    return stable_hash({"modules": repr(model), "parameters": shapes})


def run_prefix(cfg: DictConfig, data: DataSplits) -> str:
    train = canonical_train(cfg)
    model_name = cfg.model._target_.rsplit(".", 1)[-1].lower()
    tags = "".join(f"-{name.removesuffix('_seed')}{train[name]}" for name in SEED_KEYS if name in train)
    if "spawn_epoch" in train:
        tags += f"-spawn{train['spawn_epoch']}d{train['spawn_data_seed']}"
    return f"{model_name}-{data.name}-seed{cfg.seed}{tags}"


def why_not_reused(cfg: DictConfig, data: DataSplits, identity: dict[str, Any]) -> str | None:
    """When finished runs of the same training config exist under other keys: what changed since the
    closest one (the fewest differences) was trained."""
    closest = None
    for identity_file in Path(cfg.cache_dir).glob(f"{run_prefix(cfg, data)}-*/identity.json"):
        try:
            other = json.loads(identity_file.read_text())
        except (OSError, ValueError):
            continue
        if other.get("config") != as_json(identity["config"]) or not (identity_file.parent / "final.pt").is_file():
            continue
        changed = [what for key, what in (("data", "the data's content"), ("model_definition", "the model's definition"))
                   if other.get(key) != as_json(identity[key])]
        if changed and (closest is None or len(changed) < len(closest[0])):
            closest = (changed, identity_file.parent.name)
    return None if closest is None else f"{' and '.join(closest[0])} changed since {closest[1]} was trained"


@dataclass
class TrainedRun:
    """The cached checkpoints of one training config: ``init.pt``, ``epoch_NNN.pt``, ``final.pt``
    (and, while the run is unfinished, ``resume.ckpt``: a killed run continues after its last epoch)."""

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
    check_seeds(cfg)
    config, identity = training_config(cfg, data), cache_identity(cfg, data)  # (the model is built once for it)
    directory, key = run_directory(cfg, data, identity)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(directory) + ".lock"):
        if (directory / "final.pt").is_file():  # written last, so its presence means the run finished
            history = json.loads((directory / "history.json").read_text())
            log.info("reusing trained checkpoints %s", directory)
            return TrainedRun(directory, key, history, reused=True)
        if reason := why_not_reused(cfg, data, identity):
            print(f"== training anew: {reason}")
        directory.mkdir(parents=True, exist_ok=True)
        write_json(directory / "identity.json", identity)
        from .fit import fit_run  # Lightning (seconds to import) only when a run is trained, not when it is reused

        history = fit_run(cfg, config, key, data, directory, device, logger, progress)
        return TrainedRun(directory, key, history, reused=False)


def training_loss(cfg: DictConfig) -> Loss:
    """The configured loss (cross-entropy when the config has no ``loss`` group)."""
    return as_loss(instantiate(cfg.loss) if cfg.get("loss") is not None else None)
