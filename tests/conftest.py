"""Shared test fixtures: composing the real Hydra configs, tiny and in a temp dir."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")

# Real W&B, never the network: offline runs written into each test's temp dir.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# pytest-xdist runs the suite in several processes: each takes its share of the cores for torch's
# threads, since more threads than cores make torch's small operations wait on one another
if os.environ.get("PYTEST_XDIST_WORKER"):
    import torch

    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))

TINY = [
    "train.epochs=2",
    "train.batch_size=128",
    "scan.line.points=7",
    "scan.plane.x_points=5",
    "scan.plane.y_points=3",
    "progress=false",
    "logger=none",
]


def compose_config(tmp_path: Path, overrides: list[str] = ()):
    """The real config tree with ``overrides``, writing into ``tmp_path``."""
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[f"output_dir={tmp_path / 'run'}", f"cache_dir={tmp_path / 'cache'}", *overrides],
        )


@pytest.fixture
def tiny_config(tmp_path):
    """A factory: ``tiny_config(*overrides)`` composes a minutes-to-seconds version of the default job."""

    def make(*overrides: str):
        chosen = next((o.split("=", 1)[1] for o in overrides if o.startswith("scan=")), "line,plane")
        tiny = [o for o in TINY if not o.startswith("scan.") or o.split(".")[1] in chosen]
        return compose_config(tmp_path, [*tiny, *overrides])

    return make
