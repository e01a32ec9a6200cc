"""Progress in log files: whole lines at a fixed pace instead of carriage-return redraws; live bars on terminals."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
import tqdm.std

from losslandscape import progress
from losslandscape.progress import progress_bar

REPO = Path(__file__).resolve().parents[1]


class FakeClock:
    """tqdm's clock, moved by hand: what is printed then depends on the simulated seconds only."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bar_in_a_log_prints_one_whole_line_per_interval(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(tqdm.std, "time", clock)
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)  # no background refresh on the real clock
    monkeypatch.setattr(progress, "EVERY_S", 30.0)
    log = io.StringIO()  # not a terminal
    bar = progress_bar(total=12, desc="scan plane", stream=log, leave=False)
    for _ in range(12):  # 10 simulated seconds per block: 120 s in all
        clock.now += 10.0
        bar.update(1)
    bar.close()
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and "\x1b" not in log.getvalue()
    # nothing before 30 s, then one line at 30, 60, 90 and 120 s, and the final state when the bar closes
    assert [re.search(r"(\d+)/12", line).group(1) for line in lines] == ["3", "6", "9", "12", "12"]
    assert all(line.startswith("scan plane:") for line in lines)


def test_a_bar_that_ends_before_the_interval_prints_nothing(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(tqdm.std, "time", clock)
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    log = io.StringIO()
    for _ in progress_bar(range(5), desc="lanczos", stream=log):
        clock.now += 1.0
    assert log.getvalue() == ""


def test_the_lanczos_bar_reports_convergence_not_its_step_cap(monkeypatch, capsys):
    """Lanczos stops when the wanted Ritz pairs converge, long before its cap: the bar has no fake total,
    it says how many pairs have converged and how far the worst residual is from the tolerance."""
    import torch

    from losslandscape.hessian.lanczos import hessian_eigenpairs
    from losslandscape.hessian.operator import DenseOperator

    clock = FakeClock()
    monkeypatch.setattr(tqdm.std, "time", clock)
    monkeypatch.setattr(tqdm.std.tqdm, "monitor_interval", 0)
    monkeypatch.setattr(progress, "EVERY_S", 1.0)
    matrix = torch.diag(torch.arange(1.0, 61.0, dtype=torch.float64))
    operator = DenseOperator(matrix)

    def one_second_per_product(vector, apply=operator.matvec):
        clock.now += 1.0
        return apply(vector)

    monkeypatch.setattr(operator, "matvec", one_second_per_product)
    values, _, record = hessian_eigenpairs(operator, k=2, which="top", tol=1e-6, max_steps=50, progress=True)
    lines = capsys.readouterr().err.splitlines()
    assert record["lanczos_steps"] < 50 and all(record["converged"])
    assert lines and all(line.startswith("lanczos top-2 (at most 50 steps):") and "/50" not in line for line in lines)
    assert "2/2 converged" in lines[-1] and f"{record['lanczos_steps']} steps" in lines[-1] and "(tol 1e-06)" in lines[-1]


def test_the_mining_bar_says_which_run_it_is_on(monkeypatch, capsys):
    import torch

    from losslandscape.mining.miner import DirectionMiner
    from losslandscape.mining.objectives import WPeak
    from test_mining import QuadraticLoss

    monkeypatch.setattr(progress, "EVERY_S", 1e-9)  # a line at every step
    theta = {"w": torch.tensor([[0.5, 0.5, 0.5, 0.5]], dtype=torch.float64)}
    miner = DirectionMiner(lambda p: torch.optim.Adam(p, lr=0.05), steps=3, batch_size=None)
    miner.mine(WPeak(a=0.5, inner=[], peak=0.0, level=0.0), QuadraticLoss([-1.0, 0.5, 1.0, 2.0]), theta,
               [{"w": torch.ones(1, 4, dtype=torch.float64)}], seed=0, progress=True, label="run 2/5")
    lines = capsys.readouterr().err.splitlines()
    assert lines and all(line.startswith("mining WPeak run 2/5:") for line in lines)


def test_progress_every_s_must_be_positive():
    with pytest.raises(ValueError, match="progress_every_s must be a positive number of seconds, got 0"):
        progress.configure(0)


def command(tmp_path: Path, name: str) -> list[str]:
    return [sys.executable, "run.py", "train.epochs=2", "scan=line", "scan.line.points=5", "logger=none",
            f"hydra.run.dir={tmp_path / name}", f"cache_dir={tmp_path / name / 'cache'}"]


def run_in_terminal(arguments: list[str]) -> bytes:
    """The output of a command whose stdout and stderr are a pseudo-terminal, as in an interactive shell."""
    controller, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # 24 x 100 like a window (a bare pty is 0 wide)
    job = subprocess.Popen(arguments, cwd=REPO, stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal)
    os.close(terminal)
    output = b""
    while True:
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the job closed the terminal
            break
        if not chunk:
            break
        output += chunk
    assert job.wait(timeout=300) == 0, output.decode(errors="replace")[-2000:]
    os.close(controller)
    return output


def test_a_job_writing_to_a_pipe_logs_lines_and_one_in_a_terminal_keeps_live_bars(tmp_path):
    piped = subprocess.run(command(tmp_path, "piped"), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=300)
    assert piped.returncode == 0, piped.stdout[-2000:]
    log = piped.stdout
    lines = log.splitlines()
    assert "\r" not in log
    epochs = [line for line in lines if re.match(r"epoch \d+/2: ", line)]
    assert [line.split(":")[0] for line in epochs] == ["epoch 1/2", "epoch 2/2"]
    assert all("train/loss" in line and "test/accuracy" in line for line in epochs)
    assert not [line for line in lines if "it/s" in line or "%|" in line]  # the tiny scan ends before a progress line is due
    assert len(lines) < 20 and len(log) < 3000, log  # Lightning's notices, 2 epoch lines, the summary

    terminal = run_in_terminal([*command(tmp_path, "terminal"), "task=train"])  # training alone: its bar is the live one
    redraws = re.findall(rb"\r(?!\n)", terminal)  # a terminal turns "\n" into "\r\n": those are not redraws
    assert len(redraws) > 2 * 3, terminal[-1000:]  # Lightning's live bar redraws within every epoch
