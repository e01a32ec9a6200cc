"""Figures of the NTK's motion during training (Fort et al. 2020): distance and velocity per epoch, and
the kernel distance between every two saved epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.ticker import MaxNLocator

from .style import SPLIT_COLORS, STYLE, plt, save_figure


def plot_kernel_dynamics(record: dict, stem: str | Path, title: str = "") -> list[Path]:
    """Stacked panels sharing the epoch axis: kernel distance to the initial kernel; kernel velocity
    (distance between consecutive saved kernels per epoch, log scale when positive); the run's
    accuracy (train: running mean over each epoch's steps; test: at the epoch's end), when recorded."""
    epochs = np.asarray(record["epochs"])
    accuracy = {s: np.asarray(record.get(f"{s}_accuracy", []), dtype=float) for s in ("train", "test")}
    has_accuracy = any(np.isfinite(a).any() for a in accuracy.values() if len(a))
    with plt.rc_context(STYLE):
        rows = 3 if has_accuracy else 2
        figure, axes = plt.subplots(rows, 1, figsize=(5.6, 2.1 * rows + 0.4), sharex=True)
        distance_axis, velocity_axis = axes[0], axes[1]
        distance_axis.plot(epochs, record["distance_to_init"], marker="o", markersize=3, color="#CC79A7")
        distance_axis.set(ylabel="distance to\ninitial kernel", ylim=(0, None))
        velocity = np.asarray(record["velocity"], dtype=float)
        velocity_axis.plot(epochs[1:], velocity[1:], marker="o", markersize=3, color="#009E73")
        finite = velocity[np.isfinite(velocity)]
        if len(finite) and (finite > 0).all():
            velocity_axis.set_yscale("log")
        velocity_axis.axvline(record.get("early_epochs", 0), color="0.5", linewidth=0.8, linestyle=":")
        velocity_axis.set(ylabel="kernel velocity\n(distance / epoch)")
        if has_accuracy:
            for split, values in accuracy.items():
                if len(values) and np.isfinite(values).any():
                    axes[2].plot(epochs, 100 * values, marker="o", markersize=3, color=SPLIT_COLORS[split], label=f"{split} accuracy")
            axes[2].set(ylabel="accuracy (%)")
            axes[2].legend(loc="lower right")
        axes[-1].set(xlabel="epoch (0 = initialization)")
        axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
        figure.suptitle(title or "NTK during training")
        figure.tight_layout()
        return save_figure(figure, stem)


def plot_kernel_distance_matrix(epochs: list[int], matrix: np.ndarray, stem: str | Path, title: str = "") -> list[Path]:
    """Heat map of the kernel distance between the kernels of every two saved epochs."""
    with plt.rc_context(STYLE):
        figure, axis = plt.subplots(figsize=(4.8, 4.0))
        image = axis.imshow(matrix, origin="lower", cmap="magma", vmin=0, interpolation="nearest")
        ticks = np.arange(len(epochs))
        step = max(1, len(epochs) // 10)
        axis.set_xticks(ticks[::step], [str(e) for e in epochs[::step]])
        axis.set_yticks(ticks[::step], [str(e) for e in epochs[::step]])
        axis.set(xlabel="epoch", ylabel="epoch", title=title or "kernel distance between epochs")
        axis.title.set_fontsize(9)
        axis.grid(False)
        figure.colorbar(image, ax=axis, label="kernel distance")
        return save_figure(figure, stem)
