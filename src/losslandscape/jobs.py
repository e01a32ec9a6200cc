"""A job's output directory: found again after a crash or kill, held by one process at a time, marked
finished by its summary.

Rerunning the command of a killed job continues that job: its directory (found under the outputs
folder by the config's hash, which does not depend on the directory) holds every finished result,
and the result store (:mod:`losslandscape.store`) reuses them. Rerunning a killed multirun continues
its sweep folder (:func:`continue_unfinished_sweep`): finished jobs are skipped, the killed one
continues. ``resume=false`` starts fresh in a new directory. A job holds ``job.lock`` in its directory
while it runs (an OS lock: released when the process dies, however it dies), so a second job cannot
write into the same directory at once.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from filelock import FileLock, Timeout
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from .errors import UserError
from .files import read_json, stable_hash, write_json
from .store import load_record

log = logging.getLogger(__name__)

# settings that change where or how visibly a job runs, not what it computes
NOT_IN_HASH = ("output_dir", "outputs_root", "resume", "progress", "progress_every_s", "cache_dir")

SWEEP_FINISHED = "sweep_finished.json"  # in a multirun's folder once all its jobs returned

# where Hydra puts runs below the outputs folder (conf/config.yaml): <date>/<time> and multirun/<date>/<time>/<job>
RUN_DIRECTORIES = ("*/*/job.json", "multirun/*/*/*/job.json")


class JobBusy(UserError):
    """Another live process is writing into the job's directory."""


def config_hash(cfg: DictConfig) -> str:
    """Hash of the job's config without the settings that do not change its results (where it writes,
    progress): the same command always has the same hash."""
    config = OmegaConf.to_container(cfg, resolve=True)
    return stable_hash({k: v for k, v in config.items() if k not in NOT_IN_HASH})


def unfinished_directory(outputs: Path, config_hash: str, exclude: Path) -> Path | None:
    """The most recent directory under ``outputs`` where a job of this config started and did not finish."""
    found = []
    for pattern in RUN_DIRECTORIES:
        for marker in outputs.glob(pattern):
            directory = marker.parent
            if directory.resolve() == exclude.resolve():
                continue
            try:
                job = read_json(marker)
            except (OSError, ValueError):
                continue
            if job.get("config_hash") == config_hash and not (directory / "summary.json").is_file():
                found.append((marker.stat().st_mtime, directory))
    return max(found)[1] if found else None


def resume_directory(cfg: DictConfig, config_hash: str, output_dir: Path) -> Path:
    """``output_dir``, or the unfinished run of the same config when the command did not choose a directory.

    Only a job whose directory Hydra stamped with the time is redirected: ``output_dir=``,
    ``hydra.run.dir=`` or ``hydra.sweep.dir=`` on the command line say where to write."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import to_absolute_path

    if not cfg.resume or not HydraConfig.initialized():
        return output_dir
    hydra = HydraConfig.get()
    chosen = [o for o in [*hydra.overrides.task, *hydra.overrides.hydra]
              if o.split("=", 1)[0].lstrip("+~") in ("output_dir", "hydra.run.dir", "hydra.sweep.dir")]
    if chosen:
        return output_dir
    found = unfinished_directory(Path(to_absolute_path(str(cfg.outputs_root))), config_hash, output_dir)
    if found is None:
        return output_dir
    print(f"== continuing the unfinished run of this config in {found} (resume=false starts a fresh one)")
    return found


@contextmanager
def held(output_dir: Path, config_hash: str) -> Iterator[None]:
    """Hold ``output_dir`` for this process while the block runs, after marking it with this job's hash."""
    output_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(output_dir / "job.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = _holder(output_dir / "job.json")
        raise JobBusy(f"another job{holder} is writing into {output_dir}; wait for it to finish, or give this one "
                      "another directory (output_dir=... or resume=false)") from None
    marker = output_dir / "job.json"
    continued = marker.is_file()
    try:
        write_json(marker, {"config_hash": config_hash, "pid": os.getpid(), "started": time.time()})
        yield
    except UserError:  # a mistake in the settings, found before any work: no new run to continue
        if not continued:
            marker.unlink(missing_ok=True)
        raise
    finally:
        lock.release()


def _holder(marker: Path) -> str:
    try:
        return f" (pid {read_json(marker)['pid']})"
    except (OSError, ValueError, KeyError):
        return ""


def finished_summary(output_dir: str | Path, key: str) -> dict[str, Any] | None:
    """The summary of a job that already finished in ``output_dir`` under this key (the config's hash and
    the data's content), else ``None``: a restarted sweep skips such jobs."""
    return load_record(Path(output_dir) / "summary.json", key)


class MarkSweepFinished(Callback):
    """Hydra callback (conf/config.yaml): a multirun whose jobs all returned marks its folder finished,
    so that rerunning its command starts a new sweep instead of continuing this one."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        write_json(Path(config.hydra.sweep.dir) / SWEEP_FINISHED, {"finished": time.time()})


def continue_unfinished_sweep(argv: list[str], outputs_root: str) -> list[str]:
    """``argv`` of a multirun that did not choose its folder, plus ``hydra.sweep.dir=`` of the newest
    unfinished sweep of the same command under the outputs folder, if there is one: a rerun after a
    kill continues that sweep in place (finished jobs are skipped, the killed one continues)."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(argv)
    if not args.multirun:
        return list(argv)
    given = {o.split("=", 1)[0].lstrip("+~"): o.split("=", 1)[-1] for o in args.overrides}
    if {"hydra.sweep.dir", "output_dir"} & set(given) or given.get("resume", "true").lower() in ("false", "0", "no", "off"):
        return list(argv)
    command = [o for o in args.overrides if not o.lstrip("+~").startswith("hydra.")]  # Hydra's own list of them
    found = []
    for saved in Path(given.get("outputs_root", outputs_root)).glob("multirun/*/*/multirun.yaml"):
        if (saved.parent / SWEEP_FINISHED).is_file():
            continue
        try:
            same = list(OmegaConf.load(saved).hydra.overrides.task) == command
        except Exception:  # noqa: BLE001 - not a readable sweep record: not this command's sweep
            continue
        if same:
            found.append((saved.stat().st_mtime, saved.parent))
    if not found:
        return list(argv)
    sweep = max(found)[1].resolve()
    print(f"== continuing the unfinished sweep of this command in {sweep} (resume=false starts a fresh one)")
    return [*argv, f"hydra.sweep.dir={sweep}"]
