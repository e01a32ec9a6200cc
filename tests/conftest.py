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
