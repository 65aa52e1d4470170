"""Robust evaluation: attack the whole test split, measure every task, flag broken attacks.

Sanity flags (after auto-attack's ``checks.py``), logged as warnings and stored in the result:

- ``zero_gradient``: some samples had an all-zero input gradient at the first step (masked
  gradients, saturated outputs), so the attack could not move them;
- ``objective_not_raised``: on average the attack did not raise its own objective above the
  clean input's (some samples not raised is counted in ``diagnostics``);
- ``outside_budget``: a perturbation left the eps-ball or [0, 1] (a bug, always).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader

from mtl_attack.attacks import Attack, AttackStats
from mtl_attack.evaluation.degradation import Metrics, summarize, transfer_matrix
from mtl_attack.evaluation.evaluate import evaluate
from mtl_attack.tasks import Task
from mtl_attack.utils.distributed import all_reduce_sum

log = logging.getLogger("mtl_attack")


def sanity_flags(stats: AttackStats) -> list[str]:
    flags = []
    if stats.zero_gradient:
        flags.append("zero_gradient")
    if stats.samples and stats.adv_score <= stats.clean_score:
        flags.append("objective_not_raised")
    if stats.outside_budget:
        flags.append("outside_budget")
    return flags


def evaluate_attack(
    model: nn.Module,
    tasks: Mapping[str, Task],
    loader: DataLoader,
    device: torch.device,
    attack: Attack,
    clean: Metrics,
    label: Mapping[str, object],
    progress: bool = True,
) -> dict:
    """Attack every test batch, evaluate, and summarize against the clean metrics.

    Returns the ``results.json`` entry: ``label`` (objective, step, eps, target_task) then
    ``tasks``, ``avg_degradation``, ``min_degradation``, ``avg_loss_increase``, ``seconds``,
    ``flags`` and ``diagnostics`` (the attack's counters).
    """
    attack.reset_stats()
    start = time.time()
    adv = evaluate(
        model,
        tasks,
        loader,
        device,
        perturb=lambda images, targets: attack(model, images, targets),
        progress=progress,
        desc=f"attack {label.get('objective')} eps={label.get('eps')}",
    )
    _sum_over_ranks(attack.stats, device)
    entry = dict(label) | summarize(tasks, clean, adv) | {"seconds": time.time() - start}
    entry["flags"] = sanity_flags(attack.stats)
    entry["diagnostics"] = attack.stats.as_dict()
    for flag in entry["flags"]:
        log.warning("attack %s: sanity flag %s (%s)", dict(label), flag, entry["diagnostics"])
    return entry


def _sum_over_ranks(stats: AttackStats, device: torch.device) -> None:
    """Add up every rank's sanity counters (in place; a no-op in one process)."""
    state = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in stats.as_dict().items()}
    for key, value in all_reduce_sum(state, device).items():
        setattr(stats, key, type(getattr(stats, key))(value.item()))


def transfer_matrices(entries: list[dict]) -> list[dict]:
    """One transfer matrix per (step rule, eps) among single-task entries that cover 2+ tasks."""
    groups: dict[tuple, list[dict]] = {}
    for e in entries:
        if e["objective"] == "single":
            groups.setdefault((e["step"], e["eps"]), []).append(e)
    return [
        {"step": step, "eps": eps, "matrix": transfer_matrix(group)}
        for (step, eps), group in groups.items()
        if len(group) > 1
    ]


Labelled = tuple[Mapping[str, object], Attack]


def attack_label(attack: Attack) -> dict[str, object]:
    """The ``results.json`` label of an attack built in Python (e.g. by ``build_attack``)."""
    objective = getattr(attack, "objective", None)
    step = getattr(attack, "step_rule", None)
    eps = attack.eps_levels
    return {
        "objective": getattr(objective, "name", type(attack).__name__),
        "step": getattr(step, "name", None),
        "eps": int(eps) if float(eps).is_integer() else eps,
        "target_task": getattr(objective, "task", None),
    }


def evaluate_robustness(
    model: nn.Module,
    tasks: Mapping[str, Task],
    loader: DataLoader,
    attacks: Sequence[Attack | Labelled],
    device: torch.device | str | None = None,
    progress: bool = False,
) -> dict:
    """Clean metrics, every attack, transfer matrices: the Python API without Hydra.

    Returns the evaluation part of ``results.json``: ``{"clean": {task: {metric: value,
    "loss"}}, "attacks": [entry, ...], "transfer": [...]}``, each entry with ``objective``,
    ``step``, ``eps``, ``target_task``, per-task metrics with ``degradation`` and
    ``loss_increase``, ``avg_degradation``, ``min_degradation``, ``avg_loss_increase``,
    ``seconds``, ``flags`` and ``diagnostics``. ``attacks`` are :class:`Attack` objects (their
    label is read from them) or ``(label, attack)`` pairs.

    Example::

        model = wrap_model(net, tasks, input={"scale": 255}, outputs={"seg": "segment_semantic"})
        attacks = [build_attack("dgba", "pgd", tasks, eps=e) for e in (2, 4, 8)]
        results = evaluate_robustness(model, tasks, test_loader, attacks)
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    clean = evaluate(model, tasks, loader, device, progress=progress, desc="clean eval")
    entries = []
    for item in attacks:
        label, attack = item if isinstance(item, tuple) else (attack_label(item), item)
        entries.append(
            evaluate_attack(model, tasks, loader, device, attack, clean, label, progress)
        )
    return {"clean": clean, "attacks": entries, "transfer": transfer_matrices(entries)}
