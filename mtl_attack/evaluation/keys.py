"""The one place that names logged metrics, e.g. ``attack/dgba/pgd/eps4/tasks/normal/loss``.

The runner logs through these builders and the W&B dashboard (:mod:`mtl_attack.dashboard`)
draws its panels from them, so renaming a key renames every panel that shows it.

An attack is named by its label (``objective``, ``target_task``, ``step``; see
:func:`mtl_attack.runner.build.build_attacks`), the same dict every ``results.json`` attack entry
carries. Keys, with ``<attack>`` = ``<objective>[/<target_task>][/<variant>][/<loss>]/<step>``
(``loss`` only for an attack loss other than the default ``ce``):

==========================================  ==========================================
``attack/<attack>/eps<k>/<aggregate>``      one number per attack and budget
``attack/<attack>/eps<k>/tasks/<t>/<m>``    each task's metrics under that attack
``attack/<attack>/eps<k>/wins/[<t>/]<member>``  ensemble: samples each member won
``vs_eps/<attack>/...``                     the same numbers with ``eps`` as x axis
``strongest/eps<k>/avg_degradation``        summary: the run's strongest attack at eps k
``attack/curves/<t>/<m>``                   line-series chart of a metric against eps
``attack/transfer/<step>/eps<k>/{table,heatmap}``  transfer matrix (single-task attacks)
``attack/metrics``                          table: one row per (attack, eps, task, metric)
``standard/eps<k>/<number>``                ``attack=standard``'s verdict (min/avg, tasks/<t>,
                                            flags/<flag>, queries); table ``standard/verdicts``
``clean/<t>/<m>``, ``model/<stat>``         clean metrics and model statistics
``train/<t>/loss``, ``val/<t>/<m>``         per epoch, with ``epoch`` and ``train/step``
==========================================  ==========================================
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

EPS = "eps"  # x axis of every vs_eps/* curve (W&B define_metric)
EPOCH = "epoch"
TRAIN_STEP = "train/step"
VS_EPS = "vs_eps"
ATTACK_TABLE = "attack/metrics"
HEATMAP_TABLE, HEATMAP_IMAGE = "table", "heatmap"  # the two halves of a logged heatmap
#: per-attack aggregates (see evaluation.robustness)
AGGREGATES = ("avg_degradation", "min_degradation", "avg_loss_increase")


def metric_key(*parts: Any) -> str:
    """Join non-empty parts with ``/`` (``None`` parts, e.g. no target task, are dropped)."""
    return "/".join(str(p) for p in parts if p is not None and p != "")


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a/b/c": value}`` using :func:`metric_key`."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = metric_key(prefix, key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out


def attack_name(label: Mapping[str, Any]) -> str:
    """``dgba/pgd``, ``single/depth_zbuffer/pgd``, ``aggregate/linf_mgda/pgd``,
    ``ensemble/min/apgd``: the attack without its budget. ``variant`` (absent for most attacks)
    names an objective's variant or one result of a multi-result attack (ensemble criterion,
    frontier weights); ``loss`` (absent for the default ``ce``) the attack loss, e.g.
    ``single/segment_semantic/segpgd/pgd``."""
    return metric_key(
        label["objective"],
        label.get("target_task"),
        label.get("variant"),
        label.get("loss"),
        label["step"],
    )


def attack_key(label: Mapping[str, Any], *rest: Any) -> str:
    """``attack/<attack>/eps<k>/...`` for the label's ``eps``."""
    return metric_key("attack", attack_name(label), f"eps{label['eps']}", *rest)


def vs_eps_key(label: Mapping[str, Any], *rest: Any) -> str:
    """``vs_eps/<attack>/...``: logged with ``eps`` so W&B plots it against the budget."""
    return metric_key(VS_EPS, attack_name(label), *rest)


def task_key(prefix: str, task: str, metric: str) -> str:
    """A task's metric under an attack prefix: ``<prefix>/tasks/<task>/<metric>``."""
    return metric_key(prefix, "tasks", task, metric)


def attack_record(entry: Mapping[str, Any], prefix: str) -> dict[str, float]:
    """An attack entry's scalars under ``prefix``: the aggregates and every task's metrics."""
    record = {metric_key(prefix, stat): entry[stat] for stat in AGGREGATES}
    for task, metrics in entry["tasks"].items():
        record |= {task_key(prefix, task, m): v for m, v in metrics.items()}
    return record


VERDICT_TABLE = "standard/verdicts"


def verdict_key(eps: Any, *rest: Any) -> str:
    """``standard/eps<k>/...``: a number of ``attack=standard``'s verdict at budget ``eps``."""
    return metric_key("standard", f"eps{eps:g}" if isinstance(eps, float) else f"eps{eps}", *rest)


def verdict_record(verdict: Mapping[str, Any]) -> dict[str, float]:
    """A verdict's scalars: worst-task and average degradation, each task's, its flags (1 each)
    and the gradient-free queries."""
    eps = verdict["eps"]
    record = {verdict_key(eps, k): verdict[k] for k in ("min_degradation", "avg_degradation")}
    record |= {
        verdict_key(eps, "tasks", t, "degradation"): v["degradation"]
        for t, v in verdict["tasks"].items()
    }
    record |= {verdict_key(eps, "flags", f["flag"]): 1 for f in verdict["flags"]}
    return record | {verdict_key(eps, "queries"): verdict["queries"]}


def curve_key(task: str, metric: str) -> str:
    return metric_key("attack/curves", task, metric)


def transfer_key(step: str, eps: Any, part: str | None = None) -> str:
    """``attack/transfer/<step>/eps<k>``; ``part`` = :data:`HEATMAP_IMAGE` or ``_TABLE``."""
    return metric_key("attack/transfer", step, f"eps{eps}", part)


def strongest_key(eps: Any) -> str:
    """Summary: ``avg_degradation`` of the run's strongest attack at budget ``eps``, one
    column whatever the attack, so parallel coordinates can compare runs across attacks."""
    return metric_key("strongest", f"eps{eps}", "avg_degradation")


def clean_key(task: str, metric: str) -> str:
    return metric_key("clean", task, metric)


def model_key(stat: str) -> str:
    return metric_key("model", stat)


def train_loss_key(task: str) -> str:
    return metric_key("train", task, "loss")


def val_key(task: str, metric: str) -> str:
    return metric_key("val", task, metric)


def metrics_record(results: Mapping[str, Mapping[str, float]], key=clean_key) -> dict:
    """``{task: {metric: v}}`` -> ``{key(task, metric): v}`` (clean or validation metrics)."""
    return {key(t, m): v for t, metrics in results.items() for m, v in metrics.items()}


def strongest_record(entries: list[Mapping[str, Any]]) -> dict[str, float]:
    """``{strongest_key(eps): max avg_degradation over the entries at eps}`` (NaN loses)."""
    best: dict[Any, float] = {}
    for e in entries:
        value = e["avg_degradation"]
        if not math.isnan(value) and (e["eps"] not in best or value > best[e["eps"]]):
            best[e["eps"]] = value
    return {strongest_key(eps): v for eps, v in best.items()}


def run_summary(results: Mapping[str, Any]) -> dict[str, Any]:
    """A run's W&B summary: clean metrics, model statistics, strongest attack per eps."""
    summary = metrics_record(results["clean"])
    summary |= {model_key(stat): v for stat, v in results["model"].items()}
    return summary | strongest_record(results.get("attacks", []))
