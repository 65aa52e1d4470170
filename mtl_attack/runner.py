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

from mtl_attack.attacks import IterativeAttack
from mtl_attack.cache import CheckpointCache
from mtl_attack.data import DatasetSource
from mtl_attack.defense import EpochShuffle, TrainCheckpoint, fit
from mtl_attack.evaluation import (
    evaluate,
    evaluate_attack,
    flatten,
    metric_key,
    transfer_matrices,
)
from mtl_attack.loggers import Logger
from mtl_attack.models import MultiTaskModel, sharing_stats
from mtl_attack.tasks import Task, tasks_for
from mtl_attack.utils.env import resolve_device, seed_everything
from mtl_attack.utils.io import write_json

log = logging.getLogger("mtl_attack")


def build_model(cfg: DictConfig, tasks: dict[str, Task]) -> MultiTaskModel:
    backbone = instantiate(cfg.backbone.trunk)
    layout = instantiate(cfg.sharing)(
        num_tasks=len(tasks), num_blocks=backbone.num_blocks, task_names=list(tasks)
    )
    head = instantiate(cfg.backbone.head)
    return MultiTaskModel(backbone, layout, {n: t.channels for n, t in tasks.items()}, head)


def model_stats(model: MultiTaskModel) -> dict[str, Any]:
    """Parameter counts, layout and sharing degree; logged once per run."""
    stats = sharing_stats(model)
    log.info(
        "model: %d parameters (%d in shared blocks), sharing degree %.3f, layout %s",
        stats["params_total"],
        stats["params_shared"],
        stats["sharing_degree"],
        stats["layout"],
    )
    return stats


def weight_spec(cfg: DictConfig, model: MultiTaskModel, data: DatasetSource) -> dict[str, Any]:
    """Everything that changes the trained weights: the checkpoint cache key."""
    pick = ("dataset", "backbone", "train", "defense", "seed")
    resolved = OmegaConf.to_container(cfg, resolve=True)
    spec = {k: resolved.get(k) for k in pick}
    spec["tasks"] = list(data.tasks)
    spec["layout"] = model.layout.as_lists()
    return spec


def loaders(cfg: DictConfig, data: DatasetSource) -> tuple[DataLoader, DataLoader]:
    """Train loader whose order depends only on (seed, epoch) (exact resume), and test loader."""
    workers = int(cfg.loader.num_workers)
    train_set = data.split("train", train=True)
    train = DataLoader(
        train_set,
        batch_size=cfg.train.batch_size,
        sampler=EpochShuffle(len(train_set), int(cfg.seed)),
        drop_last=True,
        num_workers=workers,
        generator=torch.Generator().manual_seed(int(cfg.seed)),
        persistent_workers=workers > 0,
    )
    test = DataLoader(
        data.split("test"), batch_size=cfg.eval.batch_size, shuffle=False, num_workers=workers
    )
    return train, test


def build_defense(cfg: DictConfig, tasks: dict[str, Task]):
    """The ``defense`` group: a views function deciding what each update trains on."""
    return instantiate(cfg.defense)(tasks=tasks)


def validation_hook(cfg, model, tasks, val_loader, device, logger: Logger):
    """Per-epoch health: train losses and (every ``train.val_every`` epochs) test-split
    metrics, logged as ``train/<task>/loss`` and ``val/<task>/<metric>``."""
    every = int(cfg.train.get("val_every", 1))

    def hook(epoch: int, step: int, losses: dict[str, float]) -> None:
        record = {metric_key("train", t, "loss"): v for t, v in losses.items()}
        record |= {"epoch": epoch + 1, "train/step": step}
        if val_loader is not None and every and (epoch + 1) % every == 0:
            val = evaluate(model, tasks, val_loader, device, progress=False, desc="validate")
            record |= flatten({"val": val})
        logger.log(record)
        log.info(
            "epoch %d/%d  %s",
            epoch + 1,
            cfg.train.epochs,
            "  ".join(f"{t}={v:.4f}" for t, v in losses.items()),
        )

    return hook


def train_model(
    cfg, model, tasks, train_loader, device, logger: Logger, cache=None, val_loader=None
) -> dict[str, Any]:
    """Train with resumable checkpoints in the model's cache directory; returns a summary."""
    optimizer = instantiate(cfg.train.optimizer)(model.parameters())
    total = int(cfg.train.epochs) * len(train_loader)
    scheduler = instantiate(cfg.train.scheduler)(optimizer, total_steps=total)
    ckpt = None
    if cache is not None:
        ckpt = TrainCheckpoint(cache.dir / "train_state.pt", cache.spec)
    prog = fit(
        model,
        tasks,
        train_loader,
        optimizer,
        device,
        int(cfg.train.epochs),
        scheduler,
        views=build_defense(cfg, tasks),
        checkpoint=ckpt,
        checkpoint_every=int(cfg.train.get("checkpoint_every", 100)),
        on_epoch_end=validation_hook(cfg, model, tasks, val_loader, device, logger),
        progress=cfg.progress,
    )
    return {"steps": prog.step, "resumed_from_step": prog.resumed_from}


def defense_record(cfg: DictConfig, tasks: dict[str, Task]) -> dict[str, Any]:
    """How the model was trained, for results.json (the attack that evaluates it is separate)."""
    return build_defense(cfg, tasks).describe()


def format_table(results: dict[str, dict[str, float]], title: str) -> str:
    lines = [title, f"{'task':<18} {'metric':<14} {'value':>10}"]
    for task, metrics in results.items():
        for i, (metric, value) in enumerate(metrics.items()):
            lines.append(f"{task if i == 0 else '':<18} {metric:<14} {value:>10.4f}")
    return "\n".join(lines)


ATTACK_LABELS = ("name", "eps", "task", "objective", "step")  # the rest is IterativeAttack's


def build_attacks(cfg: DictConfig, tasks: dict[str, Task]) -> list[tuple[dict, IterativeAttack]]:
    """One attack per (eps, target task) of ``cfg.attack``: ``[(label, attack)]``.

    ``attack.objective`` is a partial called with the tasks (and ``task=`` for single);
    ``attack.step`` is the step rule; every other key is an ``IterativeAttack`` argument, so a
    misspelled key fails with that constructor's TypeError.
    """
    acfg = cfg.attack
    objective = instantiate(acfg.objective)
    step_rule = instantiate(acfg.step)
    loop = {
        k: v
        for k, v in OmegaConf.to_container(acfg, resolve=True).items()
        if k not in ATTACK_LABELS
    }
    targets: list[str | None] = [None]
    if acfg.name == "single":
        if acfg.task is None:
            raise ValueError(f"attack=single needs attack.task=<one of {list(tasks)}> or all")
        targets = list(tasks) if acfg.task == "all" else [str(acfg.task)]
    eps_list = acfg.eps if OmegaConf.is_list(acfg.eps) else [acfg.eps]
    attacks = []
    for eps in eps_list:
        for target in targets:
            obj = objective(tasks, task=target) if target else objective(tasks)
            label = {
                "objective": acfg.name,
                "step": step_rule.name,
                "eps": eps,
                "target_task": target,
            }
            attacks.append((label, IterativeAttack(step_rule, obj, tasks, eps=eps, **loop)))
    return attacks


def log_attacks(logger: Logger, entries: list[dict], transfer: list[dict]) -> None:
    """Scalars per attack, per-task metrics against eps as curves, transfer matrices."""
    for e in entries:
        prefix = metric_key(
            "attack", e["objective"], e["target_task"], e["step"], f"eps{e['eps']}"
        )
        scalars = {k: e[k] for k in ("avg_degradation", "min_degradation", "avg_loss_increase")}
        logger.log(flatten(scalars | {"tasks": e["tasks"]}, prefix))
    rows = [
        [e["objective"], e["step"], e["eps"], e["target_task"] or "", t, m, v]
        for e in entries
        for t, ms in e["tasks"].items()
        for m, v in ms.items()
    ]
    logger.table(
        "attack/metrics", ["objective", "step", "eps", "target", "task", "metric", "value"], rows
    )
    for task, metric in {(r[4], r[5]) for r in rows}:
        curves: dict[str, list[float]] = {}
        for e in entries:
            name = metric_key(e["objective"], e["target_task"], e["step"])
            curves.setdefault(name, []).append(e["tasks"][task][metric])
        xs = sorted({e["eps"] for e in entries})
        if len(xs) > 1 and all(len(c) == len(xs) for c in curves.values()):
            logger.lines(metric_key("attack/curves", task, metric), xs, curves, "eps")
    for m in transfer:
        names = list(m["matrix"])
        cols = list(next(iter(m["matrix"].values())))
        logger.heatmap(
            metric_key("attack/transfer", m["step"], f"eps{m['eps']}"),
            [[m["matrix"][r][c] for c in cols] for r in names],
            names,
            cols,
            f"degradation, single-task {m['step']} eps={m['eps']}",
        )


def format_attacks(entries: list[dict]) -> str:
    lines = [
        f"{'attack':<34} {'eps':>4} {'avg_degr':>9} {'min_degr':>9} {'avg_loss+':>9}"
        f" {'sec':>6}  flags"
    ]
    for e in entries:
        name = metric_key(e["objective"], e["target_task"], e["step"])
        lines.append(
            f"{name:<34} {e['eps']:>4} {e['avg_degradation']:>9.4f} "
            f"{e['min_degradation']:>9.4f} {e['avg_loss_increase']:>9.4f} "
            f"{e['seconds']:>6.1f}  {','.join(e['flags'])}"
        )
    return "\n".join(lines)


def attack_model(cfg, model, tasks, test_loader, device, clean, logger) -> dict[str, list]:
    """Every configured attack on the test split: ``{"attacks": [...], "transfer": [...]}``."""
    entries = []
    for label, attack in build_attacks(cfg, tasks):
        entry = evaluate_attack(
            model, tasks, test_loader, device, attack, clean, label, progress=cfg.progress
        )
        log.info(
            "attack %s: avg_degradation=%.4f min=%.4f avg_loss_increase=%.4f (%.1fs)",
            label,
            entry["avg_degradation"],
            entry["min_degradation"],
            entry["avg_loss_increase"],
            entry["seconds"],
        )
        entries.append(entry)
    transfer = transfer_matrices(entries)
    log_attacks(logger, entries, transfer)
    print(format_attacks(entries))
    return {"attacks": entries, "transfer": transfer}


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
            summary = train_model(
                cfg, model, tasks, train_loader, device, logger, cache, test_loader
            )
            cache.save(model, {"train_seconds": time.time() - t0, **summary})
            TrainCheckpoint(cache.dir / "train_state.pt", cache.spec).remove()
        clean = evaluate(
            model, tasks, test_loader, device, progress=cfg.progress, desc="clean eval"
        )
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
            results |= attack_model(cfg, model, tasks, test_loader, device, clean, logger)
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
