"""Tiny real setups for the training tests: composed Hydra configs on a 16 px synthetic set."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from mtl_attack import runner
from mtl_attack.defense import TrainCheckpoint
from mtl_attack.tasks import build_tasks

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "logger=none",
    "attack=none",
    "progress=false",
    "device=cpu",
    "dataset.num_train=48",
    "dataset.num_test=8",
    "dataset.resolution=16",
    "train.epochs=3",
    "train.batch_size=8",
    "train.checkpoint_every=2",
    "train.val_every=0",
    "train.scheduler.warmup_steps=2",
]


def tiny_overrides(out: Path, data: Path, *extra: str) -> list[str]:
    """The tiny settings plus ``extra`` (an ``extra`` key replaces the tiny one)."""
    paths = [f"paths.output_dir={out}", f"paths.data_dir={data}"]
    keys = {o.split("=", 1)[0] for o in extra}
    return [o for o in TINY if o.split("=", 1)[0] not in keys] + paths + list(extra)


def tiny_cfg(out: Path, data: Path, *extra: str):
    overrides = [*tiny_overrides(out, data, *extra), f"paths.run_dir={out}/run"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def build(cfg):
    """Data, tasks, model, loaders, optimizer, scheduler and the training checkpoint of ``cfg``
    exactly as the runner wires them."""
    runner.seed_everything(int(cfg.seed))
    data = instantiate(cfg.dataset)
    data.prepare(progress=False)
    tasks = build_tasks(data.tasks, data.num_classes, data.class_weights, data.metrics)
    model = runner.build_model(cfg, tasks)
    train_loader, test_loader = runner.loaders(cfg, data)
    optimizer = instantiate(cfg.train.optimizer)(model.parameters())
    total = int(cfg.train.epochs) * len(train_loader)
    scheduler = instantiate(cfg.train.scheduler)(optimizer, total_steps=total)
    cache = runner.CheckpointCache(cfg.paths.checkpoints, runner.weight_spec(cfg, model, data))
    ckpt = TrainCheckpoint(cache.dir / "train_state.pt", cache.spec)
    return tasks, model, train_loader, test_loader, optimizer, scheduler, ckpt


def child_env() -> dict[str, str]:
    """The environment of a training subprocess: this worktree first, one thread like the
    tests (bit-identical results need the same thread count)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    env["WANDB_SILENT"] = "true"
    return env


PYTHON = sys.executable
