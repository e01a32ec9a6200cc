"""Command-line entry point: `python run.py [group=option ...] [key=value ...]`; `--help` lists the groups."""

import hydra
from hydra.utils import get_method
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    get_method(cfg.task._target_)(cfg)


if __name__ == "__main__":
    main()
