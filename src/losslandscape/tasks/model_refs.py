"""Models other than the scanned one, by reference, and scans that are not computed twice.

:class:`ModelRefs` adds three forms to the references of :class:`~.common.Checkpoints` (``init``,
``final``, ``epoch:N``, ``seed:S``, a file path), each the final model of this config trained
through the checkpoint cache with one training seed changed, on this run's data split:

- ``init_seed:S``: initialized from seed S, same data order (``train.init_seed=S``);
- ``data_seed:S``: same initialization, data order from seed S (``train.data_seed=S``);
- ``spawn:E:S``: a child of this config's run spawned after epoch E that continues with the data
  order of seed S (``train.spawn_epoch=E train.spawn_data_seed=S``, Fort et al. 2020).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path
from omegaconf import OmegaConf

from ..errors import ConfigError
from ..landscape.evaluator import ParamDict, parameters_of
from ..landscape.scans import ScanResult, run_scan, scan_fingerprint
from ..training.cache import TrainedRun, train_or_reuse
from .common import Checkpoints, Session, load_model

FORMS = "init, final, epoch:N, seed:S, init_seed:S, data_seed:S, spawn:E:S or a checkpoint file"


@dataclass
class Resolved:
    """One referenced model: its checkpoint file and the initialization of the run it came from (if known)."""

    ref: str
    checkpoint: Path
    init: Path | None


@dataclass
class ModelRefs:
    session: Session
    checkpoints: Checkpoints
    _params: dict[str, ParamDict] = field(default_factory=dict)

    @staticmethod
    def check(ref: str, cfg: Any) -> None:
        """One clear error for a reference that cannot work, before anything is trained."""
        ref, epochs = str(ref), int(cfg.train.epochs)
        if ref in ("init", "final") or re.fullmatch(r"(seed|init_seed|data_seed):\d+", ref):
            return
        if match := re.fullmatch(r"epoch:(\d+)", ref):
            if not 1 <= int(match[1]) <= epochs:
                raise ConfigError(f"reference {ref!r}: the run trains epochs 1..{epochs} (train.epochs)")
            return
        if match := re.fullmatch(r"spawn:(\d+):(\d+)", ref):
            if int(match[1]) > epochs:
                raise ConfigError(f"reference {ref!r}: a child can be spawned after epoch 0..{epochs} (train.epochs), not {match[1]}")
            if cfg.train.get("spawn_epoch") is not None:
                raise ConfigError(f"reference {ref!r} spawns from this config's run, which is itself a child (train.spawn_epoch is set)")
            return
        if not Path(to_absolute_path(ref)).is_file():
            raise ConfigError(f"checkpoint reference {ref!r} is not one of: {FORMS} (no such file either)")

    def resolve(self, ref: str) -> Resolved:
        ref = str(ref)
        if run := self._variant_run(ref):
            return Resolved(ref, run.final, run.init)
        if match := re.fullmatch(r"seed:(\d+)", ref):
            run = self.variant({"seed": int(match[1])})
            return Resolved(ref, run.final, run.init)
        path = self.checkpoints.path(ref)
        own = ref in ("init", "final") or ref.startswith("epoch:")
        return Resolved(ref, path, self.checkpoints.run.init if own else None)

    def params(self, path: Path) -> ParamDict:
        """Parameters of a checkpoint file, loaded into the configured model (cached by path)."""
        key = str(path)
        if key not in self._params:
            self._params[key] = parameters_of(self.model(path))
        return self._params[key]

    def model(self, path: Path):
        return load_model(self.session, path)

    def _variant_run(self, ref: str) -> TrainedRun | None:
        if match := re.fullmatch(r"(init_seed|data_seed):(\d+)", ref):
            return self.variant({"train": {match[1]: int(match[2])}})
        if match := re.fullmatch(r"spawn:(\d+):(\d+)", ref):
            return self.variant({"train": {"spawn_epoch": int(match[1]), "spawn_data_seed": int(match[2])}})
        return None

    def variant(self, changes: dict[str, Any]) -> TrainedRun:
        """This config with ``changes`` merged in, on this run's data split, trained through the cache."""
        cfg = self.session.cfg
        fixed_data = OmegaConf.to_container(cfg.dataset, resolve=True)  # keep this run's split whatever the seed
        other = OmegaConf.merge(cfg, changes, {"dataset": fixed_data})
        return train_or_reuse(other, self.session.data, self.session.device, None, bool(cfg.progress))


def scan_once(scan, theta: ParamDict, directions: list[ParamDict], evaluators: dict, path: Path,
              provenance: dict[str, Any], points_per_batch: int = 1, progress: bool = False) -> ScanResult:
    """A finished scan file with the same fingerprint (scan, theta, directions, splits) is read back,
    anything else is (re)computed with the resumable :func:`run_scan`: a killed task restarted with
    the same config recomputes only the curves it had not finished."""
    path = Path(path)
    if path.is_file():
        done = ScanResult.load(path)
        if done.provenance.get("fingerprint") == scan_fingerprint(scan, theta, directions, evaluators):
            return done
    return run_scan(scan, theta, directions, evaluators, path, provenance, points_per_batch, progress)
