"""Wires the config into data, tasks, model, training, evaluation and logging.

``run(cfg) -> dict`` is the whole job; ``run.py`` wraps it in ``@hydra.main``. The only module
that imports Hydra.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from mtl_attack.cache import CheckpointCache
from mtl_attack.data import DatasetSource
from mtl_attack.defense import train_epoch
from mtl_attack.evaluation import evaluate, flatten, metric_key
from mtl_attack.loggers import Logger
from mtl_attack.models import MultiTaskModel
from mtl_attack.tasks import Task, tasks_for
from mtl_attack.utils.env import resolve_device, seed_everything
from mtl_attack.utils.io import write_json

log = logging.getLogger("mtl_attack")


def build_model(cfg: DictConfig, tasks: dict[str, Task]) -> MultiTaskModel:
    backbone = instantiate(cfg.backbone.trunk)
    layout = instantiate(cfg.sharing)(num_tasks=len(tasks), num_blocks=backbone.num_blocks)
    head = instantiate(cfg.backbone.head)
    return MultiTaskModel(backbone, layout, {n: t.channels for n, t in tasks.items()}, head)


def weight_spec(cfg: DictConfig, model: MultiTaskModel, data: DatasetSource) -> dict[str, Any]:
    """Everything that changes the trained weights: the checkpoint cache key."""
    pick = ("dataset", "backbone", "train", "defense", "seed")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    spec = {k: resolved.get(k) for k in pick}
    spec["tasks"] = list(data.tasks)
    spec["layout"] = model.layout.as_lists()
    return spec


def loaders(cfg: DictConfig, data: DatasetSource) -> tuple[DataLoader, DataLoader]:
    gen = torch.Generator().manual_seed(int(cfg.seed))
    workers = int(cfg.loader.num_workers)
    train = DataLoader(
        data.split("train", train=True),
        batch_size=cfg.train.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=workers,
        generator=gen,
        persistent_workers=workers > 0,
    )
    test = DataLoader(
        data.split("test"), batch_size=cfg.eval.batch_size, shuffle=False, num_workers=workers
    )
    return train, test


def train_model(cfg, model, tasks, train_loader, device, logger: Logger) -> None:
    optimizer = instantiate(cfg.train.optimizer)(model.parameters())
    total = int(cfg.train.epochs) * len(train_loader)
    scheduler = instantiate(cfg.train.scheduler)(optimizer, total_steps=total)
    for epoch in range(int(cfg.train.epochs)):
        losses = train_epoch(
            model,
            tasks,
            train_loader,
            optimizer,
            device,
            scheduler,
            progress=cfg.progress,
            desc=f"train {epoch + 1}/{cfg.train.epochs}",
        )
        logger.log(
            {metric_key("train", t, "loss"): v for t, v in losses.items()} | {"epoch": epoch + 1}
        )
        log.info(
            "epoch %d/%d  %s",
            epoch + 1,
            cfg.train.epochs,
            "  ".join(f"{t}={v:.4f}" for t, v in losses.items()),
        )


def format_table(results: dict[str, dict[str, float]], title: str) -> str:
    lines = [title, f"{'task':<18} {'metric':<14} {'value':>10}"]
    for task, metrics in results.items():
        for i, (metric, value) in enumerate(metrics.items()):
            lines.append(f"{task if i == 0 else '':<18} {metric:<14} {value:>10.4f}")
    return "\n".join(lines)


def run(cfg: DictConfig) -> dict[str, Any]:
    """Prepare data, train (or reuse the cached model), evaluate, log; return the results."""
    seed_everything(int(cfg.seed))
    device = resolve_device(cfg.device)
    run_dir = Path(cfg.paths.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    data: DatasetSource = instantiate(cfg.dataset)
    data.prepare(progress=cfg.progress)
    tasks = tasks_for(data)
    model = build_model(cfg, tasks).to(device)
    cache = CheckpointCache(cfg.paths.checkpoints, weight_spec(cfg, model, data))
    resolved = OmegaConf.to_container(cfg, resolve=True)
    logger: Logger = instantiate(cfg.logger)
    logger.start(resolved, name=run_dir.name)
    exit_code = 1
    try:
        train_loader, test_loader = loaders(cfg, data)
        t0 = time.time()
        cache_hit = cache.exists()
        if cache_hit:
            log.info("reusing cached model %s", cache.weights)
            cache.load(model, device)
        else:
            train_model(cfg, model, tasks, train_loader, device, logger)
            cache.save(model, {"train_seconds": time.time() - t0})
        clean = evaluate(
            model, tasks, test_loader, device, progress=cfg.progress, desc="clean eval"
        )
        results = {
            "config": resolved,
            "model": {
                "params_total": sum(p.numel() for p in model.parameters()),
                "checkpoint": str(cache.weights),
                "cache_hit": cache_hit,
                "layout": model.layout.as_lists(),
            },
            "clean": clean,
        }
        write_json(run_dir / "results.json", results)
        print(
            format_table(clean, f"clean metrics ({data.name}, {len(test_loader.dataset)} images)")
        )
        logger.summary(flatten({"clean": clean}) | flatten({"model": results["model"]}))
        logger.log(flatten({"clean": clean}))
        exit_code = 0
        return results
    finally:
        logger.finish(exit_code)
