"""Command-line entry point: `python run.py [group=option ...] [key=value ...]`; `--help` lists the groups."""

import os
import sys
from pathlib import Path

import hydra
import torch
from hydra.utils import get_method
from omegaconf import DictConfig, OmegaConf

from losslandscape import progress
from losslandscape.allocator import keep_freed_memory
from losslandscape.jobs import continue_unfinished_sweep
from losslandscape.validation import check_command_line, exit_on_user_error

# the user's own modules (model=custom model._target_=my_models.Net, loss.fn=...) import from the launch directory
sys.path.insert(0, os.getcwd())

# `${gpu_slots:}`: how many jobs the local parallel launcher runs at once (one per GPU)
OmegaConf.register_new_resolver("gpu_slots", lambda: max(torch.cuda.device_count(), 1), replace=True)


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    keep_freed_memory()  # CPU scans: no page faults for the same activations at every grid point
    progress.configure(cfg.progress_every_s)  # how often a log file gets a progress line
    # a user's mistake ends the job with its message and exit code 2; Hydra would print a traceback
    exit_on_user_error(lambda: get_method(cfg.task._target_)(cfg))


if __name__ == "__main__":
    # Hydra reports a key typo at compose time, before main runs: compose once first to suggest the closest key
    conf = Path(__file__).parent / "conf"
    exit_on_user_error(lambda: check_command_line(str(conf), "config", sys.argv[1:]))
    # a killed multirun, rerun as it was typed, continues in its own folder
    sys.argv[1:] = continue_unfinished_sweep(sys.argv[1:], OmegaConf.load(conf / "config.yaml").outputs_root)
    main()
