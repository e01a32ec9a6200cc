"""Command-line entry point: `python run.py [group=option ...] [key=value ...]`; `--help` lists the groups."""

import hydra
import torch
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from losslandscape.allocator import keep_freed_memory

# `${gpu_slots:}`: how many jobs the local parallel launcher runs at once (one per GPU)
OmegaConf.register_new_resolver("gpu_slots", lambda: max(torch.cuda.device_count(), 1), replace=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    keep_freed_memory()  # CPU scans: no page faults for the same activations at every grid point
    from losslandscape import progress  # imports Lightning: only after Hydra has set up logging, or Lightning keeps its own handler

    progress.configure(cfg.progress_every_s)  # how often a log file gets a progress line
    get_method(cfg.task._target_)(cfg)


if __name__ == "__main__":
    main()
