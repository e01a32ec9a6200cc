"""Checkpoint references: the models a task measures, named on the command line, parsed in one place.

Forms (:func:`parse_reference`):

- ``init``, ``final``, ``epoch:N``: this config's training run (trained through the cache when a
  reference needs it; ``checkpoint=FILE`` alone trains nothing);
- ``seed:S``: this config trained with seed S, on this run's data split;
- ``init_seed:S``: initialized from seed S, same data order (``train.init_seed=S``);
- ``data_seed:S``: same initialization, data order from seed S (``train.data_seed=S``);
- ``spawn:E:S``: a child of this config's run spawned after epoch E that continues with the data
  order of seed S (``train.spawn_epoch=E train.spawn_data_seed=S``, Fort et al. 2020);
- anything else: a checkpoint file in any supported format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from hydra.utils import to_absolute_path
from omegaconf import OmegaConf

from ..directions.context import DirectionContext
from ..errors import ConfigError
from ..landscape.evaluator import ParamDict, parameters_of
from ..training.cache import TrainedRun, train_or_reuse
from .common import Session, load_model, trained_checkpoints, trajectory_files

FORMS = "init, final, epoch:N, seed:S, init_seed:S, data_seed:S, spawn:E:S or a checkpoint file"

# the numbered forms; "init", "final" and files are the rest
PATTERNS = {"epoch": r"epoch:(\d+)", "seed": r"seed:(\d+)", "init_seed": r"init_seed:(\d+)",
            "data_seed": r"data_seed:(\d+)", "spawn": r"spawn:(\d+):(\d+)"}


@dataclass(frozen=True)
class Reference:
    """A parsed reference: its form and numbers (``spawn:5:3`` is ``("spawn", (5, 3))``), or a file."""

    text: str
    form: str
    numbers: tuple[int, ...] = ()


def parse_reference(ref: Any) -> Reference:
    text = str(ref)
    if text in ("init", "final"):
        return Reference(text, text)
    for form, pattern in PATTERNS.items():
        if match := re.fullmatch(pattern, text):
            return Reference(text, form, tuple(int(g) for g in match.groups()))
    return Reference(text, "file")


def check_reference(ref: Any, cfg: Any) -> None:
    """One clear error for a reference that cannot work, before anything is trained."""
    parsed, epochs = parse_reference(ref), int(cfg.train.epochs)
    if parsed.form == "epoch" and not 1 <= parsed.numbers[0] <= epochs:
        raise ConfigError(f"reference {parsed.text!r}: the run trains epochs 1..{epochs} (train.epochs)")
    if parsed.form == "spawn":
        if parsed.numbers[0] > epochs:
            raise ConfigError(f"reference {parsed.text!r}: a child can be spawned after epoch 0..{epochs} (train.epochs), "
                              f"not {parsed.numbers[0]}")
        if cfg.train.get("spawn_epoch") is not None:
            raise ConfigError(f"reference {parsed.text!r} spawns from this config's run, which is itself a child (train.spawn_epoch is set)")
    if parsed.form == "file" and not Path(to_absolute_path(parsed.text)).is_file():
        raise ConfigError(f"checkpoint reference {parsed.text!r} is not one of: {FORMS} (no such file either)")


@dataclass
class Resolved:
    """One referenced model: its checkpoint file and the initialization of the run it came from (if known)."""

    ref: str
    checkpoint: Path
    init: Path | None


@dataclass
class Checkpoints:
    """Resolves references to checkpoint files, parameters and models (each file loaded once).

    The config's own training runs only when a reference needs it; variants (other seeds, spawned
    children) are trained through the same cache, on this run's data split."""

    session: Session
    trained: TrainedRun | None = None
    _params: dict[str, ParamDict] = field(default_factory=dict)

    @property
    def run(self) -> TrainedRun:
        """This config's trained checkpoints (trained now if the cache has none)."""
        if self.trained is None:
            self.trained = trained_checkpoints(self.session)
        return self.trained

    @property
    def train_key(self) -> str | None:
        """The training cache key, when this config's training was used."""
        return None if self.trained is None else self.trained.key

    def resolve(self, ref: Any) -> Resolved:
        parsed = parse_reference(ref)
        if parsed.form in ("init", "final", "epoch"):
            return Resolved(parsed.text, self._own(parsed), self.run.init)
        if parsed.form == "file":
            path = Path(to_absolute_path(parsed.text))
            if not path.is_file() and not (path / "config.json").is_file():
                raise ConfigError(f"checkpoint reference {parsed.text!r} is neither {FORMS.replace(' or a checkpoint file', '')} "
                                  "nor an existing file")
            return Resolved(parsed.text, path, None)
        run = self.variant(variant_changes(parsed))
        return Resolved(parsed.text, run.final, run.init)

    def path(self, ref: Any) -> Path:
        return self.resolve(ref).checkpoint

    def params(self, ref: Any) -> ParamDict:
        """Parameters of a reference or of a checkpoint path (loaded into the configured model once)."""
        path = ref if isinstance(ref, Path) else self.path(ref)
        if str(path) not in self._params:
            self._params[str(path)] = parameters_of(self.model(path))
        return self._params[str(path)]

    def model(self, ref: Any) -> torch.nn.Module:
        """The configured model with the weights of ``ref`` (a reference or a path; any supported file format)."""
        return load_model(self.session, ref if isinstance(ref, Path) else self.path(ref))

    def trajectory(self) -> list[ParamDict]:
        """The saved training path in order: ``trajectory=GLOB`` (the user's own files, ordered by the
        last number in each name) or this config's ``init`` and epoch checkpoints."""
        if self.session.cfg.get("trajectory"):
            return [parameters_of(load_model(self.session, path)) for path in trajectory_files(str(self.session.cfg.trajectory))]
        return [self.params(path) for path in [self.run.init, *self.run.epochs()]]

    def variant(self, changes: dict[str, Any]) -> TrainedRun:
        """This config with ``changes`` merged in, on this run's data split, trained through the cache."""
        cfg = self.session.cfg
        fixed_data = OmegaConf.to_container(cfg.dataset, resolve=True)  # keep this run's split whatever the seed
        other = OmegaConf.merge(cfg, changes, {"dataset": fixed_data})
        return train_or_reuse(other, self.session.data, self.session.device, None, bool(cfg.progress))

    def _own(self, parsed: Reference) -> Path:
        if parsed.form != "epoch":
            return self.run.init if parsed.form == "init" else self.run.final
        path = self.run.directory / f"epoch_{parsed.numbers[0]:03d}.pt"
        if not path.is_file():
            saved = ", ".join(f"epoch:{int(p.stem[6:])}" for p in self.run.epochs())
            raise ConfigError(f"no checkpoint {parsed.text} in {self.run.directory}; saved: {saved}")
        return path


def variant_changes(parsed: Reference) -> dict[str, Any]:
    """The config changes that train the run a ``seed``, ``init_seed``, ``data_seed`` or ``spawn`` reference names."""
    if parsed.form == "seed":
        return {"seed": parsed.numbers[0]}
    if parsed.form == "spawn":
        return {"train": {"spawn_epoch": parsed.numbers[0], "spawn_data_seed": parsed.numbers[1]}}
    return {"train": {parsed.form: parsed.numbers[0]}}


def direction_context(session: Session, checkpoints: Checkpoints, theta: ParamDict, train_loss) -> DirectionContext:
    return DirectionContext(theta, int(session.cfg.seed), checkpoints.params, checkpoints.trajectory, train_loss)


def scanned_model(session: Session, checkpoints: Checkpoints) -> tuple[torch.nn.Module, ParamDict, Path]:
    """The model every scan is centred on: ``checkpoint=...`` if given (nothing is trained for it),
    else the cached final one."""
    cfg = session.cfg
    path = checkpoints.path(str(cfg.checkpoint)) if cfg.checkpoint else checkpoints.run.final
    model = load_model(session, path)
    return model, parameters_of(model), path
