"""``run(cfg) -> dict``: the whole job, from data to results.json."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from mtl_attack.cache import ResultCache
from mtl_attack.data import DatasetSource
from mtl_attack.evaluation import evaluate
from mtl_attack.evaluation.identity import target_context
from mtl_attack.evaluation.keys import metrics_record, run_summary
from mtl_attack.loggers import Logger
from mtl_attack.runner.attacking import attack_model, cached_or_computed
from mtl_attack.runner.build import (
    ConfigError,
    build_attacks,
    build_defense,
    build_model,
    loaders,
    log,
    model_kind,
    model_stats,
)
from mtl_attack.runner.finish import finish_logger
from mtl_attack.runner.training import defense_record, trained_model
from mtl_attack.tasks import tasks_for
from mtl_attack.utils.distributed import (
    barrier,
    init_from_env,
    is_main,
    local_device,
)
from mtl_attack.utils.env import resolve_device, seed_everything
from mtl_attack.utils.io import write_json


def quiet_other_ranks() -> None:
    """Under torchrun only rank 0 logs INFO lines; other ranks keep warnings and errors."""
    if not is_main():
        logging.getLogger("mtl_attack").setLevel(logging.WARNING)


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

    index = cfg.sharing.get("index")
    sharing = name(cfg.sharing) + (f"_{index}" if index is not None else "")
    return [
        f"model={OmegaConf.select(cfg, 'model.name', default='tree')}",
        f"dataset={name(cfg.dataset)}",
        f"backbone={name(cfg.backbone.trunk)}",
        f"sharing={sharing}",
        f"attack={cfg.attack.name}",
        f"defense={cfg.defense.get('name', 'none')}",
    ]


def evaluation_context(cfg: DictConfig, tasks) -> dict[str, Any]:
    resolved = OmegaConf.to_container(cfg, resolve=True)
    return {"dataset": resolved["dataset"], "tasks": list(tasks), "eval": resolved["eval"]}


def identity_context(cfg: DictConfig, data: DatasetSource, model_key: str, tasks):
    """What every attack of this run ran on (see :mod:`mtl_attack.evaluation.identity`)."""
    return target_context(
        model=model_key,
        defense=str(cfg.defense.get("name", "none")),
        dataset=data.name,
        tasks=list(tasks),
        metrics=data.metrics,
        eval_cfg=OmegaConf.to_container(cfg.eval, resolve=True),
    )


def check_missing(cfg: DictConfig) -> None:
    """Every mandatory value (``???`` in conf/, e.g. ``model.checkpoint``) must be given."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        example = " ".join(f"{key}=..." for key in missing)
        raise ConfigError(
            f"{', '.join(missing)} must be set for this config; add {example} to the command "
            "line (docs/configuration.md lists every group and its keys)"
        )


def validate(cfg: DictConfig, tasks) -> list:
    """Build everything a config can get wrong before any training or logging starts: the
    attacks (returned, to be used later) and the defense."""
    attacks = build_attacks(cfg, tasks) if cfg.attack.name != "none" else []
    build_defense(cfg, tasks)
    return attacks


def where(run_dir: Path, logger: Logger) -> str:
    """Where this run's outputs went (printed last)."""
    lines = [f"results: {run_dir / 'results.json'}", f"log:     {run_dir / 'run.log'}"]
    if logger.run_dir:  # <dir>/wandb/<offline-run-...>/files
        wandb_run = Path(logger.run_dir).parent
        offline = "offline-" in wandb_run.name
        lines.append(f"W&B run: {wandb_run}" + ("  (offline: upload with wandb sync)" * offline))
    return "\n".join(lines)


@dataclass
class Job:
    """Everything a run builds before training: checked, so a bad config fails early."""

    device: torch.device
    data: DatasetSource
    tasks: dict
    model: torch.nn.Module
    attacks: list
    train_loader: DataLoader
    test_loader: DataLoader


def setup(cfg: DictConfig, device: torch.device) -> Job:
    """Data, tasks, model, attacks, defense and loaders; every config error surfaces here,
    before any training, logging or caching."""
    check_missing(cfg)
    seed_everything(int(cfg.seed))
    data: DatasetSource = instantiate(cfg.dataset)
    data.prepare(progress=cfg.progress and is_main())
    tasks = tasks_for(data)
    model = build_model(cfg, tasks).to(device)
    attacks = validate(cfg, tasks)
    train_loader, test_loader = loaders(cfg, data)
    return Job(device, data, tasks, model, attacks, train_loader, test_loader)


def evaluate_job(cfg: DictConfig, job: Job, logger: Logger) -> dict[str, Any]:
    """Train or reuse the model, evaluate it clean and under every attack: the results."""
    model, tasks, loader = job.model, job.tasks, job.test_loader
    cache, cache_hit = trained_model(
        cfg, model, tasks, job.data, job.device, logger, job.train_loader, loader
    )
    untrained = int(cfg.train.epochs) == 0 and model_kind(cfg) == "tree"
    key = cache.key + ("-untrained" if untrained else "")  # the weights' identity
    stored = None if untrained else ResultCache(cache.dir, evaluation_context(cfg, tasks))

    def clean_eval():
        return evaluate(model, tasks, loader, job.device, progress=cfg.progress, desc="clean")

    clean = cached_or_computed(stored, {"clean": True}, clean_eval, "clean evaluation")
    results = {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "model": model_stats(model)
        | {"key": key, "checkpoint": None if untrained else str(cache.weights)}
        | {"cache_hit": cache_hit, "untrained": untrained},
        "defense": defense_record(cfg, tasks),
        "clean": clean,
    }
    if job.attacks:
        context = identity_context(cfg, job.data, key, tasks)
        results |= attack_model(cfg, job, clean, logger, context, stored)
    return results


def run(cfg: DictConfig) -> dict[str, Any]:
    """Prepare data, train (or reuse the cached model), evaluate clean and under every
    configured attack, log, and write ``results.json``; return the results.

    Under ``torchrun`` every rank trains on its shard (gradients averaged) and evaluates its
    share of the test batches; metric states are summed exactly; rank 0 logs and writes.
    """
    device = resolve_device(cfg.device)
    distributed = init_from_env(device)
    quiet_other_ranks()
    run_dir = Path(cfg.paths.run_dir)
    logger, exit_code = None, 1
    try:
        job = setup(cfg, local_device(device))
        if distributed:
            log.info(
                "torchrun: %d process(es), backend %s, device %s",
                dist.get_world_size(),
                dist.get_backend(),
                job.device,
            )
        logger = make_logger(cfg)
        logger.start(OmegaConf.to_container(cfg, resolve=True), name=run_dir.name)
        results = evaluate_job(cfg, job, logger)
        if is_main():
            write_json(run_dir / "results.json", results)
            title = f"clean metrics ({job.data.name}, {len(job.test_loader.dataset)} images)"
            print(format_table(results["clean"], title))
            print(where(run_dir, logger))
        logger.summary(run_summary(results))
        logger.log(metrics_record(results["clean"]))
        exit_code = 0
        return results
    finally:
        if logger is not None:
            finish_logger(logger, exit_code)
        if distributed:
            barrier()
            dist.destroy_process_group()
