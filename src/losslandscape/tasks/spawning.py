"""Task ``spawning`` (Fort et al. 2020): from which epoch on do children of one parent stay linearly connected?

For every spawn epoch s, two children of this config's run (the parent) are trained: each repeats
the parent's first s epochs exactly (optimizer state included) and then continues to the end with
its own data order (``train.spawn_epoch=s``, ``train.spawn_data_seed`` = one of ``task.children``).
The task reports the barrier of the loss and of the error along the line between the two children,
their sign consistency and distance, against s. Children come from the checkpoint cache and each
s's curve is one file, so a killed run resumes with what it had finished.
"""

from __future__ import annotations

from typing import Any

from ..errors import ConfigError
from ..plots.valleys import plot_spawning_barrier, plot_spawning_curves
from ..progress import progress_bar
from .common import Session, require_accuracy, run_task, summary_head, trained_checkpoints
from .interpolation import check_grid, interpolate
from .references import Checkpoints


def run_spawning(cfg) -> dict[str, Any]:
    return run_task(cfg, _spawning)


def check_settings(cfg) -> tuple[list[int], list[int]]:
    task, epochs = cfg.task, int(cfg.train.epochs)
    spawn_epochs = [int(s) for s in task.spawn_epochs]
    if not spawn_epochs or len(set(spawn_epochs)) != len(spawn_epochs) or any(not 0 <= s <= epochs for s in spawn_epochs):
        raise ConfigError(f"task.spawn_epochs must be distinct epochs in [0, train.epochs={epochs}], got {list(task.spawn_epochs)}")
    children = [int(c) for c in task.children]
    if len(children) != 2 or children[0] == children[1]:
        raise ConfigError(f"task.children must be two different data-order seeds, got {list(task.children)}")
    if cfg.train.get("spawn_epoch") is not None:
        raise ConfigError("task=spawning spawns children from this config's run: leave train.spawn_epoch null")
    if str(task.split) not in cfg.evaluation.splits:
        raise ConfigError(f"task.split={task.split} is not evaluated: evaluation.splits is {list(cfg.evaluation.splits)}")
    return sorted(spawn_epochs), children


def _spawning(session: Session) -> dict[str, Any]:
    require_accuracy(session, "spawning")
    cfg, out = session.cfg, session.output_dir
    spawn_epochs, children = check_settings(cfg)
    grid = check_grid(cfg, "spawning")
    run = trained_checkpoints(session)  # the parent: its saved epochs are what the children are checked against
    refs = Checkpoints(session, run)
    entries = {}
    for s in progress_bar(spawn_epochs, desc="spawning", disable=not cfg.progress):
        entries[s] = interpolate(session, refs, f"spawn{s:03d}", f"spawn:{s}:{children[0]}", f"spawn:{s}:{children[1]}", grid, "spawning")
    keys = list(next(iter(entries.values()))["barrier"])
    barriers = {key: [entries[s]["barrier"][key] for s in spawn_epochs] for key in keys}
    ts, split = grid.axes()["lambda"], str(cfg.task.split)
    figures = plot_spawning_barrier(spawn_epochs, barriers, out / "figures" / "spawning_barrier", int(cfg.train.epochs))
    figures += plot_spawning_curves(ts, {s: e["curves"][f"{split}_loss"] for s, e in entries.items()}, split, out / "figures" / "spawning_curves")
    session.tracker.log_figures("spawning", figures)
    rows = {str(s): {k: v for k, v in e.items() if k not in ("curves", "t")} for s, e in entries.items()}
    return {
        **summary_head(session, "spawning"),
        "parent": str(run.directory),
        "epochs": int(cfg.train.epochs),
        "children": children,
        "spawn_epochs": spawn_epochs,
        "barrier": barriers,
        "ssr": [entries[s]["ssr"] for s in spawn_epochs],
        "distance": [entries[s]["distance"] for s in spawn_epochs],
        "bn_mode": cfg.evaluation.bn_mode,
        "spawned": rows,
        "headline": headline(spawn_epochs, entries, split),
        "figures": [str(f) for f in figures],
    }


def headline(spawn_epochs: list[int], entries: dict[int, dict], split: str) -> list[str]:
    """One line per spawn epoch; the children's own errors show whether both trained (a barrier between
    two diverged children is meaningless)."""
    lines = [f"barrier between two children against the spawn epoch s ({split} loss barrier / {split} error barrier; SSR; children's {split} errors):"]
    for s in spawn_epochs:
        e = entries[s]
        errors = " / ".join(f"{100 * v:.2f} %" for v in e["end_points"][f"{split}_error"])
        lines.append(f"  s={s}: {e['barrier'][f'{split}_loss']:.4f} / {100 * e['barrier'][f'{split}_error']:.2f} points; "
                     f"SSR {e['ssr']:.4f}; children {errors}")
    return lines
