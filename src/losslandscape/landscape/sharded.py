"""One scan sharded over the ranks of a ``torch.distributed`` process group (DESIGN.md section 6).

Every rank evaluates one contiguous share of the grid in blocks, resumable from its own
``<name>.rank<R>.partial.npz``; the shares are gathered and rank 0 writes the same ``.npz`` that
:func:`~losslandscape.landscape.scans.run_scan` writes in one process: same arrays, same
provenance keys and values, and on CPU bit-identical numbers (tested in ``tests/test_sharded.py``).

Why bit-identical: a grid point's numbers depend only on the batch of points it is evaluated
with (``points_per_batch > 1`` batches points through ``vmap``, whose kernels may round
differently for another batch size). ``run_scan`` evaluates whole batches counted from the grid's
first point, and shards are cut on the same batch boundaries, so every point is evaluated in
exactly the batch it gets in ``run_scan``; with one point at a time any cut is exact. Assumed: the same machine, the same
``torch`` and the same number of intra-op threads (BLAS kernels may split sums by thread count).

The final file is written by ``run_scan`` itself: rank 0 stores the gathered values as
``run_scan``'s own finished partial file, and ``run_scan`` resumes from it with nothing left to
evaluate, assembling grids and provenance by its own code path.
"""

from __future__ import annotations

import functools
import os
import socket
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..files import stable_hash
from ..store import load_arrays, save_arrays
from ..progress import progress_bar
from .evaluator import Evaluator, ParamDict
from .scans import SAVE_EVERY_S, LineScan, PlaneScan, RingScan, ScanResult, evaluate_in_blocks, partial_path, run_scan, scan_fingerprint

Scan = LineScan | PlaneScan | RingScan


def shard_indices(num_points: int, rank: int, world_size: int, unit: int = 1) -> slice:
    """The contiguous share ``slice(start, stop)`` of ``range(num_points)`` that ``rank`` evaluates.

    The points are cut into ``ceil(num_points / unit)`` units, the last one possibly short, and
    each rank gets ``units // world_size`` of them in rank order, the last ``units % world_size``
    ranks one more: the short unit then sits on a rank with an extra one, so shares never differ
    by more than one unit (``numpy.array_split`` gives the extras to the first ranks instead,
    which can put a short share next to a long one: 20 and 15 points for 35 in units of 4).
    Contiguous rather than strided because a share of a row-major grid is then one slice: the
    gather is a concatenation, resuming needs one "done" counter (as in ``run_scan``), and a share
    starts on a vmap batch boundary of ``run_scan`` when ``unit`` is its batch of points. Every grid point
    costs the same (one pass over the split), so striding would not balance anything better.
    A rank beyond the number of units gets an empty share.
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size) with world_size >= 1, got rank={rank}, world_size={world_size}")
    if num_points < 0 or unit < 1:
        raise ValueError(f"need num_points >= 0 and unit >= 1, got num_points={num_points}, unit={unit}")
    units = -(-num_points // unit)
    base, extra = divmod(units, world_size)
    plain = world_size - extra  # ranks without an extra unit come first
    first = rank * base + max(0, rank - plain)
    last = first + base + (rank >= plain)
    return slice(min(first * unit, num_points), min(last * unit, num_points))


def rank_fingerprint(fingerprint: str, rank: int, world_size: int, shard: slice) -> str:
    """Fingerprint of one rank's partial file: a restart resumes it only with the same group and share."""
    return stable_hash({"scan": fingerprint, "rank": rank, "world_size": world_size, "shard": [shard.start, shard.stop]})


def run_sharded_scan(
    scan: Scan,
    theta: ParamDict,
    directions: Sequence[ParamDict],
    evaluators: dict[str, Evaluator],
    path: str | Path,
    provenance: dict[str, Any] | None = None,
    points_per_batch: int = 1,
    progress: bool = True,
    save_every_s: float = SAVE_EVERY_S,
) -> ScanResult:
    """``run_scan`` with the grid shared out over the initialized process group.

    Every rank must call it with the same inputs (checked: the fingerprints are compared before
    any work). Rank 0 writes ``path``; every rank returns the same :class:`ScanResult`, broadcast
    from rank 0 after the file is saved (so a returned result means the file exists; a failure
    on rank 0 is raised on every rank instead of leaving them waiting). Each rank keeps its
    progress in ``path.rank<R>.partial.npz`` and deletes it only then, so a restart of any rank
    resumes. Only rank 0 draws a progress bar (shares are equal, it stands for all).
    Without a process group, or with one rank, this is ``run_scan``.
    """
    if not dist.is_available() or not dist.is_initialized() or dist.get_world_size() == 1:
        return run_scan(scan, theta, directions, evaluators, path, provenance, points_per_batch, progress, save_every_s)
    if len(directions) != scan.num_directions:
        raise ValueError(f"{scan.kind} scan needs {scan.num_directions} direction(s), got {len(directions)}")
    if getattr(scan, "refine", None) is not None:  # its points are chosen round by round, from the values so far
        raise ValueError(f"scan {scan.name!r}: a refined plane is not sharded; run it in one process "
                         f"(world size 1) or without scan.{scan.name}.refine")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    fingerprint = scan_fingerprint(scan, theta, directions, evaluators)
    _check_same_inputs(fingerprint)
    if (done := load_arrays(path, fingerprint)) is not None:  # every rank reads the same finished file
        return ScanResult.from_arrays(*done)

    coordinates = scan.coordinates()
    unit = points_per_batch  # whole vmap batches, as run_scan evaluates them
    shard = shard_indices(len(coordinates), rank, world_size, unit)
    partial = partial_path(path, rank)
    bar = progress_bar(total=shard.stop - shard.start, desc=f"scan {scan.name} (rank 0 of {world_size})", disable=not progress or rank != 0, leave=False)
    mine = evaluate_in_blocks(coordinates[shard], theta, directions, evaluators, partial,
                              rank_fingerprint(fingerprint, rank, world_size, shard), points_per_batch, bar, save_every_s,
                              getattr(scan, "precision", None))
    bar.close()
    values = _gather_shares(mine, len(coordinates), unit)
    result = _save_on_rank0(values, scan, theta, directions, evaluators, path, provenance, fingerprint)
    partial.unlink(missing_ok=True)  # the final file exists now: this rank's progress is no longer needed
    return result


def _check_same_inputs(fingerprint: str) -> None:
    """Refuse, on every rank alike, to merge shares of different scans (e.g. unseeded directions)."""
    prints = [None] * dist.get_world_size()
    dist.all_gather_object(prints, fingerprint)
    if len(set(prints)) > 1:
        raise ValueError(
            f"run_sharded_scan needs the same scan, theta, directions and splits on every rank, "
            f"but their fingerprints differ by rank: {prints}; build the inputs from the same files or seeds"
        )


def _gather_shares(mine: np.ndarray, num_points: int, unit: int) -> np.ndarray:
    """All ranks' shares, concatenated in rank order (on every rank; only rank 0 uses them).

    ``all_gather`` needs equal shapes, so shares are padded with NaN to the largest; the true sizes
    need no exchange, every rank recomputes them with :func:`shard_indices`. ``all_gather`` rather
    than ``gather`` because NCCL and Gloo both have it; the grid is small next to one evaluation.
    """
    world_size = dist.get_world_size()
    sizes = [_len(shard_indices(num_points, r, world_size, unit)) for r in range(world_size)]
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    padded = torch.full((max(sizes), *mine.shape[1:]), float("nan"), dtype=torch.float64, device=device)
    padded[: len(mine)] = torch.from_numpy(mine)
    shares = [torch.empty_like(padded) for _ in range(world_size)]
    dist.all_gather(shares, padded)
    return np.concatenate([share[:size].cpu().numpy() for share, size in zip(shares, sizes)])


def _len(share: slice) -> int:
    return share.stop - share.start


def _save_on_rank0(values, scan, theta, directions, evaluators, path, provenance, fingerprint) -> ScanResult:
    """Rank 0 finishes through ``run_scan`` and broadcasts the result, or its error, to every rank."""
    outcome: Any = None
    if dist.get_rank() == 0:
        try:
            # run_scan's own partial file, complete: run_scan resumes it, evaluates nothing, and
            # assembles, saves and cleans up exactly as it does for a scan it ran itself
            save_arrays(partial_path(path), {"values": values, "done": len(values)}, {}, fingerprint)
            guarded = {split: _AlreadyEvaluated(e) for split, e in evaluators.items()}
            outcome = run_scan(scan, theta, directions, guarded, path, provenance, progress=False)
        except Exception as error:  # noqa: BLE001 - re-raised below, on every rank
            outcome = error
    box = [outcome]
    dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], BaseException):
        raise RuntimeError(f"rank 0 could not write the sharded scan to {path}: {box[0]!r}") from box[0]
    return box[0]


class _AlreadyEvaluated:
    """Stands in for an evaluator when ``run_scan`` should only assemble: evaluating anything means
    ``run_scan`` did not accept the gathered values, i.e. its fingerprint no longer matches
    :func:`scan_fingerprint`, and recomputing the whole grid on rank 0 must not happen silently."""

    def __init__(self, evaluator: Evaluator):
        self.evaluator = evaluator

    def __len__(self) -> int:
        return len(self.evaluator)

    @property
    def criterion(self):
        return self.evaluator.criterion

    @property
    def fingerprint(self) -> dict:
        return self.evaluator.fingerprint

    @property
    def metric_names(self) -> tuple[str, ...]:
        return self.evaluator.metric_names

    def certified_at(self, *args, **kwargs):
        raise RuntimeError(
            "run_scan ignored the gathered values of the sharded scan: scans.run_scan's fingerprint "
            "no longer matches sharded.scan_fingerprint; keep the two in step"
        )

    metrics_at = certified_at


def free_loopback_port() -> int:
    """A TCP port that is free on 127.0.0.1 now (the OS picks it when binding to port 0).

    Another process could take it before the group starts; that fails loudly, rerun then."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_sharded(fn: Callable[[int, int], Any], world_size: int, backend: str = "gloo") -> None:
    """Run ``fn(rank, world_size)`` in ``world_size`` new processes joined in one process group.

    The processes are started with ``torch.multiprocessing.spawn`` (so ``fn`` must be picklable:
    a module-level function or a ``functools.partial`` of one) and meet on a free port of
    127.0.0.1: one machine, and both the rendezvous store and Gloo's connections listen on the
    loopback interface only. ``backend="nccl"`` puts rank ``r`` on ``cuda:r`` (untested here).
    Returns when every rank has finished; an exception in any rank is raised here. Ranks report
    through files (e.g. the scan's ``.npz``), not return values. Each process uses torch's default
    number of threads; call ``torch.set_num_threads`` in ``fn`` to avoid oversubscribing cores.
    """
    if world_size < 1:
        raise ValueError(f"world_size must be at least 1, got {world_size}")
    mp.spawn(functools.partial(_rank_main, fn=fn, backend=backend, port=free_loopback_port()),
             args=(world_size,), nprocs=world_size, join=True)


def _rank_main(rank: int, world_size: int, fn: Callable[[int, int], Any], backend: str, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # for code in fn that reads them
    loopback = _loopback_interface()
    if loopback:  # Gloo would otherwise pick the interface the host name resolves to
        os.environ["GLOO_SOCKET_IFNAME"] = loopback
    if backend == "nccl":
        torch.cuda.set_device(rank)
    dist.init_process_group(backend, store=_loopback_store(rank, world_size, port), rank=rank, world_size=world_size)
    try:
        fn(rank, world_size)
    finally:
        dist.destroy_process_group()


def _loopback_store(rank: int, world_size: int, port: int) -> dist.TCPStore:
    """The rendezvous store, served by rank 0 on 127.0.0.1 only.

    A plain ``TCPStore`` master listens on every interface whatever its host name says, so rank 0
    binds the listening socket itself and hands it over (``master_listen_fd``)."""
    if rank != 0:
        return dist.TCPStore("127.0.0.1", port, world_size, is_master=False)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    return dist.TCPStore("127.0.0.1", port, world_size, is_master=True, master_listen_fd=listener.detach())


def _loopback_interface() -> str | None:
    """Name of the loopback network interface (``lo`` on Linux, ``lo0`` on macOS), if there is one."""
    try:
        return next((name for _, name in socket.if_nameindex() if name.startswith("lo")), None)
    except OSError:
        return None
