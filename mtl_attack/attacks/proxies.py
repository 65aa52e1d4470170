"""Per-sample metric proxies: how much each task's *metric* degraded on each image.

The dataset-level metrics (mIoU, mean angle, depth errors) are streamed over the whole split; an
attack needs a per-image, per-task number at every step. These proxies follow the metrics'
directions: pixel accuracy for segmentation (higher is better), the mean angle for surface normals
and the mean absolute error for depth and the L1 maps (lower is better). They are not
differentiable (the winning class, thresholds); they only steer weights
(``MinMax(weights_from="metric")``).

Shape: predictions and targets as the tasks take them (batch first); every proxy is ``[B]``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mtl_attack.data.schema import IGNORE_INDEX
from mtl_attack.tasks import (
    Depth,
    L1Map,
    Segmentation,
    SurfaceNormal,
    Task,
    label_wins,
    masked_mean,
)


def sample_metric(task: Task, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The task's per-sample proxy metric. Shape: (B, ...) -> (B,)."""
    with torch.no_grad():
        if isinstance(task, Segmentation):
            valid = (target != IGNORE_INDEX) & (target < task.num_classes)
            return masked_mean(label_wins(pred, target).to(pred.dtype), valid)
        if isinstance(task, SurfaceNormal):
            valid = target.abs().sum(1) > 0
            norm = (pred * pred).sum(1).clamp_min(1e-24).sqrt()
            cos = ((pred * target).sum(1) / norm).clamp(-1.0, 1.0)
            return masked_mean(torch.rad2deg(torch.acos(cos)), valid)
        if isinstance(task, Depth):
            return masked_mean((pred - target).abs(), target > 0)
        if isinstance(task, L1Map):
            return masked_mean((pred - target).abs(), task.valid(target))
    raise ValueError(
        f"no per-sample metric proxy for task {task.name!r} ({type(task).__name__}); "
        "use attack.objective.weights_from=loss"
    )


def higher_is_better(task: Task) -> bool:
    """Direction of :func:`sample_metric`: only segmentation's pixel accuracy rises."""
    return isinstance(task, Segmentation)


def metric_degradation(
    tasks: Mapping[str, Task],
    preds: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    clean: torch.Tensor,
) -> torch.Tensor:
    """Relative degradation of every task's proxy against its clean value, positive = worse:
    ``(clean - adv) / clean`` for accuracy, ``(adv - clean) / clean`` for errors. A sample whose
    clean accuracy is already 0 cannot degrade further and counts as fully degraded (1).
    Shape: clean (B, T) -> (B, T)."""
    now = metric_values(tasks, preds, targets)
    up = torch.tensor([higher_is_better(t) for t in tasks.values()], device=now.device)
    change = (now - clean) / clean.clamp_min(1e-8)
    return torch.where(up, torch.where(clean > 0, -change, torch.ones_like(change)), change)


def metric_values(
    tasks: Mapping[str, Task],
    preds: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
) -> torch.Tensor:
    """Every task's proxy. Shape: (B, T)."""
    return torch.stack([sample_metric(task, preds[t], targets[t]) for t, task in tasks.items()], 1)
