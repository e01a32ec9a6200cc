"""Sweeps: real multiruns with the basic and joblib launchers, restarts, the GPU pool, sharded scans, SLURM config."""

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from conftest import CONF_DIR
from losslandscape.sweeps import lease_device
from losslandscape.tracking.wandb_records import read_records

REPO = Path(__file__).resolve().parents[1]
TINY = ["train.epochs=1", "progress=false", "scan=line", "scan.line.points=5"]


def run(args, cwd=REPO, timeout=400, env=None):
    result = subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def wandb_group(job_dir: Path) -> str:
    (records,) = job_dir.glob("wandb/offline-run-*/*.wandb")
    runs = [r.run for r in read_records(records) if r.WhichOneof("record_type") == "run"]
    return runs[0].run_group


def test_joblib_multirun_runs_two_jobs_in_parallel_and_a_restart_skips_them(tmp_path):
    sweep = tmp_path / "sweep"
    args = ["run.py", "-m", "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "logger=wandb", "logger.mode=offline",
            f"hydra.sweep.dir={sweep}", f"cache_dir={tmp_path / 'cache'}", *TINY]
    run(args)
    jobs = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert [p.name for p in jobs] == ["0", "1"]
    for job in jobs:
        assert (job / "summary.json").is_file() and (job / "curves" / "line.npz").is_file()
        assert wandb_group(job) == f"{tmp_path.name}/sweep"  # runs of one sweep share its group: the folder and its parent
    assert len(list((tmp_path / "cache").glob("*/final.pt"))) == 2  # one training per seed
    stamps = [(job / "summary.json").stat().st_mtime_ns for job in jobs]
    again = run(args)
    assert again.count("already finished") == 2
    assert [(job / "summary.json").stat().st_mtime_ns for job in jobs] == stamps


def test_basic_launcher_multirun_trains_once_and_scans_many(tmp_path):
    sweep = tmp_path / "sweep"
    run(["run.py", "-m", "direction=filter_gaussian,rademacher", "logger=none", f"hydra.sweep.dir={sweep}",
         f"cache_dir={tmp_path / 'cache'}", *TINY])
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]
    assert len(list((tmp_path / "cache").glob("*/final.pt"))) == 1  # the second job reused the checkpoint


def test_a_failed_job_exits_non_zero(tmp_path):
    result = subprocess.run([sys.executable, "run.py", "logger=none", "scan.line.points=1", f"hydra.run.dir={tmp_path}"],
                            cwd=REPO, capture_output=True, text=True, timeout=200)
    assert result.returncode == 2 and "scan.line.points=1: expected an integer >= 2" in result.stderr


def test_sharded_scan_under_torchrun_equals_the_single_process_scan(tmp_path):
    common = ["run.py", "scan=plane", "scan.plane.x_points=7", "scan.plane.y_points=5", "logger=none",
              "progress=false", "train.epochs=1", f"cache_dir={tmp_path / 'cache'}"]
    run(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *common, f"hydra.run.dir={tmp_path / 'sharded'}"])
    run([*common, f"hydra.run.dir={tmp_path / 'single'}"])
    sharded = np.load(tmp_path / "sharded" / "surfaces" / "plane.npz")
    single = np.load(tmp_path / "single" / "surfaces" / "plane.npz")
    for key in ["train_loss", "test_loss", "train_accuracy", "axis_x", "axis_y"]:
        np.testing.assert_array_equal(sharded[key], single[key])  # bit for bit on CPU


def test_gpu_pool_gives_each_running_job_its_own_device(tmp_path):
    first = lease_device("auto", tmp_path, gpu_count=2)
    second = lease_device("auto", tmp_path, gpu_count=2)
    assert {str(first.device), str(second.device)} == {"cuda:0", "cuda:1"}
    waiting = {}
    thread = threading.Thread(target=lambda: waiting.setdefault("lease", lease_device("auto", tmp_path, poll_seconds=0.05, gpu_count=2)))
    thread.start()
    time.sleep(0.3)
    assert "lease" not in waiting  # both GPUs are busy: the third job waits
    first.release()
    thread.join(timeout=5)
    assert str(waiting["lease"].device) == str(first.device)
    second.release()
    waiting["lease"].release()
    assert str(lease_device("auto", tmp_path, gpu_count=0).device) == "cpu"  # no GPU: the CPU
    with pytest.raises(ValueError, match="asked for a GPU torch cannot see"):
        lease_device("cuda:3", tmp_path, gpu_count=2)


def test_slurm_launcher_config_composes_and_submitit_runs_a_job_locally(tmp_path):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["hydra/launcher=slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.partition, launcher.gpus_per_node, launcher.array_parallelism) == ("gpu", 1, 16)
    sweep = tmp_path / "sweep"
    run(["run.py", "-m", "hydra/launcher=submitit_local", "task=train", "logger=none", f"hydra.sweep.dir={sweep}",
         f"cache_dir={tmp_path / 'cache'}", "train.epochs=1", "progress=false"])
    assert (sweep / "0" / "summary.json").is_file()
