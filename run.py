"""Entry point: ``python run.py [overrides]``; see README.md and conf/config.yaml."""

import hydra
from omegaconf import DictConfig

from mtl_attack.runner import one_line_errors, run


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> None:
    with one_line_errors():  # config and data mistakes: one line, not a traceback
        run(cfg)


if __name__ == "__main__":
    main()
