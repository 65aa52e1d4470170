"""Relative degradation of metrics under attack, its aggregates, and the transfer matrix.

method.md section 7: per metric ``(adv - clean) / clean`` when lower is better and
``(clean - adv) / clean`` when higher is better, so a positive number always means "degraded";
a task's degradation is the mean over its metrics; the headline number is the mean over tasks
(the reference code reports minus this as "avg. acc."). A metric whose clean value is 0 has no
relative change and is left out of the means (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from mtl_attack.tasks import Task

Metrics = Mapping[str, Mapping[str, float]]  # {task: {metric: value, ..., "loss": value}}


def relative_degradation(clean: float, adv: float, higher_is_better: bool) -> float:
    """Relative change of one metric, positive = worse than clean; NaN when clean is 0."""
    if clean == 0 or not math.isfinite(clean):
        return math.nan
    change = (adv - clean) / abs(clean)
    return -change if higher_is_better else change


def nanmean(values: Sequence[float]) -> float:
    kept = [v for v in values if math.isfinite(v)]
    return sum(kept) / len(kept) if kept else math.nan


def task_entry(task: Task, clean: Mapping[str, float], adv: Mapping[str, float]) -> dict:
    """``{metric: adv value, ..., "loss", "degradation", "loss_increase"}`` for one task."""
    per_metric = [
        relative_degradation(clean[m], adv[m], up) for m, up in task.higher_is_better.items()
    ]
    return dict(adv) | {
        "degradation": nanmean(per_metric),
        "loss_increase": relative_degradation(clean["loss"], adv["loss"], False),
    }


def summarize(tasks: Mapping[str, Task], clean: Metrics, adv: Metrics) -> dict:
    """Per-task entries and the three aggregates of one attack.

    ``avg_degradation``: mean over tasks (the paper's headline number); ``min_degradation``:
    the least-degraded task (did the attack hit all tasks at once?); ``avg_loss_increase``: mean
    over tasks of the relative loss increase (DGBA's own objective).
    """
    per_task = {t: task_entry(task, clean[t], adv[t]) for t, task in tasks.items()}
    degradations = [e["degradation"] for e in per_task.values()]
    finite = [d for d in degradations if math.isfinite(d)]
    return {
        "tasks": per_task,
        "avg_degradation": nanmean(degradations),
        "min_degradation": min(finite) if finite else math.nan,
        "avg_loss_increase": nanmean([e["loss_increase"] for e in per_task.values()]),
    }


def transfer_matrix(entries: Sequence[Mapping]) -> dict[str, dict[str, float]]:
    """T x T matrix from single-task attack entries at one eps and step rule:
    ``{attacked task (row): {measured task (column): degradation}}``."""
    return {
        e["target_task"]: {t: v["degradation"] for t, v in e["tasks"].items()}
        for e in entries
        if e["objective"] == "single"
    }
