"""The complete identity of an attack result: everything that can change its numbers.

Two results with equal identities are the same experiment (a duplicate); results that differ in
any field are different experiments, and reports must show them as different rows. The identity
is stored with every attack entry of ``results.json`` (``entry["identity"]``) and rebuilt from the
run's config for files written before it existed (:func:`identity_from_run`).

Fields: the label (``objective``, ``step`` by its real rule name, ``eps``, ``target_task``, and
``variant`` for objective variants and the results of multi-result attacks, ``loss`` for an
attack loss other than the default ``ce``),
every other setting of the attack config (``steps``, ``step_size`` as configured, ``null`` =
eps/steps, ``random_start``, ``restarts``, ``seed``, ...) with the objective's and the step rule's
own arguments under ``objective_args`` / ``step_args``, and what was attacked: ``model`` (the
trained weights' cache key), ``defense``, ``dataset``, ``tasks``, ``metrics`` (the convention)
and ``eval`` (the evaluation settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

#: dataset class -> the name its source reports (for files without a stored identity)
DATASET_NAMES = {"SyntheticBenchmark": "synthetic", "NYUv2": "nyuv2", "Taskonomy": "taskonomy"}

#: attack config keys that are labels or constructors rather than loop settings
#: (``aggregator`` and ``weights_from`` are shortcuts for ``attack.objective.<key>``: the label's
#: ``variant``, and in the identity under ``objective_args``; ``loss`` is the label's ``loss``,
#: absent for the default ``ce`` so that default identities are unchanged)
LABEL_KEYS = ("name", "eps", "task", "objective", "step", "aggregator", "weights_from", "loss")


def _args(node: Any) -> dict[str, Any]:
    """A constructor node's arguments (``_target_``/``_partial_`` and labels dropped)."""
    if not isinstance(node, Mapping):
        return {}
    return {k: v for k, v in node.items() if not str(k).startswith("_") and k != "name"}


def attack_settings(attack_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of a resolved ``attack`` config other than its labels (eps, task)."""
    settings = {k: v for k, v in attack_cfg.items() if k not in LABEL_KEYS}
    settings["objective_args"] = _args(attack_cfg.get("objective"))
    settings["step_args"] = _args(attack_cfg.get("step"))
    return dict(sorted(settings.items()))


def target_context(
    model: str, defense: str, dataset: str, tasks: list[str], metrics: str, eval_cfg: Mapping
) -> dict[str, Any]:
    """What an attack ran on: the weights' cache key, the defense and the evaluation data."""
    return {
        "model": model,
        "defense": defense,
        "dataset": dataset,
        "tasks": list(tasks),
        "metrics": metrics,
        "eval": dict(eval_cfg),
    }


def result_identity(
    label: Mapping[str, Any], attack_cfg: Mapping[str, Any], context: Mapping[str, Any]
) -> dict[str, Any]:
    """``label`` (objective, step, eps, target_task) + attack settings + ``context``."""
    return dict(label) | attack_settings(attack_cfg) | dict(context)


def short_name(target: Any) -> str:
    """``mtl_attack.data.synthetic.SyntheticBenchmark`` -> ``SyntheticBenchmark``."""
    return str(target).rsplit(".", 1)[-1]


def identity_from_run(run: Mapping[str, Any], entry: Mapping[str, Any]) -> dict[str, Any]:
    """The identity of ``entry`` of a loaded ``results.json`` (stored, or rebuilt from the run's
    config for files written before identities were stored)."""
    if "identity" in entry:
        return dict(entry["identity"])
    cfg = run.get("config", {})
    dataset = cfg.get("dataset", {})
    checkpoint = run.get("model", {}).get("checkpoint")
    context = target_context(
        model=Path(checkpoint).parent.name if checkpoint else str(run.get("_path", "?")),
        defense=cfg.get("defense", {}).get("name", "none"),
        dataset=DATASET_NAMES.get(short_name(dataset.get("_target_")), "?"),
        tasks=list(entry.get("tasks", {})),
        metrics=dataset.get("metrics", "reference"),
        eval_cfg=cfg.get("eval", {}),
    )
    label = {k: entry.get(k) for k in ("objective", "step", "eps", "target_task")}
    for key in ("variant", "loss"):
        if entry.get(key) is not None:
            label[key] = entry[key]
    return result_identity(label, cfg.get("attack", {}), context)
