"""Tasks: per-sample losses, streaming metrics and metric directions, keyed by task name."""

from __future__ import annotations

from collections.abc import Sequence

from mtl_attack.data.schema import check_task_names
from mtl_attack.tasks.base import Meter, Task, masked_mean
from mtl_attack.tasks.geometry import Depth, L1Map, SurfaceNormal
from mtl_attack.tasks.segmentation import Segmentation

__all__ = [
    "Depth",
    "L1Map",
    "Meter",
    "Segmentation",
    "SurfaceNormal",
    "Task",
    "build_tasks",
    "masked_mean",
]


def build_tasks(
    names: Sequence[str],
    num_classes: int,
    class_weights: Sequence[float] | None = None,
    convention: str = "reference",
    l1_invalid: float | None = None,
) -> dict[str, Task]:
    """Build the task objects for ``names`` (in that order).

    ``class_weights`` reach the segmentation loss; ``l1_invalid`` marks target pixels the L1
    tasks (keypoints, edges) ignore, e.g. padding.
    """
    tasks: dict[str, Task] = {}
    for name in check_task_names(names):
        if name == "segment_semantic":
            tasks[name] = Segmentation(num_classes, class_weights, convention)
        elif name == "normal":
            tasks[name] = SurfaceNormal(convention)
        elif name == "depth_zbuffer":
            tasks[name] = Depth(convention)
        elif name == "keypoints2d":
            tasks[name] = L1Map(name, "key_err", l1_invalid, convention)
        else:
            tasks[name] = L1Map(name, "edge_err", l1_invalid, convention)
    return tasks
