"""One training step and one epoch, clean or adversarial.

What the update sees is decided by a *views* function ``views(model, images, targets) ->
[(images, weight), ...]``: clean training is ``[(images, 1)]``; adversarial training returns the
attacked batch (and optionally the clean one) with their loss weights
(:class:`mtl_attack.defense.adversarial.AdversarialTraining`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mtl_attack.data.h5dataset import split_batch
from mtl_attack.tasks import Task
from mtl_attack.utils.distributed import average_gradients

Targets = dict[str, torch.Tensor]
Views = Callable[[nn.Module, torch.Tensor, Targets], list[tuple[torch.Tensor, float]]]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/inf loss (raised before the optimizer step)."""


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


def clean_views(model: nn.Module, images: torch.Tensor, targets: Targets):
    """Clean training: the update sees the batch as it is."""
    return [(images, 1.0)]


def train_step(
    model: nn.Module,
    tasks: dict[str, Task],
    images: torch.Tensor,
    targets: Targets,
    optimizer: torch.optim.Optimizer,
    scheduler=None,
    views: Views | None = None,
) -> dict[str, float]:
    """One optimizer step on ``sum_v weight_v * L(model(images_v))``; returns per-task losses
    (weighted like the update).

    The views are built first (an attack runs the model in eval mode and restores its mode),
    then the update runs in train mode. Raises :class:`NonFiniteLossError` before touching the
    weights when the loss is NaN/inf.
    """
    batches = (views or clean_views)(model, images, targets)
    model.train()
    loss = torch.zeros((), device=images.device)
    parts: dict[str, float] = dict.fromkeys(tasks, 0.0)
    for batch, weight in batches:
        value, per_task = multitask_loss(model(batch), targets, tasks)
        loss = loss + weight * value
        for name, v in per_task.items():
            parts[name] += weight * v
    if not math.isfinite(float(loss.detach())):
        raise NonFiniteLossError(f"non-finite training loss {float(loss.detach())} ({parts})")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    average_gradients(model)  # data-parallel under torchrun; a no-op in one process
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return parts


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
    """One pass over ``loader`` without checkpoints; returns mean per-task training losses.

    ``transform(images, targets) -> images`` (e.g. an attack) replaces the batch before the
    update. The resumable loop is :func:`mtl_attack.defense.loop.fit`.
    """
    views = None
    if transform is not None:
        views = lambda m, x, t: [(transform(x, t), 1.0)]  # noqa: E731
    sums: dict[str, float] = {}
    steps = 0
    for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
        images, targets = split_batch(batch, tasks, device)
        parts = train_step(model, tasks, images, targets, optimizer, scheduler, views)
        for name, value in parts.items():
            sums[name] = sums.get(name, 0.0) + value
        steps += 1
    return {name: value / max(steps, 1) for name, value in sums.items()}


class CleanTraining:
    """``defense=none``: every update sees the clean batch. A views function (see module doc)."""

    def __init__(self, tasks: dict[str, Task], name: str = "none"):
        self.name = name

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: Targets):
        return clean_views(model, images, targets)

    def describe(self) -> dict:
        return {"name": self.name, "adversarial": False}
