"""What lets many jobs of one sweep run side by side: a GPU pool (finished jobs are skipped by :mod:`.jobs`).

GPU pool. Jobs of a parallel launcher (joblib's worker processes are reused across jobs, so a job
cannot rely on CUDA_VISIBLE_DEVICES being set before CUDA starts) each take one GPU by holding a
lock file per device; the job then uses ``cuda:i`` explicitly. No two running jobs share a GPU;
with no GPU the job runs on the CPU. A crashed job's lock is released by the operating system.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from .errors import ConfigError


@dataclass
class DeviceLease:
    """A device, and the lock that reserves it while the job runs (``None`` for the CPU or a fixed device)."""

    device: torch.device
    lock: FileLock | None = None

    def release(self) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None


def lease_device(name: str, lock_dir: str | Path, poll_seconds: float = 2.0, gpu_count: int | None = None) -> DeviceLease:
    """``auto``: a free GPU from the pool (waiting while all are busy), else the CPU;
    ``cpu``, ``cuda`` or ``cuda:N``: that device, unshared-ness not checked."""
    count = torch.cuda.device_count() if gpu_count is None else gpu_count
    if name != "auto":
        device = torch.device(name)
        if device.type == "cuda" and (count == 0 or (device.index or 0) >= count):
            raise ConfigError(f"device={name} asked for a GPU torch cannot see ({count} visible); use device=cpu or device=auto")
        return DeviceLease(device)
    if count == 0:
        return DeviceLease(torch.device("cpu"))
    Path(lock_dir).mkdir(parents=True, exist_ok=True)
    while True:
        for index in range(count):
            lock = FileLock(str(Path(lock_dir) / f"cuda{index}.lock"))
            try:
                lock.acquire(timeout=0)
                return DeviceLease(torch.device("cuda", index), lock)
            except Timeout:
                continue
        time.sleep(poll_seconds)
