"""The first layer of a scan is computed once per scan instead of once per grid point.

A Linear or Conv layer is affine in its parameters, so at ``theta + sum_i a_i d_i`` its output is
``f(x; theta_1) + sum_i a_i f(x; d_i)`` (a direction's bias enters like a weight). Those 1 + k
outputs are computed once per data batch; at every point only the rest of the network runs.
This is the algorithmic win of the scan engine on small models (DESIGN.md section 6).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import ContextManager, Iterator, Sequence

import torch
from torch.func import functional_call

ParamDict = dict[str, torch.Tensor]
AFFINE_LAYERS = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


# Replacing the layer costs one multiply-add per output element and direction, computing it costs
# fan-in of them: below this ratio the saving drowns in memory traffic (measured: a 3x3 conv on one
# channel, fan-in 9, got slower; a 64-input Linear got 7x faster; benchmarks/scan_vmap.py).
MIN_FAN_IN_PER_DIRECTION = 16


def fan_in(layer: torch.nn.Module) -> int:
    """Multiply-adds per output element: inputs of a Linear, in-channels x kernel size of a Conv."""
    return layer.weight[0].numel() if layer.weight.dim() > 1 else 1


class _StopForward(Exception):
    pass


class _Output(torch.nn.Module):
    """Stands in for the first layer and returns its precomputed output."""

    def __init__(self, output: torch.Tensor):
        super().__init__()
        self.output = output

    def forward(self, *args):
        return self.output


@contextmanager
def replaced(model: torch.nn.Module, name: str, stand_in: torch.nn.Module) -> Iterator[None]:
    """Within the block the submodule ``name`` of ``model`` is ``stand_in``."""
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    original = getattr(parent, child)
    setattr(parent, child, stand_in)
    try:
        yield
    finally:
        setattr(parent, child, original)


def first_layer(model: torch.nn.Module, example: torch.Tensor) -> str | None:
    """Name of the first module with parameters that the forward pass runs, if it is an affine layer
    called exactly once and preceded only by parameter-free modules; else ``None``."""
    order: list[str] = []
    hooks = [
        module.register_forward_pre_hook(lambda m, a, name=name: order.append(name))
        for name, module in model.named_modules()
        if not list(module.children())
    ]
    try:
        with torch.no_grad():
            model(example)
    finally:
        for hook in hooks:
            hook.remove()
    modules = dict(model.named_modules())
    first = next((n for n in order if any(True for _ in modules[n].parameters(recurse=False))), None)
    if first is None or not isinstance(modules[first], AFFINE_LAYERS) or order.count(first) != 1:
        return None
    before = order[: order.index(first)]
    if any(any(True for _ in modules[n].parameters()) or any(True for _ in modules[n].buffers()) for n in before):
        return None
    return first


class FirstLayerShortcut:
    """Precomputed first-layer outputs of every data batch at theta and along every direction."""

    def __init__(self, model: torch.nn.Module, name: str, batches: Sequence[torch.Tensor], theta: ParamDict, directions: Sequence[ParamDict]):
        self.model, self.name = model, name
        self.layer = dict(model.named_modules())[name]
        self.param_names = {f"{name}.{p}" for p, _ in self.layer.named_parameters()}
        self.stand_in = _Output(None)
        self.base, self.parts = [], []  # per batch: output at theta, flat; (size, k) outputs of the directions
        with torch.no_grad():
            for xb in batches:
                layer_input = self._input_of_layer(xb, theta)
                self.base.append(self._apply(layer_input, theta))
                # stacked (k, size) then transposed: the column-major layout addmv reads fastest
                self.parts.append(torch.stack([self._apply(layer_input, d).reshape(-1) for d in directions]).T)

    @classmethod
    def build(cls, model, x, batch_size, theta, directions, budget_bytes: float) -> "FirstLayerShortcut | None":
        """The shortcut, or ``None`` where the model does not allow it or the outputs would not fit the budget."""
        name = first_layer(model, x[:2])
        if name is None or fan_in(dict(model.named_modules())[name]) < MIN_FAN_IN_PER_DIRECTION * len(directions):
            return None
        with torch.no_grad():
            per_example = cls._output_size(model, name, x[:1])
        if per_example * len(x) * (1 + len(directions)) * x.element_size() > budget_bytes:
            return None
        return cls(model, name, x.split(batch_size), theta, directions)

    @staticmethod
    def _output_size(model, name, example) -> int:
        sizes = []
        hook = dict(model.named_modules())[name].register_forward_hook(lambda m, a, out: sizes.append(out[0].numel()))
        try:
            model(example)
        finally:
            hook.remove()
        return sizes[0]

    def _input_of_layer(self, xb: torch.Tensor, theta: ParamDict) -> torch.Tensor:
        captured = []

        def capture(module, args):
            captured.append(args[0])
            raise _StopForward

        hook = self.layer.register_forward_pre_hook(capture)
        try:
            functional_call(self.model, theta, (xb,), strict=False)
        except _StopForward:
            pass
        finally:
            hook.remove()
        return captured[0]

    def _apply(self, layer_input: torch.Tensor, params: ParamDict) -> torch.Tensor:
        local = {p: params[f"{self.name}.{p}"] for p, _ in self.layer.named_parameters()}
        return functional_call(self.layer, local, (layer_input,))

    def installed(self) -> ContextManager[None]:
        """Within the block the first layer returns the output last set by :meth:`set_output`."""
        return replaced(self.model, self.name, self.stand_in)

    def set_output(self, batch_index: int, coordinates: torch.Tensor) -> None:
        """The first layer's output on data batch ``batch_index`` at ``theta + coordinates @ directions``."""
        base, parts = self.base[batch_index], self.parts[batch_index]
        self.stand_in.output = torch.addmv(base.reshape(-1), parts, coordinates.to(parts.dtype)).view(base.shape)
