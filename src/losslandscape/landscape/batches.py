"""Where the objective's batches come from: a split resident on the device, or streamed to it.

The evaluator sums per-batch terms over fixed batch boundaries (``batch_size`` consecutive
examples) in a fixed order. Both sources here yield exactly those batches, so a streamed split
gives the resident numbers bit for bit on the CPU: only where the bytes wait differs.

- :class:`ResidentBatches`: the split is moved to the device once and a batch is a slice of it
  (no copy): a grid point costs the forward passes and nothing else. The default while it fits.
- :class:`StreamedBatches`: the split stays in host memory (or wherever its tensors live, e.g. a
  memory-mapped file) and a ``torch.utils.data.DataLoader`` hands the batches over one at a time.
  A grid point, a Hessian-vector product or a full-split gradient costs one pass over the loader.

:func:`batch_source` chooses between them by ``evaluation.resident`` and its memory budget
(:class:`Residency`). Engines that need the whole split at hand (the first-layer shortcut, which
keeps per-batch outputs of the whole split) ask :attr:`streamed` and fall back to the plain path.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, get_worker_info

from ..errors import ConfigError

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]

RESIDENT_CHOICES = ("auto", True, False)

# Streams a forked process inherited from its parent. Dropping one would run its shutdown here and
# stop the parent's loader processes through the queues they share, so they are kept, unused.
_INHERITED_STREAMS: list = []


@dataclass(frozen=True)
class Residency:
    """``evaluation.resident`` and the loader settings of a streamed split.

    ``resident``: ``True`` keeps every split on the device, ``False`` streams every split,
    ``auto`` keeps a split resident when its inputs and targets take at most ``budget_mb``.
    ``loader_workers`` DataLoader processes each load ``prefetch_factor`` batches ahead; ``auto`` is
    none on the CPU and 2 elsewhere. On the CPU a batch of a split in memory is a free slice, and
    handing it over from a worker process costs more than that (benchmarks/streamed_scan.py); on a
    GPU the workers cut and pin the next batches while the device computes.
    """

    resident: bool | str = True
    budget_mb: float = 4096.0
    loader_workers: int | str = "auto"
    prefetch_factor: int = 2

    def __post_init__(self):
        problems = []
        if self.resident not in RESIDENT_CHOICES or isinstance(self.resident, int) and not isinstance(self.resident, bool):
            problems.append(f"evaluation.resident={self.resident!r}: expected auto, true or false")
        if not float(self.budget_mb) > 0:
            problems.append(f"evaluation.resident_budget_mb={self.budget_mb!r}: expected a number of megabytes > 0")
        if self.loader_workers != "auto" and not (type(self.loader_workers) is int and self.loader_workers >= 0):
            problems.append(f"evaluation.loader_workers={self.loader_workers!r}: expected auto or an integer >= 0 (0 = load in this process)")
        if int(self.prefetch_factor) < 1:
            problems.append(f"evaluation.prefetch_factor={self.prefetch_factor!r}: expected an integer >= 1")
        if problems:
            raise ConfigError(*problems)

    @classmethod
    def from_config(cls, evaluation: Any) -> Residency:
        """The settings of an ``evaluation`` config node (absent keys: resident, as before streaming existed)."""
        defaults = cls()
        return cls(evaluation.get("resident", defaults.resident), float(evaluation.get("resident_budget_mb", defaults.budget_mb)),
                   evaluation.get("loader_workers", defaults.loader_workers),
                   int(evaluation.get("prefetch_factor", defaults.prefetch_factor)))

    def workers_for(self, device: torch.device) -> int:
        if self.loader_workers == "auto":
            return 0 if torch.device(device).type == "cpu" else 2
        return int(self.loader_workers)

    def keeps_resident(self, x: torch.Tensor, y: torch.Tensor) -> bool:
        if self.resident != "auto":
            return bool(self.resident)
        return split_bytes(x, y) <= float(self.budget_mb) * 2**20


# evaluation.batch_size: auto. On an accelerator, and wherever the batch is part of what is measured
# (BatchNorm statistics of each batch, or re-estimated batch by batch), a pass is this many examples.
FULL_BATCH = 4096
# On a CPU, a forward pass whose activations outgrow the caches runs at the speed of main memory:
# auto takes the largest power-of-two batch whose largest activation stays within this many bytes
# (the knee lies between 16 and 32 MB for the CNNs of benchmarks/eval_batch_size.py).
CPU_ACTIVATION_BUDGET = 16 * 2**20


def auto_batch_size(model: torch.nn.Module, example: torch.Tensor, batch_statistics: bool) -> int:
    """``evaluation.batch_size: auto`` for ``model`` on its device: :data:`FULL_BATCH`, or on a CPU the
    largest power of two up to it whose largest activation fits :data:`CPU_ACTIVATION_BUDGET`
    (``example``: a couple of the split's inputs, for one forward pass with hooks)."""
    device = next(model.parameters()).device
    if device.type != "cpu" or batch_statistics:
        return FULL_BATCH
    per_example = largest_activation_bytes(model, example.to(device)) / len(example)
    fits = int(CPU_ACTIVATION_BUDGET // max(per_example, 1))
    return min(FULL_BATCH, 1 << max(fits.bit_length() - 1, 0))


def largest_activation_bytes(model: torch.nn.Module, batch: torch.Tensor) -> int:
    """Bytes of the largest tensor any submodule of ``model`` returns on ``batch``."""
    sizes = [batch.numel() * batch.element_size()]
    hooks = [module.register_forward_hook(lambda module, args, output: sizes.append(tensor_bytes(output)))
             for module in model.modules()]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return max(sizes)


def tensor_bytes(output: Any) -> int:
    """Bytes of the largest tensor in a module's output (a tensor, a tuple, a dict or a model-output record)."""
    if isinstance(output, torch.Tensor):
        return output.numel() * output.element_size()
    if isinstance(output, dict):
        output = list(output.values())
    if isinstance(output, (tuple, list)):
        return max((tensor_bytes(o) for o in output), default=0)
    return 0


def split_bytes(x: torch.Tensor, y: torch.Tensor) -> int:
    """What a split takes on the device: its inputs and its targets."""
    return x.numel() * x.element_size() + y.numel() * y.element_size()


def batch_source(x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
                 residency: Residency | None = None) -> ResidentBatches | StreamedBatches:
    """The split's batches, resident or streamed as ``residency`` decides (``None``: resident)."""
    residency = residency or Residency()
    if residency.keeps_resident(x, y):
        return ResidentBatches(x.to(device), y.to(device), batch_size)
    log.info("streaming a split of %d examples (%.1f MB, evaluation.resident=%s, budget %g MB) to %s in batches of %d",
             len(y), split_bytes(x, y) / 2**20, residency.resident, residency.budget_mb, device, batch_size)
    return StreamedBatches(x, y, batch_size, device, residency.workers_for(device), residency.prefetch_factor)


class ResidentBatches:
    """A split on the device; batch ``i`` is the slice ``[i * batch_size, (i + 1) * batch_size)``."""

    streamed = False
    vmap_randomness = "error"  # vmap's default: a random operation in a scanned model is an error

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int):
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self.device = x.device

    def __len__(self) -> int:
        return len(self.y)

    def __iter__(self) -> Iterator[Batch]:
        for start in range(0, len(self.y), self.batch_size):
            yield self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]

    def first(self, count: int) -> torch.Tensor:
        """The first ``count`` inputs on the device (examples that engines probe the model with)."""
        return self.x[:count]

    def take(self, indices: torch.Tensor) -> Batch:
        """The examples ``indices`` on the device (a mining mini-batch)."""
        indices = indices.to(self.x.device)
        return self.x[indices], self.y[indices]

    def parts(self, batches: int) -> Iterator[ResidentBatches]:
        """Consecutive runs of ``batches`` batches, each a split of its own (the terms of a Hessian)."""
        span = batches * self.batch_size
        for start in range(0, len(self.y), span):
            yield ResidentBatches(self.x[start : start + span], self.y[start : start + span], self.batch_size)


class _BatchSlices(Dataset):
    """Item ``i`` is evaluation batch ``i``: the loader hands over exactly the resident path's slices."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int):
        self.x, self.y, self.batch_size = x, y, batch_size

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __getitem__(self, index: int) -> Batch:
        start = index * self.batch_size
        xb, yb = self.x[start : start + self.batch_size], self.y[start : start + self.batch_size]
        # a worker process sends tensors through shared memory by whole storages: a slice would move
        # the whole split there, a copy moves one batch
        return (xb.clone(), yb.clone()) if get_worker_info() is not None else (xb, yb)


class _Forever(Sampler):
    """Batch indices 0, 1, ..., n - 1, 0, 1, ...: one stream serves pass after pass."""

    def __init__(self, count: int):
        self.count = count

    def __iter__(self) -> Iterator[int]:
        return itertools.cycle(range(self.count))


class StreamedBatches:
    """A split in host memory, streamed to the device batch by batch through a ``DataLoader``.

    Loading overlaps compute: ``loader_workers`` processes (none: load in this process, the CPU's
    default) cut and copy the next batches (up to ``prefetch_factor`` each) while this process
    computes on the current one, and on CUDA the
    batches come in pinned memory, so their copy to the device runs asynchronously behind the
    kernels already queued. The loader cycles through the split forever and a pass takes the next
    ``len(self.parts)`` batches, so the workers also load the first batches of the next grid point
    while the last ones of this point are computed. A pass that stops early drops its stream (the
    next one starts afresh at batch 0): every pass sees the same batches in the same order.
    """

    streamed = True
    # a new loader iterator draws its workers' seed, a random operation that vmap refuses by default;
    # it is the only one (the evaluated model is deterministic in eval mode), so "same" changes no number
    vmap_randomness = "same"

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, device: torch.device,
                 loader_workers: int = 2, prefetch_factor: int = 2):
        self.x, self.y, self.batch_size = x, y, int(batch_size)
        self.device = torch.device(device)
        self.loader_workers, self.prefetch_factor = int(loader_workers), int(prefetch_factor)
        self.slices = _BatchSlices(x, y, self.batch_size)
        self.pin = self.device.type == "cuda"
        self._idle: tuple[int, Iterator[Batch]] | None = None  # (owning process, a stream standing at batch 0)

    def __len__(self) -> int:
        return len(self.y)

    def __iter__(self) -> Iterator[Batch]:
        stream = self._stream()
        for _ in range(len(self.slices)):
            xb, yb = next(stream)
            yield xb.to(self.device, non_blocking=self.pin), yb.to(self.device, non_blocking=self.pin)
        self._idle = (os.getpid(), stream)  # reached only after a whole pass: the stream stands at batch 0

    def _stream(self) -> Iterator[Batch]:
        """The idle stream of this process, or a new one (a forked point worker never uses its parent's)."""
        idle, self._idle = self._idle, None
        if idle is not None and idle[0] == os.getpid():
            return idle[1]
        if idle is not None:
            _INHERITED_STREAMS.append(idle)
        # a daemon process (a point worker) may not start processes of its own: it loads in-process
        workers = 0 if multiprocessing.current_process().daemon else self.loader_workers
        # its own generator: the workers' seeds are not drawn from (and do not shift) the global random state
        loader = DataLoader(self.slices, batch_size=None, sampler=_Forever(len(self.slices)), num_workers=workers,
                            pin_memory=self.pin, prefetch_factor=self.prefetch_factor if workers else None,
                            generator=torch.Generator())
        return iter(loader)

    def first(self, count: int) -> torch.Tensor:
        return self.x[:count].to(self.device)

    def take(self, indices: torch.Tensor) -> Batch:
        indices = indices.to(self.x.device)
        return self.x[indices].to(self.device), self.y[indices].to(self.device)

    def parts(self, batches: int) -> Iterator[ResidentBatches]:
        """Runs of ``batches`` batches from one pass over the loader, each resident while it is used."""
        batch_iter = iter(self)
        while run := list(itertools.islice(batch_iter, batches)):
            x, y = run[0] if len(run) == 1 else (torch.cat([b[0] for b in run]), torch.cat([b[1] for b in run]))
            yield ResidentBatches(x, y, self.batch_size)
