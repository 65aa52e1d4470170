"""The resumable training loop: periodic checkpoints, exact resume, loss health checks.

Exact resume (bit-identical weights on the CPU) rests on three things: the data order is a
function of ``(seed, epoch)`` only (:class:`EpochShuffle`), a resumed epoch skips the batches it
already trained on, and the checkpoint restores every RNG the step may draw from (attack random
starts, augmentation in the main process). With ``num_workers > 0`` and *random* augmentation the
rest of an interrupted epoch sees different augmentation draws (worker RNGs are not saved).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mtl_attack.data.h5dataset import split_batch
from mtl_attack.defense.checkpoint import TrainCheckpoint
from mtl_attack.defense.health import LossHealth, TrainingDivergedError
from mtl_attack.defense.sampler import EpochShuffle, epoch_seed
from mtl_attack.defense.training import NonFiniteLossError, Views, train_step
from mtl_attack.tasks import Task
from mtl_attack.utils.distributed import broadcast_buffers

log = logging.getLogger("mtl_attack")

#: ``on_epoch_end(epoch, step, mean train losses)``; runs before the epoch-end checkpoint
EpochHook = Callable[[int, int, dict[str, float]], None]


@dataclass
class Progress:
    """Where training stands: optimizer steps done and the last step saved to disk."""

    step: int = 0
    saved: int | None = None
    resumed_from: int | None = None
    sums: dict[str, float] = field(default_factory=dict)
    count: int = 0
    health: LossHealth = field(default_factory=LossHealth)


def _sampler(loader: DataLoader) -> EpochShuffle:
    sampler = loader.sampler
    if not isinstance(sampler, EpochShuffle):
        raise TypeError(
            "fit() needs a DataLoader built with sampler=EpochShuffle(len(dataset), seed) so "
            f"that data order depends only on (seed, epoch); got {type(sampler).__name__}"
        )
    return sampler


def _start_epoch(loader: DataLoader, epoch: int, skip_batches: int) -> None:
    sampler = _sampler(loader)
    sampler.set_epoch(epoch, skip_batches * int(loader.batch_size))
    if loader.generator is not None:  # worker seeds are drawn from it at every iter()
        loader.generator.manual_seed(epoch_seed(sampler.seed + 1, epoch))


def _save(ckpt: TrainCheckpoint | None, model, optimizer, scheduler, prog: Progress) -> None:
    broadcast_buffers(model)  # torchrun: every rank keeps rank 0's BatchNorm statistics
    if ckpt is not None:
        ckpt.save(model, optimizer, scheduler, prog.step, {"health": prog.health.state()})
        prog.saved = prog.step


def _non_finite(err: NonFiniteLossError, prog: Progress, epoch: int, ckpt) -> NonFiniteLossError:
    where = f"at step {prog.step + 1} (epoch {epoch + 1})"
    if ckpt is None or prog.saved is None:
        keep = "no checkpoint was written yet"
    else:
        keep = f"the last good checkpoint is {ckpt.path} (step {prog.saved}); it is kept"
    return NonFiniteLossError(
        f"training stopped: {err} {where}; {keep}. Lower train.optimizer.lr, use a warm-up "
        "(train.scheduler.warmup_steps) or check the data for NaNs"
    )


def fit(
    model: nn.Module,
    tasks: dict[str, Task],
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    epochs: int,
    scheduler=None,
    views: Views | None = None,
    checkpoint: TrainCheckpoint | None = None,
    checkpoint_every: int = 100,
    on_epoch_end: EpochHook | None = None,
    progress: bool = True,
    divergence_factor: float = 100.0,
) -> Progress:
    """Train for ``epochs`` epochs, resuming from ``checkpoint`` when it holds a state.

    A checkpoint is written every ``checkpoint_every`` optimizer steps (0 = only at epoch ends)
    and after every epoch (after ``on_epoch_end``, so validation is not repeated on resume).
    A NaN/inf loss raises :class:`NonFiniteLossError` naming the last good checkpoint, which
    is left untouched. A loss that explodes (``divergence_factor`` x the first step's) or a run
    that ends above its first epoch's loss raises :class:`TrainingDivergedError` and deletes
    the training state (resuming it would reproduce the failure); see :mod:`.health`.
    """
    _start_epoch(loader, 0, 0)
    per_epoch = len(loader)
    prog = Progress(health=LossHealth(divergence_factor))
    if checkpoint is not None and checkpoint.exists():
        prog.step = prog.saved = prog.resumed_from = checkpoint.restore(
            model, optimizer, scheduler, map_location=device
        )
        prog.health.load(checkpoint.extra.get("health", {}))
        log.info("resuming training from %s at step %d", checkpoint.path, prog.step)
    for epoch in range(prog.step // per_epoch, epochs):
        _start_epoch(loader, epoch, prog.step - epoch * per_epoch)
        prog.sums, prog.count = {}, 0
        desc = f"train {epoch + 1}/{epochs}"
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            images, targets = split_batch(batch, tasks, device)
            try:
                parts = train_step(model, tasks, images, targets, optimizer, scheduler, views)
            except NonFiniteLossError as err:
                raise _non_finite(err, prog, epoch, checkpoint) from None
            prog.step += 1
            prog.count += 1
            prog.health.step(sum(parts.values()))
            for name, value in parts.items():
                prog.sums[name] = prog.sums.get(name, 0.0) + value
            if checkpoint_every and prog.step % checkpoint_every == 0:
                if prog.step % per_epoch:  # the epoch-end save below covers the last batch
                    _save(checkpoint, model, optimizer, scheduler, prog)
        means = {k: v / max(prog.count, 1) for k, v in prog.sums.items()}
        if on_epoch_end is not None:
            on_epoch_end(epoch, prog.step, means)
        try:
            prog.health.end_epoch(epoch, epochs, sum(means.values()), device)
        except TrainingDivergedError as err:
            if checkpoint is not None and checkpoint.write:
                checkpoint.remove()
            raise TrainingDivergedError(f"{err}; nothing was cached") from None
        _save(checkpoint, model, optimizer, scheduler, prog)
    return prog
