"""One real, tiny Hydra multirun with W&B offline, shared by the dashboard and report tests.

``python run.py -m`` in a subprocess, as a user runs it: 12 jobs (tasks landscape, hessian and
interpolation, two seeds, two direction types), 2 epochs of training each (the cache trains each
seed once); the interpolation jobs measure the barrier between the initialization and the final model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SWEEP = ["task=landscape,hessian,interpolation", "seed=0,1", "direction=filter_gaussian,sign_consistent"]
TINY_SWEEP = [
    "train.epochs=2", "train.batch_size=128", "scan.line.points=7", "scan.plane.x_points=5", "scan.plane.y_points=3",
    "progress=false", "logger=wandb", "logger.mode=offline",
    "hessian.eigen.top_k=2", "hessian.eigen.bottom_k=0", "hessian.trace.hutchinson_samples=4",
    "hessian.trace.hutchpp_products=6", "hessian.density.runs=0", "hessian.curvature.directions=0",
    "++task.pairs=[[init_to_final,init,final]]", "++task.points=5",  # read by the interpolation jobs only
]
JOBS = 12
_made: dict[Path, Path] = {}  # both test modules import the fixture: each gets its own copy, the sweep runs once




@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> Path:
    """The sweep's directory, ``<tmp>/multirun/<date>/<time>`` as Hydra names it."""
    base = tmp_path_factory.getbasetemp()
    if base in _made:
        return _made[base]
    root = tmp_path_factory.mktemp("sweep")
    sweep = root / "multirun" / "2026-12-02" / "10-00-00"
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    command = [sys.executable, "run.py", "-m", *SWEEP, *TINY_SWEEP, f"hydra.sweep.dir={sweep}", f"cache_dir={root / 'cache'}"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    _made[base] = sweep
    return sweep
