"""The attack base (bookkeeping) and the iterative attack = step rule x objective.

Threat model (method.md section 2): white-box, L-infinity, untargeted. ``eps`` and
``step_size`` are given in pixel levels of an 8-bit image (eps=4 means 4/255); images are float
in [0, 1] with the normalization inside the model, so every iterate is projected onto the
eps-ball around the clean image and clipped to [0, 1].

Shape: ``images`` (B, C, H, W) in [0, 1]; ``targets`` ``{task: (B, ...)}``; the model maps
images to ``{task: prediction}``; the result has the shape of ``images``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

import torch
from torch import nn

from mtl_attack.attacks.objectives import Objective
from mtl_attack.attacks.steps import StepRule, per_sample
from mtl_attack.tasks import Task

Tensors = Mapping[str, torch.Tensor]


@dataclass
class AttackStats:
    """Running sanity counters over every batch an attack saw (auto-attack ``checks.py``)."""

    samples: int = 0
    zero_gradient: int = 0  # samples whose first direction was exactly zero
    not_raised: int = 0  # samples whose score at the result is not above the clean score
    outside_budget: int = 0  # samples with ||adv - x||_inf > eps or a pixel outside [0, 1]
    clean_score: float = 0.0  # sum over samples
    adv_score: float = 0.0  # sum over samples

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class Attack:
    """Base: ``attack(model, images, targets) -> adversarial images`` (detached).

    Owns the bookkeeping (torchattacks ``Attack.__call__``): the model runs in eval mode with its
    parameters frozen during the attack, and afterwards its mode, ``requires_grad`` flags and
    ``.grad`` are as before; gradients are taken w.r.t. the input only.
    """

    def __init__(self, tasks: Mapping[str, Task], eps: float):
        if eps < 0:
            raise ValueError(f"attack.eps must be >= 0 pixel levels, got {eps}")
        self.tasks = dict(tasks)
        self.eps_levels = float(eps)
        self.eps = float(eps) / 255.0
        self.stats = AttackStats()

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: Tensors) -> torch.Tensor:
        was_training = model.training
        flags = [p.requires_grad for p in model.parameters()]
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)  # no parameter gradients: cheaper, and .grad stays as is
        try:
            with torch.enable_grad():
                adv = self.perturb(model, images.detach(), targets)
        finally:
            for p, flag in zip(model.parameters(), flags):
                p.requires_grad_(flag)
            model.train(was_training)
        return adv.detach()

    def perturb(self, model: nn.Module, images: torch.Tensor, targets: Tensors) -> torch.Tensor:
        raise NotImplementedError

    def losses(
        self, model: nn.Module, x: torch.Tensor, targets: Tensors
    ) -> dict[str, torch.Tensor]:
        """Per-sample loss of every task at ``x``: ``{task: [B]}``."""
        preds = model(x)
        return {t: task.loss(preds[t], targets[t]) for t, task in self.tasks.items()}

    def reset_stats(self) -> None:
        self.stats = AttackStats()


class IterativeAttack(Attack):
    """``steps`` iterations of a step rule along a multi-task objective's direction.

    Args:
        step_rule: how iterates move (SignStep = PGD, MomentumSign = MIM, AutoPGD = APGD).
        objective: which direction and per-sample score (single, total, DGBA, SignSum).
        tasks: every task of the model (losses are computed for all of them).
        eps: budget in pixel levels.
        steps: iterations (10 in the reference code); 1 with step size eps is FGSM.
        step_size: in pixel levels; ``None`` = eps / steps (ignored by APGD).
        random_start: start from a uniform point in the eps-ball instead of the clean image.
        restarts: independent runs; each sample keeps the run with the highest score. Runs
            after the first start from a random point.
        seed: seeds the random starts; the same seed gives the same result.
    """

    def __init__(
        self,
        step_rule: StepRule,
        objective: Objective,
        tasks: Mapping[str, Task],
        eps: float,
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = False,
        restarts: int = 1,
        seed: int = 0,
    ):
        super().__init__(tasks, eps)
        if steps < 1 or restarts < 1:
            raise ValueError(
                f"attack.steps and attack.restarts must be >= 1, got {steps}, {restarts}"
            )
        if getattr(step_rule, "name", "") == "fgsm" and (steps != 1 or step_size is not None):
            given = f"attack.steps={steps}" if steps != 1 else f"attack.step_size={step_size}"
            raise ValueError(
                f"attack/step=fgsm is one step of size eps, but {given}; use attack/step=pgd "
                "for an iterative attack"
            )
        self.step_rule, self.objective = step_rule, objective
        self.steps, self.restarts, self.random_start = int(steps), int(restarts), random_start
        self.step_size = (eps / steps if step_size is None else float(step_size)) / 255.0
        self.seed = int(seed)

    def perturb(self, model, images, targets):
        gen = torch.Generator().manual_seed(self.seed)  # a pure function of (seed, inputs)
        with torch.no_grad():
            clean_losses = self.losses(model, images, targets)
            clean_score = self.objective.score(clean_losses, clean_losses)
        best_x, best_score = None, None
        for r in range(self.restarts):
            start = images
            if self.random_start or r > 0:
                noise = torch.rand(images.shape, generator=gen).to(images.device) * 2 - 1
                start = self.step_rule.project(
                    {"x_clean": images, "eps": self.eps},
                    images + self.eps * noise.to(images.dtype),
                )
            x, score = self.run_once(model, images, targets, clean_losses, start)
            if best_x is None:
                best_x, best_score = x, score
            else:
                better = score > best_score
                best_x = torch.where(per_sample(better, x), x, best_x)
                best_score = torch.where(better, score, best_score)
        self.record(images, best_x, clean_score, best_score)
        return best_x

    def run_once(self, model, images, targets, clean_losses, start):
        state = self.step_rule.init(images, start, self.eps, self.step_size, self.steps)
        x = start
        for k in range(self.steps):
            x = x.detach().requires_grad_(True)
            losses = self.losses(model, x, targets)
            direction = self.objective.direction(losses, x).detach()
            if k == 0:
                self.stats.zero_gradient += int(
                    (direction.flatten(1).abs().amax(dim=1) == 0).sum()
                )
            score = self.objective.score({t: v.detach() for t, v in losses.items()}, clean_losses)
            x = self.step_rule.update(state, x.detach(), direction, score, k)
        with torch.no_grad():
            final = self.objective.score(self.losses(model, x, targets), clean_losses)
        return self.step_rule.finish(state, x.detach(), final)

    def record(self, images, adv, clean_score, adv_score) -> None:
        linf = (adv - images).flatten(1).abs().amax(dim=1)
        outside = (
            (linf > self.eps + 1e-6) | (adv.flatten(1).amin(1) < 0) | (adv.flatten(1).amax(1) > 1)
        )
        s = self.stats
        s.samples += images.shape[0]
        s.not_raised += int((adv_score <= clean_score).sum())
        s.outside_budget += int(outside.sum())
        s.clean_score += float(clean_score.sum())
        s.adv_score += float(adv_score.sum())

    def __repr__(self) -> str:
        return (
            f"IterativeAttack({self.step_rule!r}, {self.objective!r}, eps={self.eps_levels}"
            f", steps={self.steps}, random_start={self.random_start}, "
            f"restarts={self.restarts})"
        )
