"""The result store: never a stale number, damaged files recomputed, the same function everywhere,
the training cache keyed by content, and jobs that continue after a kill."""

from __future__ import annotations

import copy
import json
import logging
import os
import signal
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
import yaml

from losslandscape.errors import UserError
from losslandscape.jobs import SWEEP_FINISHED, JobBusy, config_hash, continue_unfinished_sweep, held
from losslandscape.landscape.evaluator import Evaluator, parameters_of
from losslandscape.landscape.scans import LineScan, ScanResult, run_scan, scan_fingerprint
from losslandscape.losses import CrossEntropy
from losslandscape.models.cnn import SmallCNN
from losslandscape.store import (CorruptResult, load_arrays, load_record, load_tensors, read_arrays, read_record,
                                 read_tensors, save_arrays, save_record, save_tensors)
from losslandscape.tasks.hessian import run_hessian
from losslandscape.tasks.landscape import run_landscape
from losslandscape.tasks.train import run_train

REPO = Path(__file__).resolve().parents[1]


# ---- the store's files --------------------------------------------------------------------------

def test_arrays_records_and_tensors_are_reused_only_under_their_key(tmp_path):
    arrays, record = {"grid": np.arange(6.0).reshape(2, 3), "done": np.int64(4)}, {"label": "w-peak", "values": [1.5, float("nan")]}
    save_arrays(tmp_path / "a.npz", arrays, {"note": (1, 2)}, "key-1")
    save_record(tmp_path / "r.json", record, "key-1")
    save_tensors(tmp_path / "t.pt", {"control": {"w": torch.arange(3.0)}, "step": 7}, "key-1")
    found, provenance = load_arrays(tmp_path / "a.npz", "key-1")
    np.testing.assert_array_equal(found["grid"], arrays["grid"])
    assert provenance["note"] == [1, 2] and int(found["done"]) == 4
    assert load_record(tmp_path / "r.json", "key-1")["label"] == "w-peak"
    assert torch.equal(load_tensors(tmp_path / "t.pt", "key-1")["control"]["w"], torch.arange(3.0))
    for path, load in ((tmp_path / "a.npz", load_arrays), (tmp_path / "r.json", load_record), (tmp_path / "t.pt", load_tensors)):
        assert load(path, "key-2") is None  # made under other settings
        assert load(tmp_path / "absent", "key-1") is None


def damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif how == "flipped":  # one byte of the stored content, past the container's header
        index = len(data) // 2
        path.write_bytes(data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :])
    else:  # foreign: the same content without the store's checksum
        if path.suffix == ".npz":
            np.savez(path, grid=np.arange(6.0))
        elif path.suffix == ".json":
            path.write_text(json.dumps({"label": "w-peak"}))
        else:
            torch.save({"control": {"w": torch.arange(3.0)}}, path)


@pytest.mark.parametrize("how", ["truncated", "flipped", "foreign"])
def test_a_truncated_damaged_or_foreign_file_is_recomputed_with_a_one_line_notice(tmp_path, caplog, how):
    # a JSON record is text: flipping a bit of one digit changes a number, which only the checksum sees
    save_record(tmp_path / "r.json", {"label": "w-peak", "value": 0.123456789}, "k")
    save_arrays(tmp_path / "a.npz", {"grid": np.random.default_rng(0).normal(size=(64, 64))}, {}, "k")
    save_tensors(tmp_path / "t.pt", {"control": {"w": torch.randn(64, 64)}}, "k")
    for path, load in ((tmp_path / "a.npz", load_arrays), (tmp_path / "r.json", load_record), (tmp_path / "t.pt", load_tensors)):
        damage(path, how)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="losslandscape.store"):
            assert load(path, "k") is None
        notices = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert len(notices) == 1 and str(path) in notices[0] and "recomputing" in notices[0] and "\n" not in notices[0]


def test_a_damaged_finished_scan_is_recomputed_and_a_direct_load_says_what_is_wrong(tmp_path):
    model, x, y, theta, d = linear_problem()
    evaluator = Evaluator(model, x, y)
    first = run_scan(LineScan(points=9), theta, [d], {"train": evaluator}, tmp_path / "c.npz", progress=False)
    damage(tmp_path / "c.npz", "truncated")
    with pytest.raises(CorruptResult, match="truncated") as error:
        ScanResult.load(tmp_path / "c.npz")
    assert isinstance(error.value, UserError)  # one line and exit code 2 on the command line, no traceback
    again = run_scan(LineScan(points=9), theta, [d], {"train": evaluator}, tmp_path / "c.npz", progress=False)
    np.testing.assert_array_equal(again.values["train_loss"], first.values["train_loss"])
    assert ScanResult.load(tmp_path / "c.npz").values["train_loss"].shape == (9,)


# ---- every setting that changes the numbers is in the key -----------------------------------------

def linear_problem():
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 4).double()
    x, y = torch.randn(60, 3, dtype=torch.float64), torch.randint(0, 4, (60,))
    theta = parameters_of(model)
    return model, x, y, theta, {n: torch.randn_like(v) for n, v in theta.items()}


def bn_problem():
    torch.manual_seed(1)
    model = SmallCNN((1, 8, 8), 10, channels=(4, 4), batch_norm=True, hidden=8).double()
    model.train()
    x = torch.randn(64, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        model(x)  # running statistics of its own, away from the defaults
    model.eval()
    y = torch.randint(0, 10, (64,))
    theta = parameters_of(model)
    return model, x, y, theta, {n: 0.3 * torch.randn_like(v) for n, v in theta.items()}


def variants():
    """Evaluators that measure another function than the base one, each by one setting."""
    model, x, y, theta, d = bn_problem()
    other = torch.randn_like(x)
    return (model, theta, d, Evaluator(model, x, y, 16, "eval", x[:32]), {
        "bn policy": Evaluator(model, x, y, 16, "recompute", x[:32]),
        "subset of the same size": Evaluator(model, x[1:], y[1:], 16, "eval", x[:32]),
        "other data of the same size": Evaluator(model, other, y, 16, "eval", x[:32]),
        "loss": Evaluator(model, x, y, 16, "eval", x[:32], loss=CrossEntropy(label_smoothing=0.1)),
        "dtype": Evaluator(copy.deepcopy(model).float(), x.float(), y, 16, "eval", x[:32].float()),
    })


def test_a_rerun_that_measures_another_function_recomputes_into_the_same_file(tmp_path):
    model, theta, d, base, others = variants()
    path, scan = tmp_path / "curve.npz", LineScan(points=7)
    first = run_scan(scan, theta, [d], {"train": base}, path, progress=False)
    for what, evaluator in others.items():
        at = {n: v.to(next(evaluator.model.parameters()).dtype) for n, v in theta.items()}
        direction = {n: v.to(at[n].dtype) for n, v in d.items()}
        assert scan_fingerprint(scan, at, [direction], {"train": evaluator}) != first.provenance["fingerprint"], what
        rerun = run_scan(scan, at, [direction], {"train": evaluator}, path, progress=False)
        fresh = run_scan(scan, at, [direction], {"train": evaluator}, tmp_path / f"{what}.npz", progress=False)
        np.testing.assert_array_equal(rerun.values["train_loss"], fresh.values["train_loss"])
        assert not np.array_equal(rerun.values["train_loss"], first.values["train_loss"]), what
        run_scan(scan, theta, [d], {"train": base}, path, progress=False)  # back to the base file


def test_the_same_function_on_another_engine_or_rebuilt_has_the_same_key():
    model, theta, d, base, _ = variants()
    scan = LineScan(points=7)
    key = scan_fingerprint(scan, theta, [d], {"train": base})
    model2, x, y, _, _ = bn_problem()
    rebuilt = Evaluator(model2, x, y, 16, "eval", x[:32], first_layer_mb=64, workers=1)
    assert scan_fingerprint(scan, theta, [d], {"train": rebuilt}) == key
    assert scan_fingerprint(scan, theta, [{n: v + 1e-9 for n, v in d.items()}], {"train": base}) != key


def test_the_hessian_and_the_scans_measure_the_same_function_under_bn_recompute(tiny_config):
    """Same BatchNorm examples (a seeded draw, not the first N) and the same subset in both tasks."""
    common = ["model=cnn_bn", "train.epochs=1", "evaluation.bn_mode=recompute", "evaluation.bn_examples=100",
              "evaluation.subset=300", "evaluation.splits=[train]", "evaluation.workers=1"]
    landscape = run_landscape(tiny_config(*common, "scan=line", "scan.line.points=5"))
    hessian = run_hessian(tiny_config(*common, "task=hessian", "hessian.eigen.top_k=1", "hessian.eigen.bottom_k=0",
                                      "hessian.trace.hutchinson_samples=0", "hessian.trace.hutchpp_products=0",
                                      "hessian.density.runs=0", "hessian.curvature.directions=0"))
    scanned = landscape["scans"]["line"]["center"]["train_loss"]  # float32, at lambda = 0
    assert hessian["hessian"]["loss"] == pytest.approx(scanned, rel=1e-5)  # float64: the same function, rounded
    assert hessian["hessian"]["bn_mode"] == "recompute"


def test_a_rerun_in_the_same_directory_under_another_bn_policy_recomputes(tiny_config, tmp_path):
    common = ["model=cnn_bn", "train.epochs=1", "scan=line", "evaluation.bn_examples=200", "evaluation.workers=1"]
    eval_mode = run_landscape(tiny_config(*common))
    recompute = run_landscape(tiny_config(*common, "evaluation.bn_mode=recompute"))  # the same output_dir
    fresh = run_landscape(tiny_config(*common, "evaluation.bn_mode=recompute", f"output_dir={tmp_path / 'fresh'}"))
    assert recompute["scans"]["line"]["center"] == fresh["scans"]["line"]["center"]
    assert recompute["scans"]["line"]["center"]["train_loss"] != eval_mode["scans"]["line"]["center"]["train_loss"]


# ---- the training cache is keyed by content -------------------------------------------------------

USER_MODEL = '''
import torch.nn as nn

class TinyNet(nn.Module):
    def __init__(self, input_shape, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(input_shape[0], 8), nn.{activation}(), nn.Linear(8, num_classes))

    def forward(self, x):
        return self.body(x)
'''


def test_other_data_or_an_edited_model_retrains_with_a_notice_saying_why(tiny_config, tmp_path, monkeypatch, capsys):
    rng = np.random.default_rng(0)
    data = tmp_path / "data.npz"
    np.savez(data, x=rng.normal(size=(80, 4)).astype(np.float32), y=rng.integers(0, 3, 80))
    (tmp_path / "user_tiny_net.py").write_text(USER_MODEL.replace("{activation}", "ReLU"))
    monkeypatch.syspath_prepend(str(tmp_path))
    overrides = ["task=train", "dataset=tensors", f"dataset.path={data}", "model=custom", "+model._target_=user_tiny_net.TinyNet",
                 "train.epochs=1", "train.batch_size=16"]
    first = run_train(tiny_config(*overrides))
    assert run_train(tiny_config(*overrides, "resume=false"))["train_key"] == first["train_key"]  # reused
    np.savez(data, x=rng.normal(size=(80, 4)).astype(np.float32), y=rng.integers(0, 3, 80))  # the same size, other values
    capsys.readouterr()
    other_data = run_train(tiny_config(*overrides))
    assert other_data["train_key"] != first["train_key"]
    assert "training anew: the data's content changed" in capsys.readouterr().out
    (tmp_path / "user_tiny_net.py").write_text(USER_MODEL.replace("{activation}", "Tanh"))  # same parameters, other structure
    sys.modules.pop("user_tiny_net", None)
    edited = run_train(tiny_config(*overrides))
    assert edited["train_key"] != other_data["train_key"]
    assert "training anew: the model's definition changed" in capsys.readouterr().out


# ---- jobs -----------------------------------------------------------------------------------------

def test_the_config_hash_does_not_depend_on_where_the_job_writes(tiny_config, tmp_path):
    assert config_hash(tiny_config()) == config_hash(tiny_config(f"output_dir={tmp_path / 'elsewhere'}", "progress=true"))
    assert config_hash(tiny_config()) != config_hash(tiny_config("seed=1"))


def test_a_second_job_in_the_same_directory_fails_with_one_clear_line(tiny_config):
    cfg = tiny_config("task=train", "train.epochs=1")
    with held(Path(cfg.output_dir), "another"):
        with pytest.raises(JobBusy, match=rf"another job \(pid {os.getpid()}\) is writing into .*run; wait for it"):
            run_train(cfg)
    assert run_train(cfg)["task"] == "train"  # the lock went with its holder


def children_of(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def arrays_of(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every result array under ``folder`` by relative path (provenance aside: it names the folder)."""
    return {str(p.relative_to(folder)): dict(np.load(p)) | {"provenance": None}
            for p in sorted(folder.rglob("*.npz")) if ".partial." not in p.name}


def is_finished_unit(path: Path) -> bool:
    """A finished result of the store (not a partial file or snapshot, which a rerun carries on)."""
    if not path.is_file() or any(tag in path.name for tag in (".partial.", "-state.")):
        return False
    read = {".npz": read_arrays, ".json": read_record, ".pt": read_tensors}.get(path.suffix)
    try:
        return read is not None and read(path)[-1] is not None
    except CorruptResult:
        return False


def finished_checkpoints(cache: Path) -> list[Path]:
    """The training checkpoints a rerun must keep: all of a finished run, and of an unfinished one those
    up to its resume point (a later epoch's file may be written again: its epoch is repeated)."""
    found = []
    for run in cache.glob("*/"):
        if (run / "final.pt").is_file():
            found += list(run.glob("*.pt"))
        elif (run / "resume.ckpt").is_file():
            epoch = torch.load(run / "resume.ckpt", weights_only=True)["epoch"] + 1
            found += [run / "init.pt", *(p for p in run.glob("epoch_*.pt") if int(p.stem.split("_")[1]) <= epoch)]
    return found


def checkpoints_of(cache: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {str(p.relative_to(cache)): torch.load(p, weights_only=True)["state_dict"] for p in sorted(cache.glob("*/*.pt"))}


def fake_taxonomy_sweep(folder: Path) -> list[str]:
    """Finished taxonomy jobs of a 3 x 2 (width x batch size) sweep, two seeds each: what phase_plot reads."""
    from test_taxonomy import fake_job

    rng = np.random.default_rng(0)
    for index, (width, batch, seed) in enumerate((w, b, s) for w in (0.5, 1, 2) for b in (32, 128) for s in (0, 1)):
        fake_job(folder / "sweep" / f"job{index}", width, batch, seed, {m: float(rng.normal()) for m in ("cka", "mode_connectivity", "hessian_trace")})
    return ["task=phase_plot", f"task.sweep_dir={folder / 'sweep'}"]


def fake_recipes(folder: Path) -> list[str]:
    """Finished figure recipes of one scale: what the figures task collects."""
    from test_figures import fake_recipe

    lam = np.linspace(-1, 1, 21)
    for name, losses, label in (("fig_w_peak", 1 - lam**2 + lam**4, "w-peak"), ("fig_v_basin", lam**2, "v-basin"),
                                ("fig_flat", 0 * lam, "flat")):
        fake_recipe(folder / "experiments", name, lam, losses, label)
    return ["task=figures", f"task.experiments_dir={folder / 'experiments'}", "task.variant=digits-cnn"]


@dataclass
class Killed:
    settings: list[str]
    started: str  # a glob in the user's folder: once it matches, real work has started
    own_cache: bool = False  # the training is what is killed: the uninterrupted run trains in a cache of its own
    inputs: Callable[[Path], list[str]] | None = None  # writes what a drawing task reads; gives its settings
    delay: float = 0.6  # the kill comes at a random moment within this many seconds after work started
    same: tuple[str, ...] = ()  # numbers of summary.json to compare (the arrays and checkpoints are compared anyway)


KILLED = {
    "landscape": Killed(["scan=plane", "scan.plane.x_points=21", "scan.plane.y_points=21", "evaluation.workers=2"], "outputs/*/*/surfaces/*"),
    "shape_statistics": Killed(["task=shape_statistics", "task.directions=8", "scan.line.points=21"], "outputs/*/*/curves/*"),
    "hessian": Killed(["task=hessian", "hessian.eigen.top_k=2", "hessian.eigen.bottom_k=1", "hessian.trace.hutchinson_samples=20",
                       "hessian.trace.hutchpp_products=30", "hessian.density.runs=2", "hessian.density.steps=20",
                       "hessian.curvature.directions=3"], "outputs/*/*/hessian/*"),
    "mine": Killed(["task=mine", "mining.runs=3", "mining.miner.steps=40", "mining.scan_points=21", "mining.plane_points=5",
                    "mining.saddle=false", "evaluation.splits=[train]"], "outputs/*/*/mining/*"),
    "asymmetric_valley": Killed(["task=asymmetric_valley", "task.directions=2", "task.points=11", "task.ratios=[0.0,0.5,1.0]",
                                 "task.distributions=[gaussian,uniform]"], "outputs/*/*/curves/*"),
    "interpolation": Killed(["task=interpolation", "task.pairs=[[init_to_final,init,final],[to_epoch_1,epoch:1,final]]",
                             "task.points=21"], "outputs/*/*/curves/*"),
    "spawning": Killed(["task=spawning", "task.spawn_epochs=[1]", "task.points=5", "train.epochs=3"], "cache/*spawn*/resume.ckpt", own_cache=True),
    "taxonomy": Killed(["task=taxonomy", "task.models=3", "task.curve.steps=300", "task.curve.save_every=50", "task.curve.points=11",
                        "hessian.trace.hutchpp_products=0", "hessian.trace.hutchinson_samples=10", "hessian.eigen.max_steps=30"],
                       "outputs/*/*/taxonomy/*"),
    "ntk": Killed(["task=ntk", "task.examples=40", "train.epochs=4"], "outputs/*/*/ntk/*"),
    "phase_plot": Killed([], "outputs/*/*/job.json", inputs=fake_taxonomy_sweep, delay=0.3, same=("cells", "loads", "temperatures")),
    "figures": Killed([], "outputs/*/*/job.json", inputs=fake_recipes, delay=0.3, same=("experiments", "missing_panels")),
    "train": Killed(["task=train", "train.epochs=4"], "cache/*/resume.ckpt", own_cache=True,
                    same=("train_accuracy", "test_accuracy", "history")),
}


@pytest.mark.parametrize("task", list(KILLED))
def test_a_job_killed_with_sigkill_continues_when_the_same_command_is_rerun(tmp_path, task):
    """Killed at a random moment after real work started, the same command (from the user's own folder,
    no output directory given) continues in the killed run's directory, recomputes none of its finished
    files (results, or training checkpoints up to the resume point), leaves no worker behind, and ends
    with the numbers of an uninterrupted run (every array, every checkpoint, bit for bit)."""
    spec = KILLED[task]
    settings = spec.settings + (spec.inputs(tmp_path) if spec.inputs else [])
    epochs = [] if any(o.startswith("train.epochs=") for o in settings) else ["train.epochs=2"]
    common = [sys.executable, str(REPO / "run.py"), "logger=none", "progress=false", *epochs, "model=mlp", "seed=3", *settings]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    clean, cache = tmp_path / "clean", tmp_path / "user" / "cache"
    clean_cache = tmp_path / "clean-cache" if spec.own_cache else cache
    subprocess.run([*common, f"hydra.run.dir={clean}", f"cache_dir={clean_cache}"], check=True, env=env, capture_output=True, timeout=600)
    user = tmp_path / "user"
    user.mkdir(exist_ok=True)
    command = [*common, f"outputs_root={user / 'outputs'}", f"cache_dir={cache}"]
    job = subprocess.Popen(command, cwd=user, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    while not list(user.glob(spec.started)) and job.poll() is None and time.monotonic() - started < 300:
        time.sleep(0.02)
    time.sleep(np.random.default_rng(zlib.crc32(task.encode())).uniform(0.0, spec.delay))  # a random moment, the same in every run
    workers = children_of(job.pid)
    assert job.poll() is None, "the job finished before it could be killed: give it more work"
    job.send_signal(signal.SIGKILL)
    job.wait()
    deadline = time.monotonic() + 10
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [w for w in workers if alive(w)], "point workers outlived their killed parent"
    (run,) = [p.parent for p in (user / "outputs").glob("*/*/job.json")]
    finished = {p: p.stat().st_mtime_ns for p in run.rglob("*") if is_finished_unit(p)}
    if spec.own_cache:
        finished |= {p: p.stat().st_mtime_ns for p in finished_checkpoints(cache)}
        assert finished_checkpoints(cache), "killed before the first epoch was saved"
    elif not spec.inputs:
        assert finished or list(run.rglob("*.partial.npz")) or list(run.rglob("*-state.pt")), "killed before any resumable work was saved"
    time.sleep(1.1)  # a new run directory would get another time stamp
    rerun = subprocess.run(command, cwd=user, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"continuing the unfinished run of this config in {run}" in rerun.stdout
    if spec.own_cache:
        assert "== continuing the training of" in rerun.stdout
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # finished units were read back, not recomputed
    expected, got = arrays_of(clean), arrays_of(run)
    assert expected.keys() == got.keys()
    for name in expected:
        for key, value in expected[name].items():
            if key != "provenance":
                np.testing.assert_array_equal(got[name][key], value, err_msg=f"{name}:{key}")
    if spec.own_cache:
        expected, got = checkpoints_of(clean_cache), checkpoints_of(cache)
        assert expected.keys() == got.keys() and not list(cache.glob("*/resume.ckpt"))  # finished: no resume point left
        for name in expected:
            for key, value in expected[name].items():
                assert torch.equal(got[name][key], value), f"{name}:{key}"
    figures = lambda folder: sorted(str(p.relative_to(folder)) for p in folder.rglob("*.png"))  # noqa: E731
    assert figures(run) == figures(clean)
    summary, expected = (json.loads((folder / "summary.json").read_text()) for folder in (run, clean))
    assert summary["task"] == task and {k: summary[k] for k in spec.same} == {k: expected[k] for k in spec.same}


def saved_sweep(folder: Path, overrides: list[str], finished: bool = False) -> Path:
    """A sweep folder as Hydra leaves it (its multirun.yaml), marked finished or not."""
    folder.mkdir(parents=True)
    (folder / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": overrides, "hydra": []}}}))
    if finished:
        (folder / SWEEP_FINISHED).write_text("{}")
    return folder


def test_a_rerun_multirun_continues_the_newest_unfinished_sweep_of_the_same_command(tmp_path, capsys):
    outputs = tmp_path / "outputs"
    command = ["task=landscape", "seed=0,1"]
    saved_sweep(outputs / "multirun" / "2026-12-01" / "09-00-00", command, finished=True)
    older = saved_sweep(outputs / "multirun" / "2026-12-01" / "10-00-00", command)
    saved_sweep(outputs / "multirun" / "2026-12-01" / "11-00-00", ["task=landscape", "seed=0,1,2"])  # another command
    os.utime(older / "multirun.yaml", (1, 1))
    newest = saved_sweep(outputs / "multirun" / "2026-12-01" / "12-00-00", command)
    assert continue_unfinished_sweep(["-m", *command], str(outputs)) == ["-m", *command, f"hydra.sweep.dir={newest.resolve()}"]
    assert f"continuing the unfinished sweep of this command in {newest}" in capsys.readouterr().out
    for argv in (command, ["-m", *command, "resume=false"], ["-m", *command, "hydra.sweep.dir=mine"], ["-m", "task=landscape", "seed=0,2"]):
        assert continue_unfinished_sweep(argv, str(outputs)) == argv  # a single run, a fresh start, a chosen folder, another sweep
    (newest / SWEEP_FINISHED).write_text("{}")
    assert continue_unfinished_sweep(["-m", *command], str(outputs)) == ["-m", *command, f"hydra.sweep.dir={older.resolve()}"]


def test_a_multirun_killed_after_its_first_job_continues_in_its_folder_when_rerun(tmp_path):
    """Rerun as typed, the killed sweep continues in place: the finished job is skipped with its files
    untouched, the others run, and the folder is marked finished (a later rerun would start anew)."""
    command = [sys.executable, str(REPO / "run.py"), "-m", "task=landscape", "scan=line", "scan.line.points=5,7,9", "logger=none",
               "progress=false", "train.epochs=1", "model=mlp", f"cache_dir={tmp_path / 'cache'}"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    job = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = time.monotonic()
    while not list(tmp_path.glob("outputs/multirun/*/*/0/summary.json")) and job.poll() is None and time.monotonic() - started < 300:
        time.sleep(0.02)
    assert job.poll() is None, "the sweep finished before it could be killed"
    job.send_signal(signal.SIGKILL)
    job.wait()
    (sweep,) = [p.parent for p in tmp_path.glob("outputs/multirun/*/*/multirun.yaml")]
    first = {p: p.stat().st_mtime_ns for p in [sweep / "0" / "summary.json", *(sweep / "0").glob("[cf]*/*")]}  # results, figures
    assert not (sweep / SWEEP_FINISHED).exists()
    time.sleep(1.1)  # a new sweep folder would get another time stamp
    rerun = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert f"continuing the unfinished sweep of this command in {sweep}" in rerun.stdout
    assert f"already finished in {sweep / '0'}, skipped" in rerun.stdout
    assert [p.parent for p in tmp_path.glob("outputs/multirun/*/*/multirun.yaml")] == [sweep]
    assert {p: p.stat().st_mtime_ns for p in first} == first
    points = [len(np.load(sweep / str(n) / "curves" / "line.npz")["axis_lambda"]) for n in range(3)]
    assert points == [5, 7, 9] and (sweep / SWEEP_FINISHED).is_file()
