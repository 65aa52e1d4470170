"""Shared fixtures: real Hydra composition of the project's configs on tiny settings."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

CONF = Path(__file__).resolve().parents[1] / "conf"

# Tiny tensors: one thread is faster than two (no sync overhead) and immune to a busy machine.
torch.set_num_threads(1)

#: small enough for a full train + evaluate in a few seconds on 2 cores
TINY = [
    "dataset.num_train=64",
    "dataset.num_test=24",
    "dataset.resolution=32",
    "train.epochs=1",
    "train.batch_size=16",
    "eval.batch_size=24",
    "progress=false",
]


def compose_config(tmp: Path, overrides: list[str] = ()) -> DictConfig:
    """Compose conf/config.yaml with ``overrides``; all outputs go under ``tmp``."""
    paths = [
        f"paths.output_dir={tmp / 'outputs'}",
        f"paths.data_dir={tmp / 'data'}",
        f"paths.run_dir={tmp / 'run'}",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[*TINY, *paths, *overrides])
    with open_dict(cfg):
        cfg.hydra = None  # not running under @hydra.main; nothing may read hydra.*
    return cfg


@pytest.fixture
def tiny_cfg(tmp_path):
    def make(*overrides: str, run: str = "run") -> DictConfig:
        cfg = compose_config(tmp_path, list(overrides))
        cfg.paths.run_dir = str(tmp_path / run)
        return cfg

    return make
