"""Grid points shared out over forked CPU worker processes, one core each.

A small model's forward pass on a CPU is a chain of small operations. Split across cores by
PyTorch's intra-op threads, each operation pays a fork-join and the Python between operations stays
serial: on two cores the scan engine runs a pass of the benchmarks' MLP only about 1.2x faster than
on one. Grid points are independent, so a core each does better: two single-threaded workers
evaluate a plane about 1.5x faster than the same evaluator on two threads, for the MLP and for the
compute-bound SmallCNN alike (benchmarks/README.md). loss-landscapes and a hand-written loop can
only split operations.

Workers are forked from the process that owns the evaluator, so they start in milliseconds with its
model and data already in memory (copy-on-write) and evaluate with its own code, one intra-op thread
each. A call cuts the points into chunks and hands them out as workers become free, each with theta
and the directions when that worker has not been sent these objects yet (by value), and puts the
values back together in order. Every point is computed by the same single-threaded code, so its
numbers do not depend on which worker took it. CPU and Linux only: CUDA does not survive a fork,
and other systems fork less safely.
"""

from __future__ import annotations

import io
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
import weakref
from collections.abc import Callable, Sequence
from multiprocessing.connection import wait

import numpy as np
import torch

from ..errors import ConfigError

ParamDict = dict[str, torch.Tensor]
Evaluate = Callable[..., torch.Tensor]  # (theta, directions, coordinates, points_per_batch, *options)

# "auto" never starts more than this many: each worker holds a copy of the activations of one batch
MAX_AUTO_WORKERS = 8


def resolve_workers(setting: int | str, device: torch.device) -> int:
    """The number of worker processes for ``evaluation.workers``: ``auto`` or a positive int.

    ``auto`` is one per intra-op thread, and no more than the cores this process may run on (a
    SLURM allocation, ``taskset``) or :data:`MAX_AUTO_WORKERS`, on a Linux CPU outside a ``torchrun``
    group (whose ranks already share the cores); else 1 (evaluate in this process).
    """
    device = torch.device(device)
    if setting == "auto":
        sharded = int(os.environ.get("WORLD_SIZE", "1")) > 1
        if device.type != "cpu" or not sys.platform.startswith("linux") or sharded:
            return 1
        return max(1, min(torch.get_num_threads(), len(os.sched_getaffinity(0)), MAX_AUTO_WORKERS))
    try:
        count = int(setting)
    except (TypeError, ValueError):
        count = 0
    if count < 1 or str(setting).strip() != str(count):
        raise ConfigError(f"evaluation.workers must be 'auto' or a positive integer, got {setting!r}")
    if count > 1 and device.type != "cpu":
        raise ConfigError(f"evaluation.workers={count} needs the CPU (forked processes cannot share {device}); "
                         f"use evaluation.workers=1, or evaluation.points_per_batch to batch points on a GPU")
    if count > 1 and not sys.platform.startswith("linux"):
        raise ConfigError(f"evaluation.workers={count} needs Linux (the workers are forked); use evaluation.workers=1")
    return count


# A call is cut into about this many chunks per worker, handed out as workers finish: a worker whose
# core is busy with something else takes fewer chunks instead of holding up the whole call.
CHUNKS_PER_WORKER = 8


def _state_bytes(theta: ParamDict, directions: Sequence[ParamDict]) -> bytes:
    buffer = io.BytesIO()
    torch.save({"theta": theta, "directions": list(directions)}, buffer)  # by value, any dtype
    return buffer.getvalue()


def _load_state(data: bytes) -> tuple[ParamDict, list[ParamDict]]:
    state = torch.load(io.BytesIO(data), weights_only=True)
    return state["theta"], state["directions"]


class PointWorkers:
    """``count`` forked processes that each run ``evaluate(theta, directions, coordinates, points_per_batch,
    *options)`` on the chunks of points they are handed (``options``: picklable settings, e.g. a precision)."""

    def __init__(self, evaluate: Evaluate, count: int):
        context = multiprocessing.get_context("fork")
        self.connections, self.processes = [], []
        for _ in range(count):
            ours, theirs = context.Pipe()
            # the parent's ends of the earlier workers' pipes are closed in the child (else a worker
            # would keep its siblings' pipes open, and none would see the parent go)
            process = context.Process(target=_serve, args=(theirs, evaluate, list(self.connections), os.getpid()),
                                      name="scan-point-worker", daemon=True)
            process.start()  # (start() drops its reference to evaluate: no cycle back to the evaluator)
            theirs.close()
            self.connections.append(ours)
            self.processes.append(process)
        # per worker, the theta and directions it was last sent (kept alive, so that their ids stay theirs)
        self.held: list[tuple | None] = [None] * count
        self._stop = weakref.finalize(self, _stop, self.connections, self.processes)

    def evaluate(self, theta: ParamDict, directions: Sequence[ParamDict], coordinates: torch.Tensor,
                 points_per_batch: int = 1, *options) -> torch.Tensor:
        """``evaluate`` at every row of ``coordinates``, in order; chunks of rows go to whichever worker is free."""
        current = (theta, list(directions))
        state: bytes | None = None  # serialized once, for the workers that do not hold it yet
        chunks = list(coordinates.tensor_split(min(len(coordinates), CHUNKS_PER_WORKER * len(self.processes))))
        results: list[np.ndarray | None] = [None] * len(chunks)
        pending, busy, errors = iter(range(len(chunks))), {}, []

        def hand_out(worker: int) -> None:
            nonlocal state
            index = next(pending, None)
            if index is None:
                return
            send_state = not _same_objects(self.held[worker], current)
            if send_state and state is None:
                state = _state_bytes(theta, directions)
            request = (chunks[index].cpu().numpy(), points_per_batch, state if send_state else None, options)
            self._send(worker, pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
            self.held[worker] = current
            busy[self.connections[worker]] = (worker, index)

        try:
            for worker in range(len(self.processes)):
                hand_out(worker)
            while busy:
                for connection in wait(list(busy)):
                    worker, index = busy.pop(connection)
                    kind, payload = self._receive(worker)
                    if kind == "error":
                        errors.append(payload)  # no new work; the others finish theirs, so the pipes stay in step
                    else:
                        results[index] = payload
                        if not errors:
                            hand_out(worker)
        except BaseException:  # e.g. Ctrl-C: replies may still be on their way, so these pipes can never be trusted again
            self.close()
            raise
        if errors:
            raise RuntimeError(f"a scan worker process failed:\n{errors[0]}")
        values = torch.from_numpy(np.concatenate(results)) if results else torch.empty(0, 2)
        return values.to(device=coordinates.device, dtype=coordinates.dtype)

    def close(self) -> None:
        self._stop()

    @property
    def alive(self) -> bool:
        """False once closed, also after a worker was lost (the evaluator then starts new ones)."""
        return self._stop.alive

    def _send(self, worker: int, message: bytes) -> None:
        try:
            self.connections[worker].send_bytes(message)
        except OSError:
            self._lost(worker)

    def _receive(self, worker: int) -> tuple[str, object]:
        try:
            return pickle.loads(self.connections[worker].recv_bytes())
        except (EOFError, OSError):
            self._lost(worker)

    def _lost(self, worker: int):
        process = self.processes[worker]
        process.join(timeout=1.0)
        self.close()
        raise RuntimeError(f"scan worker process {process.pid} exited with code {process.exitcode} (killed, or out of "
                           "memory?); the finished points are saved: rerun to resume, with evaluation.workers=1 to "
                           "evaluate in the main process")


def _same_objects(held: tuple | None, current: tuple) -> bool:
    return held is not None and held[0] is current[0] and len(held[1]) == len(current[1]) \
        and all(a is b for a, b in zip(held[1], current[1]))


def _serve(connection, evaluate: Evaluate, siblings=(), parent: int | None = None) -> None:
    """A worker's loop: one chunk of points in, its values out, until the parent says stop or is gone."""
    die_with_parent(parent)
    for sibling in siblings:
        sibling.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it stops the workers
    torch.set_num_threads(1)  # one core per worker: the parallelism is over points
    theta, directions = None, None
    while True:
        try:
            message = connection.recv_bytes()
        except (EOFError, OSError):
            return  # the parent is gone
        if not message:
            return
        try:
            coordinates, points_per_batch, state, options = pickle.loads(message)
            if state is not None:
                theta, directions = _load_state(state)
            values = evaluate(theta, directions, torch.from_numpy(coordinates), points_per_batch, *options)
            reply = ("values", values.cpu().numpy())
        except Exception:  # noqa: BLE001 - sent to the parent, which raises it
            reply = ("error", traceback.format_exc())
        try:
            connection.send_bytes(pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            return


def die_with_parent(parent: int | None) -> None:
    """Ask Linux to kill this process when its parent dies, even by SIGKILL (which runs no clean-up in
    the parent): a killed job leaves no workers behind holding memory."""
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the closed pipes still end the loop when the parent goes
        return
    if parent is not None and os.getppid() != parent:  # the parent died before the request was made
        os._exit(0)


def _stop(connections, processes) -> None:
    """Ask every worker to finish, then make sure: a worker stuck in a computation is killed."""
    for connection in connections:
        try:
            connection.send_bytes(b"")
        except OSError:
            pass
    for process in processes:
        process.join(timeout=2.0)
        if process.is_alive():
            process.kill()
            process.join(timeout=2.0)
    for connection in connections:
        connection.close()
