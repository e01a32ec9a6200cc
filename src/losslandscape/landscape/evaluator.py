"""The objective every measure is a function of: (model, data, loss, BatchNorm policy) at
``theta + sum_i a_i d_i``, on resident or streamed data, giving the mean loss and the loss's metric.

Scans call it under ``torch.inference_mode``; mining and Hessian-vector products differentiate
through :meth:`Evaluator.metrics`. Data lives on the model's device for the whole scan while it fits
(:mod:`.batches`), so a grid point costs one forward pass over the split and nothing else; a split
too large for that is streamed to the device, one pass over a DataLoader per point, with the same
batches and hence the same numbers. The fast paths (the moved copy, the first-layer shortcut, the
class-major head, the point workers, vmap) are engines under it: each applies only where its
preconditions hold and gives the plain definition's numbers.
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Sequence

import torch
from torch.func import functional_call, replace_all_batch_norm_modules_, vmap

from ..losses import Loss, as_loss
from ..store import content_digest

from .batches import Residency, auto_batch_size, batch_source
from .certified import (CERTIFIED_COLUMNS, Precision, certified_columns, example_permutation, read_batches,
                        read_batches_together)
from .first_layer import FirstLayerShortcut
from .last_layer import ClassMajorHead
from .point_workers import PointWorkers, resolve_workers

ParamDict = dict[str, torch.Tensor]

BN_MODES = ("eval", "recompute", "train")


def parameters_of(model: torch.nn.Module) -> ParamDict:
    """A detached copy of the model's parameters: the ``theta`` every measure is taken around."""
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def point(theta: ParamDict, directions: Sequence[ParamDict], coordinates: torch.Tensor) -> ParamDict:
    """``theta + sum_i coordinates[i] * directions[i]``."""
    return {
        name: value + sum(c * d[name] for c, d in zip(coordinates, directions))
        for name, value in theta.items()
    }


class FlatPoints:
    """``point`` for a whole scan: theta and the directions flattened once, a point is one ``addmv``.

    Builds the same parameters as :func:`point` (up to float rounding) without a Python loop over
    tensors and directions at every grid point: on small models that loop cost as much as the
    forward pass (benchmarks/scan_overhead.py). Works under ``vmap`` (batched coordinates).
    """

    def __init__(self, theta: ParamDict, directions: Sequence[ParamDict]):
        self.names = list(theta)
        self.shapes = [theta[n].shape for n in self.names]
        self.sizes = [theta[n].numel() for n in self.names]
        self.theta = torch.cat([theta[n].reshape(-1) for n in self.names])
        # (k, P) stacked then transposed: a column-major (P, k) matrix, the fast layout for addmv
        self.matrix = torch.stack([torch.cat([d[n].reshape(-1) for n in self.names]) for d in directions]).T

    def __call__(self, coordinates: torch.Tensor) -> ParamDict:
        flat = torch.addmv(self.theta, self.matrix, coordinates)
        return {n: t.view(s) for n, t, s in zip(self.names, flat.split(self.sizes), self.shapes)}


class MovableCopy:
    """A private copy of a model whose parameters are views of one flat vector.

    Moving it to a point writes ``theta + coordinates @ directions`` into that vector (one
    ``addmv``) and the copy is then called like any module: no parameter dict and no
    ``functional_call`` per point, whose bookkeeping cost as much as the forward pass of a small
    model. Scans use it under inference mode, one point at a time (vmap needs the functional path).
    """

    def __init__(self, model: torch.nn.Module, theta: ParamDict, example: torch.Tensor, class_major: bool = True):
        with torch.inference_mode(False):  # a normal tensor, writable in and out of inference mode
            self.model = copy.deepcopy(model).requires_grad_(False)
            self.flat = torch.cat([theta[n].detach().reshape(-1) for n in theta])
        self.names = list(theta)
        parameters = dict(self.model.named_parameters())
        for name, view in zip(self.names, self.flat.split([theta[n].numel() for n in theta])):
            parameters[name].data = view.view(theta[name].shape)
        # its parameters are views too: it moves with the copy (plain cross-entropy only)
        self.head = ClassMajorHead.build(self.model, example) if class_major else None

    def move_to(self, points: FlatPoints, coordinates: torch.Tensor) -> torch.nn.Module:
        torch.addmv(points.theta, points.matrix, coordinates, out=self.flat)
        return self.model


def as_dtype(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Float data in ``dtype`` (a float64 Hessian); integers (class indices, token ids) stay as they are."""
    return tensor.to(dtype) if tensor.is_floating_point() else tensor


def has_shared_tensors(model: torch.nn.Module) -> bool:
    named = [*model.named_parameters(remove_duplicate=False), *model.named_buffers(remove_duplicate=False)]
    return len({id(t) for _, t in named}) < len(named)


def has_batch_norm(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


class Evaluator:
    """The objective on one split: mean loss and metric of ``model`` under ``loss`` (default:
    cross-entropy and accuracy, :mod:`losslandscape.losses`), at any parameters.

    BatchNorm at a perturbed point (DESIGN.md section 4) follows ``bn_mode``:
    ``eval`` uses theta's running statistics (a pure function of the parameters, the default);
    ``recompute`` re-estimates the statistics at every point from ``bn_x`` (a few training batches)
    before evaluating; ``train`` normalizes every evaluation batch by its own statistics.

    ``workers > 1`` (CPU only) shares the points of every :meth:`metrics_at` call out over that
    many forked single-threaded processes (:mod:`.point_workers`), each with ``first_layer_mb /
    workers`` for its first-layer outputs; they are started on the first call and stopped when the
    evaluator is dropped.

    ``residency`` (:class:`~.batches.Residency`, default: resident) keeps the split on the device
    or streams it from host memory in the same batches (``evaluation.resident``).

    ``batch_size`` examples go through the model at once: ``"auto"`` (the default,
    :func:`~.batches.auto_batch_size`) sizes it to the CPU's caches or fills an accelerator, ``None``
    takes the whole split as one batch.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int | str | None = "auto",
        bn_mode: str = "eval",
        bn_x: torch.Tensor | None = None,
        first_layer_mb: float = 0.0,
        workers: int = 1,
        loss: Loss | None = None,
        residency: Residency | None = None,
    ):
        if len(x) != len(y) or len(x) == 0:
            raise ValueError(f"evaluation data needs as many targets as inputs, got {len(x)} inputs and {len(y)} targets")
        if bn_mode not in BN_MODES:
            raise ValueError(f"unknown BatchNorm mode {bn_mode!r}: expected one of {', '.join(BN_MODES)}")
        if bn_mode == "recompute" and bn_x is None:
            raise ValueError("bn_mode='recompute' needs bn_x, the training inputs the statistics are estimated on")
        self.model = model.eval()
        self.bn_mode = bn_mode if has_batch_norm(model) else "eval"
        self.buffers = {name: b.detach() for name, b in model.named_buffers()}
        # functional_call re-ties shared weights on every call (a walk over all modules); skip it where none are shared
        self.tie_weights = has_shared_tensors(model)
        self.device = device = next(model.parameters()).device
        if batch_size == "auto":
            batch_size = auto_batch_size(model, x[:2], batch_statistics=self.bn_mode != "eval")
        if isinstance(batch_size, str):
            raise ValueError(f"evaluation batch_size must be a positive integer, 'auto' or None (the whole split), got {batch_size!r}")
        self.batch_size = int(batch_size or len(x))
        if self.batch_size < 1:
            raise ValueError(f"evaluation batch_size must be positive, got {batch_size}")
        self.residency = residency
        self.data = batch_source(x, y, self.batch_size, device, residency)  # resident or streamed, the same batches
        self.criterion = as_loss(loss).for_split(self.y)  # the loss, bound to this split's targets
        self.units = self.criterion.units(self.y)  # what the sums are divided by: examples or counted tokens
        self.bn_x = None if bn_x is None else bn_x.to(device)  # a few batches: resident even when the split is streamed
        self.workers = resolve_workers(workers, device)
        # memory for precomputed first-layer outputs, shared by the workers (each holds its own)
        self.first_layer_budget = float(first_layer_mb) * 2**20 / self.workers
        self.point_workers: PointWorkers | None = None
        self.certified_workers: PointWorkers | None = None  # the same, for certified_at
        self.permuted_copies: dict[int, Evaluator] = {}  # by seed: what early-stopped points read
        self.batch_units: list[int] | None = None  # units per batch, counted on first use
        self.movable: MovableCopy | None = None
        self.shortcut_cache: tuple | None = None
        if self.bn_mode == "train":
            # batch statistics without touching running buffers: safe under vmap and autograd
            self.model = copy.deepcopy(model).train()
            replace_all_batch_norm_modules_(self.model)
            self.buffers = {name: b.detach() for name, b in self.model.named_buffers()}
        if self.bn_mode == "recompute":
            self.model = copy.deepcopy(model).eval()
            for layer in self.model.modules():
                if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
                    layer.momentum = None  # a cumulative average over bn_x instead of an exponential one

    def __len__(self) -> int:
        return len(self.data)

    @property
    def x(self) -> torch.Tensor:
        """The split's inputs: on the device when resident, in host memory when streamed."""
        return self.data.x

    @property
    def y(self) -> torch.Tensor:
        return self.data.y

    @functools.cached_property
    def fingerprint(self) -> dict:
        """What this objective's numbers depend on besides the parameters, for the result store's keys:
        the examples and targets by content, the loss, the BatchNorm policy with the running statistics
        (``eval``) or the examples they are re-estimated on (``recompute``), the batch size where it
        changes more than rounding (``train`` and ``recompute`` normalize by batch), the model's
        structure, dtype and the device kind. The engines (workers, first-layer shortcut, vmap) are not
        in it: they give the plain definition's numbers."""
        batch_statistics = self.bn_mode != "eval"
        return {
            "data": content_digest({"x": self.x, "y": self.y}),
            "loss": self.criterion.describe(),
            "bn_mode": self.bn_mode,
            "bn": content_digest(self.bn_x if self.bn_mode == "recompute" else self.buffers),
            "batch_size": self.batch_size if batch_statistics else None,
            "model": repr(self.model),
            "dtype": str(next(self.model.parameters()).dtype),
            "device": self.device.type,  # where it is computed (a streamed split waits in host memory)
        }

    @property
    def metric_names(self) -> tuple[str, ...]:
        """The names of the numbers :meth:`metrics` returns: ``loss`` and the loss's metric, if it has one."""
        return ("loss",) if self.criterion.metric is None else ("loss", self.criterion.metric)

    def metrics(self, params: ParamDict) -> torch.Tensor:
        """``[mean loss, mean metric]`` over the whole split, summed batch by batch with exact weights."""
        return self._summed(self._functional(params))

    def _functional(self, params: ParamDict, shortcut: FirstLayerShortcut | None = None):
        """The model at ``params`` as a function of a data batch (differentiable, vmappable)."""
        buffers = self.recomputed_buffers(params) if self.bn_mode == "recompute" else self.buffers
        if shortcut is not None:  # the first layer's parameters are not needed: its output is precomputed
            params = {name: value for name, value in params.items() if name not in shortcut.param_names}
        state = {**params, **buffers}
        return lambda xb: functional_call(self.model, state, (xb,), tie_weights=self.tie_weights)

    def _summed(self, forward, shortcut: FirstLayerShortcut | None = None, coordinates=None,
                head: ClassMajorHead | None = None) -> torch.Tensor:
        """``[mean loss, mean metric]`` of ``forward`` (a module or function) over the split, batch by batch.

        With ``head`` installed, ``forward`` returns the features its last layer reads, and the head
        computes the logits (class-major) and both metrics."""
        sums = None  # [summed loss, summed metric]; no Python numbers: each costs a tensor op per point
        for index, (xb, yb) in enumerate(self.data):
            if shortcut is not None:
                shortcut.set_output(index, coordinates)
            output = forward(xb)
            batch = head.summed_metrics(output, yb) if head is not None else self.criterion.sums(output, yb)
            sums = batch if sums is None else sums + batch
        return sums / self.units

    def recomputed_buffers(self, params: ParamDict) -> dict[str, torch.Tensor]:
        """BatchNorm running statistics re-estimated at ``params``: a cumulative average over ``bn_x``."""
        buffers = {name: b.clone() for name, b in self.buffers.items()}
        for name, buffer in buffers.items():
            if name.endswith("running_mean") or name.endswith("num_batches_tracked"):
                buffer.zero_()
            elif name.endswith("running_var"):
                buffer.fill_(1.0)
        self.model.train()
        try:
            for start in range(0, len(self.bn_x), self.batch_size):
                functional_call(self.model, {**params, **buffers}, (self.bn_x[start : start + self.batch_size],))
        finally:
            self.model.eval()
        return buffers

    def loss(self, params: ParamDict) -> torch.Tensor:
        return self.metrics(params)[0]

    def batch_loss(self, params: ParamDict, indices: torch.Tensor) -> torch.Tensor:
        """Mean loss on the examples ``indices`` of the split: the differentiable mini-batch loss of mining."""
        buffers = self.recomputed_buffers(params) if self.bn_mode == "recompute" else self.buffers
        xb, yb = self.data.take(indices)
        outputs = functional_call(self.model, {**params, **buffers}, (xb,))
        return self.criterion.mean(outputs, yb)

    def metrics_at(
        self,
        theta: ParamDict,
        directions: Sequence[ParamDict],
        coordinates: torch.Tensor,
        points_per_batch: int = 1,
    ) -> torch.Tensor:
        """``(P, 2)`` metrics at the P points ``theta + coordinates[p] @ directions``.

        ``points_per_batch > 1`` evaluates that many points at once with ``torch.func.vmap``
        (one wide forward pass instead of several narrow ones; it pays off for small models on GPUs).
        With ``workers > 1`` the points are shared out over the worker processes.
        """
        coordinates = coordinates.to(device=self.device, dtype=next(iter(theta.values())).dtype)
        if self.workers > 1:  # every point, even a lone one: a point's numbers never depend on where blocks start
            if self.point_workers is None or not self.point_workers.alive:
                self.point_workers = PointWorkers(self._metrics_here, self.workers)
            return self.point_workers.evaluate(theta, directions, coordinates, points_per_batch)
        return self._metrics_here(theta, directions, coordinates, points_per_batch)

    def certified_at(self, theta: ParamDict, directions: Sequence[ParamDict], coordinates: torch.Tensor,
                     points_per_batch: int = 1, precision: Precision | None = None) -> torch.Tensor:
        """``(P, 5)`` :data:`~.certified.CERTIFIED_COLUMNS` at the P points: mean loss and metric (the
        numbers of :meth:`metrics_at`, bit for bit, when ``precision`` is None), their standard errors
        over the units read, and how many units were read.

        With a ``precision`` each point reads the examples in the seeded order of
        :meth:`permuted` and stops once precise enough; under vmap (``points_per_batch > 1``) a
        group of points reads together and each leaves the group where it would have stopped alone
        (:func:`~.certified.read_batches_together`)."""
        reader = self if precision is None else self.permuted(precision.seed)
        coordinates = coordinates.to(device=self.x.device, dtype=next(iter(theta.values())).dtype)
        if len(coordinates) == 0:
            return coordinates.new_empty(0, len(CERTIFIED_COLUMNS))
        if reader.workers > 1:
            if reader.certified_workers is None or not reader.certified_workers.alive:
                reader.certified_workers = PointWorkers(reader._certified_here, reader.workers)
            rows = reader.certified_workers.evaluate(theta, directions, coordinates, points_per_batch, precision)
        else:
            rows = reader._certified_here(theta, directions, coordinates, points_per_batch, precision)
        return certified_columns(rows)

    def permuted(self, seed: int) -> "Evaluator":
        """This evaluator with the split's examples in a fixed order drawn from ``seed`` (made once):
        batches read in order are then random samples, and every point reads the same ones."""
        if seed not in self.permuted_copies:
            order = example_permutation(len(self.y), seed).to(self.x.device)
            reordered = copy.copy(self)
            reordered.data = batch_source(self.x[order], self.y[order], self.batch_size, self.device, self.residency)
            reordered.point_workers = reordered.certified_workers = reordered.movable = reordered.shortcut_cache = None
            reordered.permuted_copies, reordered.batch_units = {}, None
            self.permuted_copies[seed] = reordered
        return self.permuted_copies[seed]

    def _certified_here(self, theta: ParamDict, directions: Sequence[ParamDict], coordinates: torch.Tensor,
                        points_per_batch: int = 1, precision: Precision | None = None) -> torch.Tensor:
        """:meth:`certified_at` in this process (also what every worker runs on its share)."""
        if precision is not None and points_per_batch > 1 and self.bn_mode != "recompute":
            return torch.cat([self._certified_together(theta, directions, group, precision)
                              for group in coordinates.split(points_per_batch)])

        def read(forward, shortcut=None, point=None, head=None):
            return self._read_batches(forward, shortcut, point, head, precision)

        # (re-estimated BatchNorm updates buffers in place: no vmap, one point at a time)
        return self._metrics_here(theta, directions, coordinates, points_per_batch if precision is None else 1, read)

    def _certified_together(self, theta: ParamDict, directions: Sequence[ParamDict], coordinates: torch.Tensor,
                            precision: Precision) -> torch.Tensor:
        """Early-stopped raw rows of a group of points read batch by batch, each batch one vmapped pass
        over the points still reading (the vmap engine of :meth:`_metrics_here`, turned inside out)."""
        points = FlatPoints(theta, directions)
        shortcut = self._shortcut(self.model, theta, directions)
        batches = iter(self.data)

        def batch_sums(index: int, active: torch.Tensor) -> torch.Tensor:
            xb, yb = next(batches)

            def at(c: torch.Tensor) -> torch.Tensor:
                if shortcut is not None:
                    shortcut.set_output(index, c)
                return self.criterion.sums_and_squares(self._functional(points(c), shortcut)(xb), yb)

            return vmap(at, randomness=self.data.vmap_randomness)(coordinates[active.to(coordinates.device)])

        with shortcut.installed() if shortcut else contextlib.nullcontext():
            return read_batches_together(batch_sums, range(len(self._batch_units())), self._batch_units(),
                                         len(coordinates), precision)

    def _batch_units(self) -> list[int]:
        """Units per batch, counted on first use (a token loss counts them with a device sync: once)."""
        if self.batch_units is None:
            self.batch_units = [self.criterion.units(yb) for yb in self.y.split(self.batch_size)]
        return self.batch_units

    def _read_batches(self, forward, shortcut: FirstLayerShortcut | None, coordinates, head: ClassMajorHead | None,
                      precision: Precision | None) -> torch.Tensor:
        """:meth:`_summed` with the summed squares, as :func:`~.certified.read_batches` columns, stopping at ``precision``."""
        batches = iter(self.data)  # read in order; a point that stops early drops the rest of the pass

        def batch_sums(index: int) -> torch.Tensor:
            xb, yb = next(batches)
            if shortcut is not None:
                shortcut.set_output(index, coordinates)
            output = forward(xb)
            return head.sums_and_squares(output, yb) if head is not None else self.criterion.sums_and_squares(output, yb)

        return read_batches(batch_sums, range(len(self._batch_units())), self._batch_units(), precision)

    def _metrics_here(self, theta: ParamDict, directions: Sequence[ParamDict], coordinates: torch.Tensor,
                      points_per_batch: int = 1, summed=None) -> torch.Tensor:
        """:meth:`metrics_at` in this process (also what every worker runs on its share); ``summed``
        replaces :meth:`_summed` (the certified columns)."""
        summed = summed or self._summed
        points = FlatPoints(theta, directions)
        if points_per_batch <= 1 and self.bn_mode != "recompute" and not self.tie_weights:
            # one point at a time: move a private copy of the model (the fast path of every default scan)
            with torch.inference_mode():
                movable = self._movable_copy(theta)
                shortcut = self._shortcut(movable.model, theta, directions)
                # a model that is one Linear inside a container: the first-layer stand-in already gives the logits
                head = None if shortcut and movable.head and movable.head.name == shortcut.name else movable.head
                with shortcut.installed() if shortcut else contextlib.nullcontext(), head.installed() if head else contextlib.nullcontext():
                    return torch.stack([summed(movable.move_to(points, c), shortcut, c, head) for c in coordinates])
        shortcut = self._shortcut(self.model, theta, directions)

        def at(c: torch.Tensor) -> torch.Tensor:
            return summed(self._functional(points(c), shortcut), shortcut, c)

        with shortcut.installed() if shortcut else contextlib.nullcontext():
            if points_per_batch <= 1 or self.bn_mode == "recompute":  # re-estimation updates buffers in place: no vmap
                return torch.stack([at(c) for c in coordinates])
            return torch.cat([vmap(at, randomness=self.data.vmap_randomness)(chunk) for chunk in coordinates.split(points_per_batch)])

    def _movable_copy(self, theta: ParamDict) -> MovableCopy:
        """The private copy, made once per evaluator (a scan of many blocks reuses it)."""
        if self.movable is None or self.movable.names != list(theta):
            self.movable = MovableCopy(self.model, theta, self.data.first(2), self.criterion.class_major)
        return self.movable

    def _shortcut(self, model: torch.nn.Module, theta: ParamDict, directions: Sequence[ParamDict]) -> FirstLayerShortcut | None:
        """The first-layer shortcut, reused while the same model, theta and direction objects come back
        (a scan calls metrics_at once per block; scans do not change their tensors in place)."""
        if self.first_layer_budget <= 0 or self.bn_mode == "recompute" or self.tie_weights or self.data.streamed:
            # (tied weights: the first layer's might be used again later, at the moved point; a streamed
            # split: its first-layer outputs would take more memory than the split that did not fit)
            return None
        key = (id(model), id(theta), *map(id, directions))
        if self.shortcut_cache is None or self.shortcut_cache[0] != key:
            shortcut = FirstLayerShortcut.build(model, self.x, self.batch_size, theta, directions, self.first_layer_budget)
            self.shortcut_cache = (key, shortcut, (theta, list(directions)))  # the objects kept alive: their ids stay theirs
        return self.shortcut_cache[1]
