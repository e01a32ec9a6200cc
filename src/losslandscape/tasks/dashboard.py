"""Task ``dashboard``: the W&B comparison view of a finished sweep, built from its files.

Writes the view's spec to ``<sweep>/dashboard.json``; online (W&B key and server reachable) it
also saves the report and prints its URL. Offline, ``wandb sync`` the runs and publish the spec
with ``python -m losslandscape.tracking.dashboard <sweep>/dashboard.json``. Trains and loads nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from ..files import write_json
from ..tracking.dashboard import dashboard_spec, publish
from ..tracking.sweep_jobs import sweep_jobs
from ..tracking.wandb_tracker import has_wandb_credentials, server_reachable
from ..validation import validate_config
from .report import chosen_sweep


def run_dashboard(cfg: DictConfig) -> dict[str, Any]:
    validate_config(cfg)
    sweep = chosen_sweep(cfg.task.sweep_dir, cfg.task.multirun_dir)
    spec = dashboard_spec(sweep_jobs(sweep), cfg.task.title)
    spec_path = sweep / "dashboard.json"
    write_json(spec_path, spec)
    url = publish(spec, cfg.logger.get("entity")) if goes_online(cfg) else None
    summary = {"task": "dashboard", "sweep_dir": str(sweep), "spec": str(spec_path), "url": url,
               "grids": [g["title"] for g in spec["grids"]], "runs": len(spec["runs"])}
    write_json(Path(to_absolute_path(str(cfg.output_dir))) / "summary.json", summary)
    print(f"== dashboard: {len(spec['runs'])} runs of {sweep}, grouped by {', '.join(s['override'] for s in spec['swept']) or 'nothing'}")
    print(f"   panel grids: {'; '.join(summary['grids'])}")
    if url:
        print(f"   W&B dashboard: {url}")
    else:
        print(f"   offline: spec in {spec_path}; publish it with\n"
              f"   wandb sync {sweep}/*/wandb/offline-run-* && python -m losslandscape.tracking.dashboard {spec_path}")
    return summary


def goes_online(cfg: DictConfig) -> bool:
    """The tracker's own rule: online when forced or when a key is set, and only if the server answers."""
    mode = str(cfg.logger.get("mode", "offline")) if cfg.get("logger") and cfg.logger.get("_target_") else "disabled"
    wanted = mode == "online" or (mode == "auto" and has_wandb_credentials())
    return wanted and server_reachable()
