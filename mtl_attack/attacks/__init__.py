"""Attacks: step rule (FGSM, PGD, MIM, APGD) x multi-task objective (single, total, DGBA,
SignSum). Usable without Hydra through :func:`build_attack`::

    attack = build_attack("dgba", "pgd", tasks, eps=4, steps=10)
    adv = attack(model, images, targets)   # in the 4/255 ball and in [0, 1], detached
"""

from __future__ import annotations

from collections.abc import Mapping

from mtl_attack.attacks.apgd import AutoPGD, checkpoints
from mtl_attack.attacks.base import Attack, AttackStats, IterativeAttack
from mtl_attack.attacks.objectives import (
    DynamicGradientBalancing,
    Objective,
    SignSum,
    SingleTask,
    TotalLoss,
)
from mtl_attack.attacks.steps import MomentumSign, SignStep, StepRule, project
from mtl_attack.tasks import Task

__all__ = [
    "OBJECTIVES",
    "STEP_RULES",
    "Attack",
    "AttackStats",
    "AutoPGD",
    "DynamicGradientBalancing",
    "IterativeAttack",
    "MomentumSign",
    "Objective",
    "SignSum",
    "SignStep",
    "SingleTask",
    "StepRule",
    "TotalLoss",
    "build_attack",
    "build_objective",
    "checkpoints",
    "project",
]

OBJECTIVES = ("single", "total", "dgba", "signsum")
STEP_RULES = ("fgsm", "pgd", "mim", "apgd")


def build_objective(
    objective: str,
    tasks: Mapping[str, Task],
    target_task: str | None = None,
    task_weights: Mapping[str, float] | None = None,
) -> Objective:
    if objective == "single":
        if target_task is None:
            raise ValueError("objective 'single' needs target_task (attack.task=<task name>)")
        return SingleTask(tasks, target_task)
    if objective == "total":
        return TotalLoss(tasks, task_weights)
    if objective == "dgba":
        return DynamicGradientBalancing(tasks)
    if objective == "signsum":
        return SignSum(tasks)
    raise ValueError(f"attack objective must be one of {OBJECTIVES}, got {objective!r}")


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
) -> Attack:
    """Build ``step`` x ``objective`` (see :class:`IterativeAttack` for the arguments; eps and
    step_size in pixel levels). ``fgsm`` is one step of size eps (``steps`` is ignored)."""
    rules = {
        "fgsm": lambda: SignStep("fgsm"),
        "pgd": SignStep,
        "mim": MomentumSign,
        "apgd": AutoPGD,
    }
    if step not in rules:
        raise ValueError(f"attack step rule must be one of {STEP_RULES}, got {step!r}")
    if step == "fgsm":
        steps, step_size = 1, None
    return IterativeAttack(
        rules[step](),
        build_objective(objective, tasks, target_task, task_weights),
        tasks,
        eps=eps,
        steps=steps,
        step_size=step_size,
        random_start=random_start,
        restarts=restarts,
        seed=seed,
    )
