"""Attacks: step rule (FGSM, PGD, MIM, APGD) x multi-task objective (single, total, dgba,
signsum, relative, cyclic, minmax, aggregate), and attacks made of attacks (the worst-case
ensemble and the weight frontier). Usable without Hydra::

    attack = build_attack("dgba", "pgd", tasks, eps=4, steps=10)
    adv = attack(model, images, targets)   # in the 4/255 ball and in [0, 1], detached
    attack = build_attack("aggregate", "apgd", tasks, eps=4, aggregator="linf_mgda")
    outcome = attack.run(model, images, targets)   # images, score, losses and preds at them
    views = build_ensemble(tasks, eps=4).run_views(model, images, targets)  # mean/min/per_task
    attack = build_attack("single", "pgd", tasks, eps=4, target_task="segment_semantic",
                          loss="segpgd")   # what the attack ascends (losses.py); ce = default
    standard = build_standard(tasks, 4, protocol)  # conf/attack/standard.yaml, one budget
"""

from __future__ import annotations

from collections.abc import Mapping

from mtl_attack.attacks.aggregate import AGGREGATORS, Aggregate
from mtl_attack.attacks.apgd import AutoPGD, checkpoints
from mtl_attack.attacks.base import Attack, AttackStats, IterativeAttack, Outcome
from mtl_attack.attacks.ensemble import CRITERIA, Ensemble, Frontier
from mtl_attack.attacks.losses import LOSSES, AttackLoss, attack_loss, loss_label
from mtl_attack.attacks.objectives import (
    DynamicGradientBalancing,
    Objective,
    SignSum,
    SingleTask,
    TotalLoss,
)
from mtl_attack.attacks.simplex import project_simplex, simplex_grid
from mtl_attack.attacks.square import SquareAttack
from mtl_attack.attacks.standard import Standard
from mtl_attack.attacks.steps import MomentumSign, SignStep, StepRule, project
from mtl_attack.attacks.weighting import Cyclic, MinMax, RelativeLoss
from mtl_attack.tasks import Task

__all__ = [
    "AGGREGATORS",
    "CRITERIA",
    "DEFAULT_MEMBERS",
    "LOSSES",
    "OBJECTIVES",
    "STEP_RULES",
    "Aggregate",
    "Attack",
    "AttackLoss",
    "AttackStats",
    "AutoPGD",
    "Cyclic",
    "DynamicGradientBalancing",
    "Ensemble",
    "Frontier",
    "IterativeAttack",
    "MinMax",
    "MomentumSign",
    "Objective",
    "Outcome",
    "RelativeLoss",
    "SignSum",
    "SignStep",
    "SingleTask",
    "SquareAttack",
    "Standard",
    "StepRule",
    "TotalLoss",
    "attack_loss",
    "build_attack",
    "build_ensemble",
    "build_objective",
    "build_standard",
    "build_step_rule",
    "checkpoints",
    "loss_label",
    "project",
    "project_simplex",
    "simplex_grid",
]

OBJECTIVES = ("single", "total", "dgba", "signsum", "relative", "cyclic", "minmax", "aggregate")
STEP_RULES = ("fgsm", "pgd", "mim", "apgd")
OBJECTIVE_CLASSES = {
    "total": TotalLoss,
    "dgba": DynamicGradientBalancing,
    "signsum": SignSum,
    "relative": RelativeLoss,
    "cyclic": Cyclic,
    "minmax": MinMax,
    "aggregate": Aggregate,
}
# the ensemble's default members: "single" expands to one member per task
DEFAULT_MEMBERS = {
    "dgba": ("dgba", {}),
    "minmax": ("minmax", {}),
    "linf_mgda": ("aggregate", {"aggregator": "linf_mgda"}),
    "total": ("total", {}),
    "single": ("single", {}),
}


def build_objective(
    objective: str,
    tasks: Mapping[str, Task],
    target_task: str | None = None,
    task_weights: Mapping[str, float] | None = None,
    **options,
) -> Objective:
    """The objective ``objective`` on ``tasks``; ``options`` go to its constructor (e.g.
    ``aggregator="pcgrad"`` for ``aggregate``, ``gamma=3.0`` for ``minmax``)."""
    if objective == "single":
        if target_task is None:
            raise ValueError("objective 'single' needs target_task (attack.task=<task name>)")
        return SingleTask(tasks, target_task, **options)
    if objective not in OBJECTIVE_CLASSES:
        raise ValueError(f"attack objective must be one of {OBJECTIVES}, got {objective!r}")
    if objective in ("total", "relative") and task_weights is not None:
        options["weights"] = task_weights
    return OBJECTIVE_CLASSES[objective](tasks, **options)


def build_step_rule(step: str) -> StepRule:
    rules = {
        "fgsm": lambda: SignStep("fgsm"),
        "pgd": SignStep,
        "mim": MomentumSign,
        "apgd": AutoPGD,
    }
    if step not in rules:
        raise ValueError(f"attack step rule must be one of {STEP_RULES}, got {step!r}")
    return rules[step]()


def build_attack(
    objective: str,
    step: str,
    tasks: dict[str, Task],
    *,
    eps: float,
    steps: int = 10,
    step_size: float | None = None,
    target_task: str | None = None,
    random_start: bool = False,
    restarts: int = 1,
    seed: int = 0,
    task_weights: dict[str, float] | None = None,
    loss="ce",
    **options,
) -> IterativeAttack:
    """Build ``step`` x ``objective`` (see :class:`IterativeAttack` for the arguments; eps and
    step_size in pixel levels; ``loss`` what each task ascends, :mod:`.losses`; ``options`` go
    to the objective). ``fgsm`` is one step of size eps (``steps`` is ignored)."""
    rule = build_step_rule(step)
    if step == "fgsm":
        steps, step_size = 1, None
    return IterativeAttack(
        rule,
        build_objective(objective, tasks, target_task, task_weights, **options),
        tasks,
        eps=eps,
        steps=steps,
        step_size=step_size,
        random_start=random_start,
        restarts=restarts,
        seed=seed,
        loss=loss,
    )


def single_targets(tasks: Mapping[str, Task], loss: AttackLoss) -> list[str]:
    """The tasks a SINGLE member with ``loss`` attacks: every task under ``ce``; otherwise the
    tasks the loss is defined for (elsewhere it would repeat the plain SINGLE member)."""
    return list(tasks) if loss.is_task_loss else list(loss.functions)


def build_ensemble(
    tasks: dict[str, Task],
    *,
    eps: float,
    step: str = "apgd",
    members: Mapping[str, tuple[str, dict]] | None = None,
    criteria=CRITERIA,
    criterion: str = "mean",
    **loop,
) -> Ensemble:
    """The worst-case ensemble: ``members`` ``{name: (objective, options)}`` (default
    :data:`DEFAULT_MEMBERS`: APGD with dgba, minmax, linf_mgda, total and single on every task,
    and the dense-loss members), every one with step rule ``step``, budget ``eps`` and the loop
    arguments ``loop`` (steps, seed, loss, ...). A member's ``options`` may carry its own
    ``loss`` (e.g. ``("single", {"loss": "segpgd"})``, which attacks the tasks segpgd is defined
    for); the others go to its objective."""
    attacks = {}
    shared = attack_loss(loop.pop("loss", "ce"), tasks)
    for name, (objective, options) in (members or DEFAULT_MEMBERS).items():
        options = dict(options)
        loss = attack_loss(options.pop("loss"), tasks) if "loss" in options else shared
        targets = single_targets(tasks, loss) if objective == "single" else [None]
        for target in targets:
            label = f"{name}({target})" if target else name
            attacks[label] = build_attack(
                objective, step, tasks, eps=eps, target_task=target, loss=loss, **loop, **options
            )
    return Ensemble(attacks, criteria, criterion)


def build_standard(
    tasks: dict[str, Task], eps: float, protocol: Mapping, step_rule: StepRule | None = None
) -> Standard:
    """The standard protocol at budget ``eps`` from its definition (``conf/attack/standard.yaml``
    resolved at one budget): ``members`` ``{label: {objective, [loss], **options}}`` (``single``
    runs once per task, or per task its ``loss`` is defined for; ``loss`` defaults to the
    protocol's ``loss``), ``steps``, ``queries``, ``square_share``, ``eot_draws``, ``square``
    ``{objective, p_init}`` and ``seed``; ``step_rule`` of the members: APGD."""
    rule, seed = step_rule or AutoPGD(), int(protocol["seed"])
    members = {}
    for name, spec in protocol["members"].items():
        options = {k: v for k, v in spec.items() if k not in ("objective", "loss")}
        loss = AttackLoss(spec.get("loss", protocol.get("loss", "ce")), tasks, announce=False)
        single = spec["objective"] == "single"
        for target in single_targets(tasks, loss) if single else [None]:
            objective = build_objective(spec["objective"], tasks, target, **options)
            members[f"{name}({target})" if target else name] = IterativeAttack(
                rule, objective, tasks, eps, steps=int(protocol["steps"]), seed=seed, loss=loss
            )
    square = dict(protocol["square"])
    objective = build_objective(square.pop("objective"), tasks)
    gradient_free = SquareAttack(
        objective, tasks, eps, queries=int(protocol["queries"]), seed=seed, **square
    )
    return Standard(
        members, gradient_free, float(protocol["square_share"]), int(protocol["eot_draws"])
    )
