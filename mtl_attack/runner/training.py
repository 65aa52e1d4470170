"""Training wiring: resumable fit, per-epoch validation, the defense record."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig

from mtl_attack.cache import CheckpointCache
from mtl_attack.defense import TrainCheckpoint, fit
from mtl_attack.evaluation import evaluate
from mtl_attack.evaluation.keys import EPOCH, TRAIN_STEP, metrics_record, train_loss_key, val_key
from mtl_attack.loggers import Logger
from mtl_attack.runner.build import (
    build_defense,
    imported_as_is,
    log,
    model_kind,
    weight_spec,
)
from mtl_attack.tasks import Task
from mtl_attack.utils.distributed import barrier, from_main, is_main, world
from mtl_attack.utils.io import file_lock


def validation_hook(cfg, model, tasks, val_loader, device, logger: Logger):
    """Per-epoch health: train losses and (every ``train.val_every`` epochs) test-split
    metrics, logged as ``train/<task>/loss`` and ``val/<task>/<metric>``."""
    every = int(cfg.train.get("val_every", 1))

    def hook(epoch: int, step: int, losses: dict[str, float]) -> None:
        record = {train_loss_key(t): v for t, v in losses.items()}
        record |= {EPOCH: epoch + 1, TRAIN_STEP: step}
        if val_loader is not None and every and (epoch + 1) % every == 0:
            val = evaluate(
                model, tasks, val_loader, device, progress=cfg.progress, desc="validate"
            )
            record |= metrics_record(val, val_key)
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
        ckpt = TrainCheckpoint(cache.dir / "train_state.pt", cache.spec, write=is_main())
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
        divergence_factor=float(cfg.train.get("divergence_factor", 100.0)),
    )
    return {"steps": prog.step, "resumed_from_step": prog.resumed_from}


def defense_record(cfg: DictConfig, tasks: dict[str, Task]) -> dict[str, Any]:
    """How the model was trained, for results.json (the attack that evaluates it is separate)."""
    return build_defense(cfg, tasks).describe()


def trained_model(cfg, model, tasks, data, device, logger, train_loader, test_loader):
    """Load the cached model or train it (resumably); returns (cache, cache_hit).

    Parallel jobs of a sweep that need the same model take a lock, so it is trained once.
    ``train.epochs=0`` evaluates the untrained model and caches nothing.
    """
    cache = CheckpointCache(cfg.paths.checkpoints, weight_spec(cfg, model, data))
    if imported_as_is(cfg, model, cache):
        return cache, False
    if int(cfg.train.epochs) == 0 and model_kind(cfg) == "tree":
        log.warning(
            "train.epochs=0: evaluating the UNTRAINED (randomly initialized) model; nothing is "
            "cached and results.json marks it untrained"
        )
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
