"""Robust evaluation: attack the whole test split, measure every task, flag broken attacks.

Sanity flags (after auto-attack's ``checks.py``; :mod:`mtl_attack.evaluation.flags` lists them
with what each saw and what to do) are logged as warnings and stored in the result (``flags``,
from the counters in ``diagnostics``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from mtl_attack.attacks import Attack, AttackStats
from mtl_attack.data.h5dataset import split_batch
from mtl_attack.evaluation.degradation import Metrics, summarize, transfer_matrix
from mtl_attack.evaluation.evaluate import Totals, evaluate
from mtl_attack.evaluation.flags import sanity_checks
from mtl_attack.evaluation.keys import attack_name, flatten
from mtl_attack.tasks import Task
from mtl_attack.utils.distributed import all_reduce_sum

log = logging.getLogger("mtl_attack")


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
    ``tasks``, ``avg_degradation``, ``min_degradation``, ``avg_loss_increase``, ``seconds``
    (wall clock) and ``cpu_seconds`` (this process's CPU time: what a shared machine does not
    inflate), ``flags`` and ``diagnostics`` (the attack's counters). An attack with several results
    (ensemble, frontier) needs :func:`evaluate_views`.
    """
    entries = evaluate_views(model, tasks, loader, device, attack, clean, label, progress)
    if len(entries) != 1:
        raise ValueError(f"{attack!r} has {len(entries)} results: use evaluate_views")
    return entries[0]


def evaluate_views(
    model: nn.Module,
    tasks: Mapping[str, Task],
    loader: DataLoader,
    device: torch.device,
    attack: Attack,
    clean: Metrics,
    label: Mapping[str, object],
    progress: bool = True,
) -> list[dict]:
    """Attack every test batch once and evaluate every result the attack makes (one; one per
    ensemble criterion; one per frontier point): one entry each, as :func:`evaluate_attack`,
    with the view's name as the label's ``variant`` and the view's extras (ensemble ``wins``,
    frontier ``weights``).

    The adversarial metrics come from the predictions of the attack's own last forward pass
    (:class:`~mtl_attack.attacks.Outcome`), so attack plus evaluation cost
    ``steps x (forward + backward)`` plus one forward pass per batch (two with a random start:
    the clean losses).
    """
    attack.reset_stats()
    start, cpu_start = time.time(), time.process_time()
    # every view up front: a torchrun rank without batches still joins every all-reduce
    totals = {view: Totals(dict(tasks)) for view in attack.view_stats()}
    was_training = model.training
    model.eval()
    desc = f"attack {attack_name(label)} eps={label.get('eps')}"
    try:
        for batch in tqdm(loader, desc=desc, disable=not progress, leave=False):
            images, targets = split_batch(batch, tasks, device)
            for view, out in attack.run_views(model, images, targets).items():
                totals[view].update(out.preds, targets, out.losses)
    finally:
        model.train(was_training)
    seconds, cpu_seconds = time.time() - start, time.process_time() - cpu_start
    share = 1 if attack.shared_views else max(len(totals), 1)
    stats = attack.view_stats()
    entries = []
    for view, total in totals.items():
        _sum_over_ranks(stats[view], device)
        entry = dict(label) | ({"variant": view} if view else {})
        entry |= summarize(tasks, clean, total.result(device))
        entry |= {"seconds": seconds / share, "cpu_seconds": cpu_seconds / share}
        entry |= _summed_info(attack.view_info(view), device)
        checks = sanity_checks(stats[view])
        entry["flags"] = [c["flag"] for c in checks]
        entry["diagnostics"] = stats[view].as_dict()
        _warn(entry, checks)
        entries.append(entry)
    return entries


def _warn(entry: dict, checks: list[dict]) -> None:
    """Log an entry's flags: what each saw and what to do (for ``attack=standard``, whose
    verdict logs every flag's message once, only the names)."""
    if entry["objective"] == "standard" and checks:
        names = ", ".join(c["flag"] for c in checks)
        log.warning("attack %s eps=%s: sanity flags %s", attack_name(entry), entry["eps"], names)
        return
    for check in checks:
        log.warning(
            "attack %s eps=%s: sanity flag %s: %s",
            attack_name(entry),
            entry["eps"],
            check["flag"],
            check["message"],
        )


def _summed_info(info: dict, device: torch.device) -> dict:
    """A view's extras; integer counts (ensemble wins) are summed over torchrun ranks."""
    flat = flatten(info)
    counts = {
        k: torch.tensor(float(v), dtype=torch.float64)
        for k, v in flat.items()
        if isinstance(v, int) and not isinstance(v, bool)
    }
    if not counts:
        return info
    summed = {k: int(v.item()) for k, v in all_reduce_sum(counts, device).items()}
    return _unflatten(flat | summed)


def _unflatten(flat: dict) -> dict:
    tree: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split("/")
        node = tree
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return tree


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
    """The ``results.json`` label of an attack built in Python (e.g. by ``build_attack``); an
    ensemble or a frontier is labelled as a whole (its views add their ``variant``)."""
    objective = getattr(attack, "objective", None)
    step = getattr(attack, "step_rule", None)
    members = getattr(attack, "members", None)
    if members:
        step = getattr(next(iter(members.values())), "step_rule", None)
    eps = attack.eps_levels
    label = {
        "objective": type(attack).__name__.lower()
        if members
        else getattr(objective, "name", type(attack).__name__),
        "step": getattr(step, "name", None),
        "eps": int(eps) if float(eps).is_integer() else eps,
        "target_task": getattr(objective, "task", None),
    }
    variant = getattr(objective, "variant", None)
    loss = getattr(getattr(attack, "loss", None), "label", None)
    if members:  # an ensemble's members may carry their own losses; one shared loss labels it
        labels = {getattr(getattr(m, "loss", None), "label", None) for m in members.values()}
        loss = labels.pop() if len(labels) == 1 else None
    extra = {"variant": variant, "loss": loss}
    return label | {k: v for k, v in extra.items() if v is not None}


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
    label is read from them) or ``(label, attack)`` pairs; an ensemble or a frontier gives one
    entry per result (``variant``).

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
        entries += evaluate_views(model, tasks, loader, device, attack, clean, label, progress)
    return {"clean": clean, "attacks": entries, "transfer": transfer_matrices(entries)}
