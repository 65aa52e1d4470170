"""Objectives that weight the task losses: static (RELATIVE), round-robin (CYCLIC) and min-max.

All three cost one forward and ONE backward pass per step, like TOTAL: their weights multiply
the losses before the single backward. Their per-sample state (clean normalizers, a step counter,
simplex weights of shape (B, T)) is reset by ``start`` at every run.

Sources: Ghamizi et al., "Adversarial Robustness in Multi-Task Learning: Promises and Illusions",
AAAI 2022 (arXiv 2110.15053; RELATIVE_WEIGHT and CYCLIC_STEP strategies); Wang et al.,
"Adversarial Attack Generation Empowered by Min-Max Optimization", NeurIPS 2021
(arXiv 1906.03563; APGDA), mapped to tasks as in attacks_literature.md section 2.1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from mtl_attack.attacks.objectives import (
    Losses,
    Objective,
    Preds,
    input_gradient,
    least_change,
    relative_change,
)
from mtl_attack.attacks.proxies import metric_degradation, metric_values
from mtl_attack.attacks.simplex import project_simplex
from mtl_attack.tasks import Task


def _task_weights(names: list[str], weights: Mapping[str, float] | None) -> list[float]:
    weights = dict(weights or {})
    unknown = set(weights) - set(names)
    if unknown:
        raise ValueError(f"attack weights name unknown tasks {sorted(unknown)}; tasks: {names}")
    return [float(weights.get(t, 1.0)) for t in names]


class RelativeLoss(Objective):
    """RELATIVE: TOTAL with static per-sample weights ``w_t / L_t^clean`` (Ghamizi et al.'s
    RELATIVE_WEIGHT, per sample and against the clean loss): direction
    ``grad sum_t w_t L_t / Lc_t``; the score is that weighted sum. It is the static counterpart
    of DGBA (whose weights ``1/L_t`` follow the current loss); ``w_t`` defaults to 1.
    """

    name = "relative"

    def __init__(
        self,
        tasks: Mapping[str, Task] | list[str],
        weights: Mapping[str, float] | None = None,
        min_loss: float = 1e-8,
    ):
        super().__init__(tasks)
        self.weights = _task_weights(self.task_names, weights)
        self.min_loss = float(min_loss)
        self.scale: torch.Tensor | None = None  # (B, T): w_t / Lc_t

    def start(self, clean_losses, clean_preds=None, targets=None) -> None:
        clean = self.stack(clean_losses).detach()
        w = torch.tensor(self.weights, dtype=clean.dtype, device=clean.device)
        self.scale = w / clean.clamp_min(self.min_loss)

    def direction(self, losses: Losses, x: torch.Tensor, preds: Preds | None = None):
        stacked = self.stack(losses)
        _check_started(self, self.scale, stacked)
        return input_gradient((stacked * self.scale).sum(dim=1), x)

    def score(self, losses: Losses, clean_losses: Losses) -> torch.Tensor:
        clean = self.stack(clean_losses).clamp_min(self.min_loss)
        w = torch.tensor(self.weights, dtype=clean.dtype, device=clean.device)
        return (self.stack(losses).detach() * w / clean).sum(dim=1)


class Cyclic(Objective):
    """CYCLIC (Ghamizi et al.'s CYCLIC_STEP): step k ascends task ``k mod T`` alone, in model
    order. The score is the averaged relative loss change (a fixed function of the losses)."""

    name = "cyclic"

    def __init__(self, tasks: Mapping[str, Task] | list[str], min_loss: float = 1e-8):
        super().__init__(tasks)
        self.min_loss = float(min_loss)
        self.step: int | None = None

    def start(self, clean_losses, clean_preds=None, targets=None) -> None:
        self.step = 0

    def direction(self, losses: Losses, x: torch.Tensor, preds: Preds | None = None):
        if self.step is None:
            raise RuntimeError("Cyclic.direction before start(): the attack starts each run")
        task = self.task_names[self.step % len(self.task_names)]
        self.step += 1
        return input_gradient(losses[task], x)

    def score(self, losses: Losses, clean_losses: Losses) -> torch.Tensor:
        return relative_change(
            self.stack(losses).detach(), self.stack(clean_losses), self.min_loss
        )


class MinMax(Objective):
    """MINMAX: min-max over tasks with per-sample simplex weights (Wang et al., NeurIPS 2021).

    ``max_delta min_{w in simplex} sum_t w_t F_t + (gamma/2) ||w - 1/T||^2`` on the scale-free
    terms ``F_t = log(L_t / L_t^clean)``. Direction: ``grad sum_t T w_t log L_t`` (one backward;
    uniform w gives DGBA's direction exactly). Weight step after each direction, from that
    step's losses (the PyTorch port's ordering: step k uses weights from steps < k)::

        w <- Proj_simplex((w - R / beta + (gamma / beta) / T) / (1 + gamma / beta))

    the proximal form of Wang et al.'s ``w <- Proj(w - (R + gamma (w - 1/T)) / beta)``: it
    moves weight toward the least-degraded tasks (small R), agrees with it to first order in
    ``gamma / beta``, and stays stable for every gamma: ``gamma = inf`` keeps w uniform, i.e.
    DGBA exactly. ``weights_from``: ``loss`` (R = F) or ``metric`` (R = each task's per-sample
    metric degradation, see :mod:`~mtl_attack.attacks.proxies`; the direction still comes from
    the losses). Score: the least relative loss change over tasks (the worst-case target).

    Args:
        beta: inverse weight step. Wang et al. use 30-50 over 20-100 steps; the default 0.5
            lets the weights move within 10 steps (picked on the synthetic benchmark, see
            docs/attacks.md).
        gamma: pull toward uniform weights (Wang et al.: 3-5; 0 = pure worst case;
            ``inf`` = DGBA).
        weights_from: ``loss`` | ``metric``.
        min_loss: losses are clamped here so the logs stay finite.
    """

    name = "minmax"

    def __init__(
        self,
        tasks: Mapping[str, Task] | list[str],
        beta: float = 0.5,
        gamma: float = 0.0,
        weights_from: str = "loss",
        min_loss: float = 1e-8,
    ):
        super().__init__(tasks)
        if weights_from not in ("loss", "metric"):
            raise ValueError(
                f"attack weights_from must be 'loss' or 'metric', got {weights_from!r}"
            )
        if beta <= 0 or gamma < 0:
            raise ValueError(f"minmax needs beta > 0 and gamma >= 0, got {beta}, {gamma}")
        if weights_from == "metric" and not (
            isinstance(tasks, Mapping) and all(isinstance(t, Task) for t in tasks.values())
        ):
            raise ValueError("minmax with weights_from=metric needs the Task objects")
        self.tasks = dict(tasks) if weights_from == "metric" else {}
        self.beta, self.gamma, self.weights_from = float(beta), float(gamma), weights_from
        self.needs_predictions = weights_from == "metric"
        self.variant = "metric" if weights_from == "metric" else None
        self.min_loss = float(min_loss)
        self.weights: torch.Tensor | None = None  # (B, T), float64 so that T * (1/T) == 1

    def start(self, clean_losses, clean_preds=None, targets=None) -> None:
        self.clean = self.stack(clean_losses).detach().clamp_min(self.min_loss)
        batch, tasks = self.clean.shape
        self.weights = torch.full((batch, tasks), 1.0 / tasks, dtype=torch.float64)
        self.weights = self.weights.to(self.clean.device)
        if self.needs_predictions:
            if clean_preds is None or targets is None:
                raise ValueError("minmax weights_from=metric: start() needs clean predictions")
            self.targets = targets
            self.clean_metric = metric_values(self.tasks, clean_preds, targets)

    def direction(self, losses: Losses, x: torch.Tensor, preds: Preds | None = None):
        stacked = self.stack(losses).clamp_min(self.min_loss)  # (B, T)
        _check_started(self, self.weights, stacked)
        scale = (stacked.shape[1] * self.weights).to(stacked.dtype)  # 1.0 where uniform
        direction = input_gradient((scale * stacked.log()).sum(dim=1), x)
        if self.weights_from == "metric":
            if preds is None:
                raise ValueError("minmax weights_from=metric: direction() needs the predictions")
            progress = metric_degradation(self.tasks, preds, self.targets, self.clean_metric)
        else:
            progress = (stacked.detach() / self.clean).log()
        self.weights = self.weight_step(self.weights, progress.to(torch.float64))
        return direction

    def weight_step(self, weights: torch.Tensor, progress: torch.Tensor) -> torch.Tensor:
        """One proximal step of the inner minimization. Shape: (B, T), (B, T) -> (B, T)."""
        if math.isinf(self.gamma):
            return weights
        pull = self.gamma / self.beta
        uniform = 1.0 / weights.shape[1]
        return project_simplex((weights - progress / self.beta + pull * uniform) / (1 + pull))

    def score(self, losses: Losses, clean_losses: Losses) -> torch.Tensor:
        return least_change(self.stack(losses).detach(), self.stack(clean_losses), self.min_loss)

    def __repr__(self) -> str:
        return (
            f"MinMax(tasks={self.task_names}, beta={self.beta}, gamma={self.gamma}, "
            f"weights_from={self.weights_from!r})"
        )


def _check_started(objective: Objective, state: torch.Tensor | None, stacked: torch.Tensor):
    """Per-sample state must come from ``start`` on this very batch."""
    if state is None or state.shape[0] != stacked.shape[0]:
        raise RuntimeError(
            f"{type(objective).__name__}.direction on a batch of {stacked.shape[0]} without "
            "start() on it: the attack calls start(clean_losses) at every run"
        )
