"""Task ``figures``: the gallery of every figure recipe's latest result, without recomputing anything.

Each recipe of ``conf/experiment/`` writes into ``<experiments_dir>/<recipe>/<dataset>-<model>/``
and puts a ``gallery`` block (title, panels, optionally a 1D curve) into its ``summary.json``. This
task reads those folders for one scale (``task.variant``, e.g. ``digits-cnn`` or
``cifar10-vgg16_bn``) and draws a grid of all panels and the 1D gallery of the curve shapes,
redrawn from the curves' data (vector PDF), each labelled with its measured shape.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path

from ..errors import ConfigError
from ..files import read_json
from ..plots.gallery import plot_curve_gallery, plot_gallery
from .common import Session, run_task


def run_figures(cfg) -> dict[str, Any]:
    return run_task(cfg, _figures)


def _figures(session: Session) -> dict[str, Any]:
    task, out = session.cfg.task, session.output_dir / "figures"
    root = Path(to_absolute_path(str(task.experiments_dir)))
    entries = collect_results(root, str(task.variant))
    if not entries:
        raise ConfigError(f"no finished figure recipe under {root}/*/{task.variant}/summary.json: run "
                         f"`python run.py -m 'experiment=glob(fig_*)'` first (task.variant selects dataset-model)")
    figures = plot_gallery(entries, out / "gallery", int(task.columns))
    curves = [e for e in entries if e["gallery"].get("curve")]
    if curves:
        figures += plot_curve_gallery(curves, out / "gallery_1d")
    session.tracker.log_figures("gallery", figures)
    missing = [f"{e['gallery']['name']}: {p}" for e in entries for p in e["missing"]]
    return {
        "task": "figures",
        "variant": str(task.variant),
        "experiments": [e["gallery"]["name"] for e in entries],
        "missing_panels": missing,
        "figures": [str(f) for f in figures],
        "headline": [f"gallery of {len(entries)} recipes ({task.variant}): {out / 'gallery.png'}"]
        + ([f"missing panels: {', '.join(missing)}"] if missing else []),
    }


def collect_results(root: Path, variant: str) -> list[dict[str, Any]]:
    """Every finished recipe result of ``variant``, sorted by recipe name, with its panels' paths."""
    entries = []
    for summary_path in sorted(root.glob(f"*/{variant}/summary.json")):
        summary = read_json(summary_path)
        gallery = summary.get("gallery")
        if not gallery:
            continue
        folder = summary_path.parent
        panels = [folder / p for p in gallery.get("panels", [])]
        entries.append({"gallery": gallery, "folder": folder, "summary": summary,
                        "panels": [p for p in panels if p.exists()], "missing": [str(p.relative_to(folder)) for p in panels if not p.exists()]})
    return entries
