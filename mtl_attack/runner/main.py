"""``run(cfg) -> dict``: the whole job, from data to results.json."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from mtl_attack.cache import CheckpointCache, ResultCache
from mtl_attack.data import DatasetSource
from mtl_attack.defense import TrainCheckpoint
from mtl_attack.evaluation import evaluate, flatten
from mtl_attack.loggers import Logger
from mtl_attack.runner.attacking import attack_model
from mtl_attack.runner.build import (
    build_model,
    imported_as_is,
    loaders,
    log,
    model_stats,
    weight_spec,
)
from mtl_attack.runner.training import defense_record, train_model
from mtl_attack.tasks import tasks_for
from mtl_attack.utils.distributed import (
    barrier,
    from_main,
    init_from_env,
    is_main,
    local_device,
    world,
)
from mtl_attack.utils.env import resolve_device, seed_everything
from mtl_attack.utils.io import file_lock, write_json


def format_table(results: dict[str, dict[str, float]], title: str) -> str:
    lines = [title, f"{'task':<18} {'metric':<14} {'value':>10}"]
    for task, metrics in results.items():
        for i, (metric, value) in enumerate(metrics.items()):
            lines.append(f"{task if i == 0 else '':<18} {metric:<14} {value:>10.4f}")
    return "\n".join(lines)


def make_logger(cfg: DictConfig) -> Logger:
    """The configured logger on rank 0 (a no-op elsewhere). Jobs of a multirun share a W&B
    group named after the sweep folder and carry tags naming each axis of the command."""
    if not is_main():
        return Logger()
    extra = {}
    if "group" in cfg.logger:
        sweep = sweep_name()
        extra["group"] = cfg.logger.group or sweep
        extra["tags"] = [*cfg.logger.tags, *axis_tags(cfg)]
    return instantiate(cfg.logger, **extra)


def sweep_name() -> str | None:
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return Path(hydra_cfg.sweep.dir).name if hydra_cfg.mode == RunMode.MULTIRUN else None


def axis_tags(cfg: DictConfig) -> list[str]:
    def name(node) -> str:
        return str(node.get("_target_", node.get("name", "?"))).rsplit(".", 1)[-1]

    sharing = name(cfg.sharing) + (f"_{cfg.sharing.index}" if cfg.sharing.get("index") else "")
    return [
        f"model={OmegaConf.select(cfg, 'model.name', default='tree')}",
        f"dataset={name(cfg.dataset)}",
        f"backbone={name(cfg.backbone.trunk)}",
        f"sharing={sharing}",
        f"attack={cfg.attack.name}",
        f"defense={cfg.defense.get('name', 'none')}",
    ]


def trained_model(cfg, model, tasks, data, device, logger, train_loader, test_loader):
    """Load the cached model or train it (resumably); returns (cache, cache_hit).

    Parallel jobs of a sweep that need the same model take a lock, so it is trained once.
    """
    cache = CheckpointCache(cfg.paths.checkpoints, weight_spec(cfg, model, data))
    if imported_as_is(cfg, model, cache):
        return cache, False
    lock = file_lock(cache.dir / ".lock") if world()[1] == 1 else nullcontext()
    with lock:
        cache_hit = from_main(cache.exists())
        if cache_hit:
            log.info("reusing cached model %s", cache.weights)
            cache.load(model, device)
            return cache, True
        t0 = time.time()
        summary = train_model(cfg, model, tasks, train_loader, device, logger, cache, test_loader)
        if is_main():
            cache.save(model, {"train_seconds": time.time() - t0, **summary})
            TrainCheckpoint(cache.dir / "train_state.pt", cache.spec).remove()
        barrier()
    return cache, False


def evaluation_context(cfg: DictConfig, tasks) -> dict[str, Any]:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {"dataset": resolved["dataset"], "tasks": list(tasks), "eval": resolved["eval"]}


def run(cfg: DictConfig) -> dict[str, Any]:
    """Prepare data, train (or reuse the cached model), evaluate clean and under every
    configured attack, log, and write ``results.json``; return the results.

    Under ``torchrun`` every rank trains on its shard (gradients averaged) and evaluates its
    share of the test batches; metric states are summed exactly; rank 0 logs and writes.
    """
    device = resolve_device(cfg.device)
    distributed = init_from_env(device)
    device = local_device(device)
    seed_everything(int(cfg.seed))
    run_dir = Path(cfg.paths.run_dir)
    data: DatasetSource = instantiate(cfg.dataset)
    data.prepare(progress=cfg.progress and is_main())
    tasks = tasks_for(data)
    model = build_model(cfg, tasks).to(device)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    logger = make_logger(cfg)
    logger.start(resolved, name=run_dir.name)
    exit_code = 1
    try:
        train_loader, test_loader = loaders(cfg, data)
        cache, cache_hit = trained_model(
            cfg, model, tasks, data, device, logger, train_loader, test_loader
        )
        results_cache = ResultCache(cache.dir, evaluation_context(cfg, tasks))
        clean = from_main(results_cache.get({"clean": True}) if is_main() else None)
        if clean is None:
            clean = evaluate(
                model, tasks, test_loader, device, progress=cfg.progress, desc="clean eval"
            )
            if is_main():
                results_cache.put({"clean": True}, clean)
        results = {
            "config": resolved,
            "model": {
                **model_stats(model),
                "checkpoint": str(cache.weights),
                "cache_hit": cache_hit,
            },
            "defense": defense_record(cfg, tasks),
            "clean": clean,
        }
        if cfg.attack.name != "none":
            results |= attack_model(
                cfg, model, tasks, test_loader, device, clean, logger, results_cache
            )
        if is_main():
            write_json(run_dir / "results.json", results)
            title = f"clean metrics ({data.name}, {len(test_loader.dataset)} images)"
            print(format_table(clean, title))
        logger.summary(flatten({"clean": clean}) | flatten({"model": results["model"]}))
        logger.log(flatten({"clean": clean}))
        exit_code = 0
        return results
    finally:
        logger.finish(exit_code)
        if distributed:
            barrier()
            dist.destroy_process_group()
