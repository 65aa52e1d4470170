"""Tasks: per-sample losses, streaming metrics and metric directions, keyed by task name."""

from __future__ import annotations

from collections.abc import Sequence

from mtl_attack.data.base import DatasetSource
from mtl_attack.data.schema import check_task_names
from mtl_attack.tasks.base import Meter, Task, masked_mean
from mtl_attack.tasks.geometry import Depth, L1Map, SurfaceNormal
from mtl_attack.tasks.segmentation import Segmentation, channel_argmax, label_wins

__all__ = [
    "channel_argmax",
    "label_wins",
    "Depth",
    "L1Map",
    "Meter",
    "Segmentation",
    "SurfaceNormal",
    "Task",
    "build_tasks",
    "tasks_for",
    "masked_mean",
]


def build_tasks(
    names: Sequence[str],
    num_classes: int,
    class_weights: Sequence[float] | None = None,
    convention: str = "reference",
    l1_invalid: float | None = None,
    metric_set: str = "nyuv2",
) -> dict[str, Task]:
    """Build the task objects for ``names`` (in that order).

    ``class_weights`` reach the segmentation loss (and Taskonomy's ``err`` metric);
    ``l1_invalid`` marks target pixels the L1 tasks (keypoints, edges) ignore, e.g. padding;
    ``metric_set`` picks the reported metrics: ``nyuv2`` (mIoU, angles, depth errors; also the
    synthetic benchmark's), ``taskonomy`` (err, cosine_similarity, abs_err, key_err, edge_err)
    or ``cityscapes`` (the nyuv2 set; under ``libmtl`` depth reports abs_err and rel_err only).
    """
    tasks: dict[str, Task] = {}
    for name in check_task_names(names):
        if name == "segment_semantic":
            tasks[name] = Segmentation(num_classes, class_weights, convention, metric_set)
        elif name == "normal":
            tasks[name] = SurfaceNormal(convention, metric_set)
        elif name == "depth_zbuffer":
            tasks[name] = Depth(convention, metric_set)
        elif name == "keypoints2d":
            tasks[name] = L1Map(name, "key_err", l1_invalid, convention)
        else:
            tasks[name] = L1Map(name, "edge_err", l1_invalid, convention)
    return tasks


def tasks_for(data: DatasetSource) -> dict[str, Task]:
    """The tasks of a prepared dataset source, with its classes, weights and metric choices."""
    return build_tasks(
        data.tasks,
        data.num_classes,
        data.class_weights,
        data.metrics,
        l1_invalid=data.l1_invalid,
        metric_set=data.metric_set,
    )
