"""Per-task metrics and mean losses of a model over a split, clean or under a perturbation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mtl_attack.data.h5dataset import split_batch
from mtl_attack.tasks import Task
from mtl_attack.utils.distributed import all_reduce_sum

Perturb = Callable[[torch.Tensor, dict[str, torch.Tensor]], torch.Tensor]


def evaluate(
    model: nn.Module,
    tasks: dict[str, Task],
    loader: DataLoader,
    device: torch.device,
    perturb: Perturb | None = None,
    progress: bool = True,
    desc: str = "evaluate",
) -> dict[str, dict[str, float]]:
    """Return ``{task: {metric: value, ..., "loss": mean per-sample loss}}``.

    ``perturb(images, targets) -> images`` (an attack) is applied to every batch first; it
    receives the model's eval mode and must leave it as it found it.
    """
    was_training = model.training
    model.eval()
    totals = Totals(tasks)
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            images, targets = split_batch(batch, tasks, device)
            if perturb is not None:
                images = perturb(images, targets)
            with torch.no_grad():
                preds = model(images)
            totals.update(preds, targets)
    finally:
        model.train(was_training)
    return totals.result(device)


class Totals:
    """Streaming per-task metrics and loss sums of one evaluation (one result of an attack).

    ``update(preds, targets, losses=None)`` per batch (``losses``: per-sample ``{task: [B]}``
    already computed, e.g. by the attack's last forward pass); ``result(device)`` sums over
    torchrun ranks and returns ``{task: {metric: value, ..., "loss": mean}}``.
    """

    def __init__(self, tasks: dict[str, Task]):
        self.tasks = tasks
        self.meters = {name: task.meter() for name, task in tasks.items()}
        self.loss_sum = dict.fromkeys(tasks, 0.0)
        self.count = 0

    def update(self, preds, targets, losses=None) -> None:
        for name, task in self.tasks.items():
            self.meters[name].update(preds[name], targets[name])
            loss = task.loss(preds[name], targets[name]) if losses is None else losses[name]
            self.loss_sum[name] += float(loss.sum())
        self.count += next(iter(targets.values())).shape[0]

    def result(self, device: torch.device) -> dict[str, dict[str, float]]:
        return _combine(self.meters, self.loss_sum, self.count, device)


def _combine(meters, loss_sum, count, device) -> dict[str, dict[str, float]]:
    """Sum metric states and loss sums over torchrun ranks (a no-op in one process)."""
    state = {"count": torch.tensor(float(count), dtype=torch.float64)}
    for name, meter in meters.items():
        state[f"{name}/loss"] = torch.tensor(loss_sum[name], dtype=torch.float64)
        state.update({f"{name}/{k}": v for k, v in meter.state.items()})
    state = all_reduce_sum(state, device)
    out = {}
    for name, meter in meters.items():
        prefix = f"{name}/"
        meter.state = {
            k[len(prefix) :]: v
            for k, v in state.items()
            if k.startswith(prefix) and k != f"{name}/loss"
        }
        out[name] = {
            **meter.compute(),
            "loss": float(state[f"{name}/loss"] / state["count"].clamp_min(1)),
        }
    return out
