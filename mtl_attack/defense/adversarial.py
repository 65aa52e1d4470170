"""Adversarial training of a multi-task model with any multi-task attack (method.md section 8).

Each training step attacks the batch with the model in eval mode (the attack base switches and
restores the mode and freezes the parameters), then the update runs in train mode on the
adversarial batch, optionally mixed with the clean batch:

    L = (1 - clean_weight) * L(model(x_adv)) + clean_weight * L(model(x))

``clean_weight=0`` is Madry et al.'s min-max training (arXiv 1706.06083); 0.5 is the mixed loss
of Goodfellow et al. (arXiv 1412.6572). The attack objective is any of the attack issue's
(SINGLE task t, TOTAL, DGBA, SignSum) and the step rule any of its rules; Zhang et al.
(arXiv 2305.12066) train with SINGLE, TOTAL and DGBA at eps 8 with 10 steps and find that DGBA
remains the strongest attack on the robust models.

Threat model of the training attack: L-infinity, eps in pixel levels (8 = 8/255), untargeted,
white-box on the current weights. It is independent of the attack that later evaluates the
model (``attack=...``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mtl_attack.attacks import OBJECTIVES, STEP_RULES, build_attack
from mtl_attack.tasks import Task

#: Madry et al.'s step size relative to eps / steps, so a random start can still reach the
#: far side of the ball
MADRY_STEP_FACTOR = 2.5


class AdversarialTraining:
    """A views function (see :mod:`mtl_attack.defense.training`) that trains on attacked batches.

    Args:
        tasks: every task of the model (the attack's losses cover them all).
        name: label in results and logs.
        attack: the objective: ``single | total | dgba | signsum``.
        task: the attacked task when ``attack=single``.
        step: the step rule: ``fgsm | pgd | mim | apgd``.
        eps: budget in pixel levels.
        steps: attack iterations per training step.
        step_size: pixel levels; ``None`` = 2.5 * eps / steps (Madry et al.).
        random_start: start each attack from a uniform point in the eps-ball. The start is
            drawn from the global torch RNG (checkpointed, so resumed runs are exact).
        clean_weight: weight of the clean batch in the loss, in [0, 1); 0 = adversarial only.

    Shape: ``images`` (B, C, H, W) in [0, 1] -> ``[(x_adv, 1 - w), (images, w)]``.
    """

    def __init__(
        self,
        tasks: dict[str, Task],
        name: str = "adv_train",
        attack: str = "dgba",
        task: str | None = None,
        step: str = "pgd",
        eps: float = 8.0,
        steps: int = 5,
        step_size: float | None = None,
        random_start: bool = True,
        clean_weight: float = 0.0,
    ):
        _check(tasks, attack, task, step, eps, steps, clean_weight)
        if step_size is None and step != "fgsm":
            step_size = MADRY_STEP_FACTOR * float(eps) / int(steps)
        self.name, self.objective, self.task, self.step = name, attack, task, step
        self.eps, self.steps, self.step_size = float(eps), int(steps), step_size
        self.random_start, self.clean_weight = bool(random_start), float(clean_weight)
        self.attack = build_attack(
            attack,
            step,
            tasks,
            eps=eps,
            steps=steps,
            step_size=step_size,
            target_task=task if attack == "single" else None,
            random_start=random_start,
        )

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: dict[str, torch.Tensor]):
        if self.random_start:  # a fresh start per batch, drawn from the checkpointed torch RNG
            self.attack.seed = int(torch.randint(0, 2**62, (1,)))
        adv = self.attack(model, images, targets)
        views = [(adv, 1.0 - self.clean_weight)]
        if self.clean_weight > 0:
            views.append((images, self.clean_weight))
        return views

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "adversarial": True,
            "attack": self.objective,
            "task": self.task,
            "step": self.step,
            "eps": self.eps,
            "steps": self.steps,
            "step_size": self.step_size,
            "random_start": self.random_start,
            "clean_weight": self.clean_weight,
        }


def _check(tasks, attack, task, step, eps, steps, clean_weight) -> None:
    if attack not in OBJECTIVES:
        raise ValueError(f"defense.attack must be one of {list(OBJECTIVES)}, got {attack!r}")
    if step not in STEP_RULES:
        raise ValueError(f"defense.step must be one of {list(STEP_RULES)}, got {step!r}")
    if attack == "single" and task not in tasks:
        raise ValueError(
            f"defense.attack=single needs defense.task=<one of {list(tasks)}>, got {task!r}"
        )
    if eps <= 0 or steps < 1:
        raise ValueError(f"defense.eps must be > 0 and defense.steps >= 1, got {eps}, {steps}")
    if not 0.0 <= clean_weight < 1.0:
        raise ValueError(
            f"defense.clean_weight must be in [0, 1) (0 = adversarial only), got {clean_weight}"
        )
