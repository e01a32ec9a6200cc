"""Task ``report``: one self-contained HTML page of a finished sweep or of the figure gallery.

Reads only the jobs' files (summaries, curves, surfaces): nothing is trained or recomputed. The
page goes next to what it shows (``<sweep>/report.html``, ``<experiments_dir>/report-<variant>.html``)
so its links to the files stay relative.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from ..errors import ConfigError
from ..files import write_json
from ..plots.report import write_report
from ..tracking.sweep_jobs import gallery_jobs, sweep_jobs
from ..validation import validate_config


def chosen_sweep(sweep_dir: str | None, multirun_dir: str) -> Path:
    """``sweep_dir``, or the newest sweep under ``multirun_dir`` (``<date>/<time>`` or a recipe's own
    folder such as ``phase_sweep/digits-cnn``): the one whose ``multirun.yaml`` Hydra wrote last."""
    if sweep_dir is not None:
        return Path(to_absolute_path(str(sweep_dir)))
    root = Path(to_absolute_path(str(multirun_dir)))
    sweeps = [p.parent for p in sorted(root.glob("*/*/multirun.yaml"), key=lambda p: p.stat().st_mtime)]
    if not sweeps:
        raise ConfigError(f"no sweep under {root}/<date>/<time>: run one with `python run.py -m ...` or give task.sweep_dir")
    return sweeps[-1]


def run_report(cfg: DictConfig) -> dict[str, Any]:
    validate_config(cfg)
    task = cfg.task
    if task.source == "gallery":
        root = Path(to_absolute_path(str(task.experiments_dir)))
        jobs, page, title = gallery_jobs(root, str(task.variant)), root / f"report-{task.variant}.html", f"Figure gallery: {task.variant}"
    else:
        sweep = chosen_sweep(task.sweep_dir, task.multirun_dir)
        jobs, page, title = sweep_jobs(sweep), sweep / "report.html", f"Sweep {sweep.parent.name}/{sweep.name}"
    shown = write_report(jobs, page, str(task.title or title), task.split, gallery=task.source == "gallery")
    summary = {"task": "report", "page": str(page), **shown}
    write_json(Path(to_absolute_path(str(cfg.output_dir))) / "summary.json", summary)
    print(f"== report: {shown['rows']} jobs, {len(shown['curves'])} curve plots, {len(shown['surfaces'])} surfaces\n   page: {page}")
    return summary
