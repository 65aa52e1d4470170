"""The training loop (clean training; adversarial training plugs in a batch transform)."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mtl_attack.evaluation.evaluate import split_batch
from mtl_attack.tasks import Task


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss."""


def multitask_loss(
    preds: dict[str, torch.Tensor],
    targets: dict[str, torch.Tensor],
    tasks: dict[str, Task],
    weights: dict[str, float] | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted sum over tasks of the batch-mean per-sample losses, and each task's value."""
    parts = {name: task.loss(preds[name], targets[name]).mean() for name, task in tasks.items()}
    weights = weights or {}
    total = sum(weights.get(name, 1.0) * value for name, value in parts.items())
    return total, {name: float(value.detach()) for name, value in parts.items()}


def train_epoch(
    model: nn.Module,
    tasks: dict[str, Task],
    loader: DataLoader,
    optimizer: torch.optim.Optimizer,
    device: torch.device,
    scheduler=None,
    transform: Callable | None = None,
    progress: bool = True,
    desc: str = "train",
) -> dict[str, float]:
    """One pass over ``loader``; returns mean per-task training losses.

    ``transform(images, targets) -> images`` (e.g. an attack for adversarial training) is
    applied before the update. Raises :class:`NonFiniteLossError` on a NaN/inf loss before the
    optimizer step, so the weights stay finite.
    """
    model.train()
    sums: dict[str, float] = {}
    steps = 0
    bar = tqdm(loader, desc=desc, disable=not progress, leave=False)
    for batch in bar:
        images, targets = split_batch(batch, tasks, device)
        if transform is not None:
            images = transform(images, targets)
        loss, parts = multitask_loss(model(images), targets, tasks)
        if not math.isfinite(float(loss.detach())):
            raise NonFiniteLossError(
                f"non-finite training loss {float(loss.detach())} (per task: {parts}); "
                "lower train.lr or check the data for NaNs"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + value
        steps += 1
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    return {name: value / max(steps, 1) for name, value in sums.items()}
