"""What a finished sweep left on disk, job by job: the dashboard and the report both start here.

A Hydra multirun writes ``<sweep>/<job number>/`` with ``.hydra/overrides.yaml`` (the job's
command-line overrides), ``summary.json`` (its headline numbers, once finished), its result files
and, with ``logger=wandb``, its W&B run under ``wandb/``. The figure gallery is the same shape: one
folder per recipe, ``<experiments_dir>/<recipe>/<dataset>-<model>/``. Only files are read: a
report of a sweep needs neither the data nor the network.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# overrides that say where a job wrote, not what it computed: never a swept key
BOOKKEEPING = ("hydra.", "output_dir=", "cache_dir=", "logger", "progress")


@dataclass
class Job:
    """One job of a sweep (or one recipe of the gallery) as its folder holds it."""

    name: str
    folder: Path
    overrides: dict[str, str]
    summary: dict[str, Any]

    @property
    def finished(self) -> bool:
        return bool(self.summary)

    def wandb_run_file(self) -> Path | None:
        """The job's ``.wandb`` record (offline or online), the newest if it ran more than once."""
        files = sorted((self.folder / "wandb").glob("*run-*/*.wandb"))
        return files[-1] if files else None

    def files(self) -> list[Path]:
        """Every result file of the job, relative paths sorted, W&B's own folder and Hydra's left out."""
        skipped = {"wandb", ".hydra"}
        return sorted(p.relative_to(self.folder) for p in self.folder.rglob("*")
                      if p.is_file() and not skipped & set(p.relative_to(self.folder).parts))


def read_overrides(folder: Path) -> dict[str, str]:
    """``{key: value}`` of the job's command-line overrides, bookkeeping ones left out."""
    path = folder / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    import yaml

    pairs = [str(o).split("=", 1) for o in yaml.safe_load(path.read_text()) or [] if "=" in str(o)]
    return {key.lstrip("+~"): value for key, value in pairs if not f"{key}=".startswith(BOOKKEEPING)}


def read_summary(folder: Path) -> dict[str, Any]:
    path = folder / "summary.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def sweep_jobs(sweep_dir: str | Path) -> list[Job]:
    """The jobs of a multirun directory in job order; an unfinished or failed job has an empty summary."""
    root = Path(sweep_dir)
    folders = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit() and (p / ".hydra").is_dir()] if root.is_dir() else []
    if not folders:
        raise FileNotFoundError(f"{root} holds no Hydra multirun jobs (<job number>/.hydra/): give the sweep's directory, "
                                "e.g. outputs/multirun/<date>/<time>")
    return [Job(p.name, p, read_overrides(p), read_summary(p)) for p in sorted(folders, key=lambda p: int(p.name))]


def gallery_jobs(experiments_dir: str | Path, variant: str) -> list[Job]:
    """The figure recipes' latest results of one scale (``digits-cnn``, ...), sorted by recipe."""
    folders = sorted(Path(experiments_dir).glob(f"*/{variant}/summary.json"))
    if not folders:
        raise FileNotFoundError(f"no finished figure recipe under {experiments_dir}/*/{variant}/summary.json: run "
                                "`python run.py -m 'experiment=glob(fig_*)'` first")
    return [Job(p.parent.parent.name, p.parent, {"experiment": p.parent.parent.name}, read_summary(p.parent)) for p in folders]


def swept_keys(jobs: list[Job]) -> list[str]:
    """The override keys whose values differ between jobs, in the order the command line gave them."""
    keys = [k for job in jobs for k in job.overrides]
    ordered = list(dict.fromkeys(keys))
    return [k for k in ordered if len({job.overrides.get(k) for job in jobs}) > 1]


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"scans/line/center/train_loss": ...}``: the names W&B gives a nested summary."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}/"))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def with_scalar_headlines(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` plus a number for each headline a summary holds as a list: a W&B chart can plot
    ``hessian/top_eigenvalue`` (the largest) against a swept key, not the list ``hessian/top_eigenvalues``."""
    extra = {}
    for key, value in flat.items():
        if key.endswith("top_eigenvalues") and isinstance(value, list) and value:
            extra[key.removesuffix("s")] = max(float(v) for v in value)
    return {**flat, **extra}
