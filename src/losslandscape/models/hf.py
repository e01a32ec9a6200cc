"""Hugging Face transformers as plain modules: ``forward(inputs) -> logits``.

``model=hf`` builds an ``AutoModelFor...`` from a local directory (``from_pretrained`` with
``local_files_only``: never a download) or from a config (``from_config``, random weights, which is
what tests use), and wraps it so that the loss, the scans and the Hessian see a tensor of logits
like any other model. Inputs are token ids ``(N, T)`` for language models and text classifiers,
pixels ``(N, C, H, W)`` for image classifiers.
"""

from __future__ import annotations

from typing import Any

import torch

from .building import ModelError

TASKS = {
    "causal_lm": "AutoModelForCausalLM",
    "sequence_classification": "AutoModelForSequenceClassification",
    "image_classification": "AutoModelForImageClassification",
}


class HFLogits(torch.nn.Module):
    """A transformers model that returns its ``logits`` tensor (the adapter every measure needs)."""

    def __init__(self, model: torch.nn.Module, pixel_inputs: bool):
        super().__init__()
        self.model, self.pixel_inputs = model, pixel_inputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pixel_inputs:
            return self.model(pixel_values=x).logits
        return self.model(input_ids=x).logits


def build_hf_model(task: str = "causal_lm", path: str | None = None, config: dict[str, Any] | None = None,
                   architecture: str | None = None, num_classes: int | None = None) -> HFLogits:
    """A local pretrained model (``path``) or a fresh one from ``config`` (``architecture`` = its
    ``model_type``, e.g. ``gpt2``, ``bert``, ``vit``); ``num_classes`` fills ``vocab_size`` of a
    language model or ``num_labels`` of a classifier when the config leaves them out."""
    try:
        import transformers
    except ImportError as error:  # only model=hf needs it
        raise ModelError("model=hf needs the transformers package: pip install transformers") from error
    if task not in TASKS:
        raise ModelError(f"model.task={task!r} is unknown: expected one of {', '.join(TASKS)}")
    auto = getattr(transformers, TASKS[task])
    if path is not None:
        try:
            model = auto.from_pretrained(str(path), local_files_only=True, attn_implementation="eager")
        except OSError as error:
            raise ModelError(f"model.path={path} is not a local Hugging Face model directory (config.json and weights): {error}") from error
    else:
        if architecture is None:
            raise ModelError("model=hf needs model.path (a local model directory) or model.architecture (e.g. gpt2) with model.config")
        settings = dict(config or {})
        if num_classes is not None:
            settings.setdefault("vocab_size" if task == "causal_lm" else "num_labels", int(num_classes))
        model = auto.from_config(transformers.AutoConfig.for_model(architecture, **settings), attn_implementation="eager")
    # eager attention: the fused kernels have no double backward (Hessian-vector products need one);
    # dropout off: a landscape is a function of the parameters alone
    return HFLogits(model.eval(), pixel_inputs=task == "image_classification")
