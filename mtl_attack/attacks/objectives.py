"""Multi-task attack objectives: which direction to ascend and which per-sample score to track.

Every objective receives the per-sample, per-task losses ``losses[t]`` (shape ``[B]``, still
attached to the autograd graph of the input ``x``) and returns

- ``direction(losses, x, preds)``: the ascent direction w.r.t. the input, shape
  ``(B, C, H, W)``; the step rule only looks at its sign (PGD, APGD) or its L1-normalized value
  (MIM). ``preds`` (the model's outputs at ``x``) serve objectives that read the predictions;
- ``score(losses, clean_losses)``: the per-sample scalar the attack maximizes, shape ``[B]``
  (APGD tracks it to keep each sample's best point; the sanity checks compare it with the clean
  input's score). It is a FIXED function of the losses, never a weighted loss whose weights
  move during the run, so that APGD's "best point" and "score increased" compare like with like.

With an attack loss (``attack.loss``, :mod:`~mtl_attack.attacks.losses`) ``direction`` and
``start`` receive the per-task losses the attack ascends (e.g. SegPGD's reweighted
cross-entropy, which moves with the step), while ``score`` always receives the tasks' own losses:
a fixed function of the image (:class:`~mtl_attack.attacks.base.IterativeAttack` says why).

``start(clean_losses, clean_preds, targets)`` is called at the start of every run (each batch,
each restart) before the first ``direction``: stateful objectives (min-max weights, cyclic step
counters, EMA buffers) reset their per-sample state there, so nothing leaks across batches,
restarts or calls. ``clean_preds`` is given when ``needs_predictions`` is true.

Threat model and formulas: method.md section 3, after Zhang et al., "Attacking All Tasks at Once
Using Adversarial Examples in Multi-Task Learning" (arXiv 2305.12066).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import torch

from mtl_attack.tasks import Task

Losses = Mapping[str, torch.Tensor]
Preds = Mapping[str, torch.Tensor]


def input_gradient(objective: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Gradient of a per-sample objective ``[B]`` w.r.t. ``x``. Samples are independent (the
    model is in eval mode), so the gradient of the batch sum is each sample's own gradient."""
    (grad,) = torch.autograd.grad(objective.sum(), x)
    return grad


class Objective(ABC):
    """Base: holds the task names the objective reads (``tasks``, in model order).

    ``needs_predictions``: whether ``start`` and ``direction`` need the model's predictions
    (the attack then passes the clean predictions, running a clean forward pass if needed).
    ``variant``: what tells this objective apart from others of its name in result labels
    (the aggregator of ``aggregate``; None for most objectives).
    """

    name: str = "objective"
    needs_predictions: bool = False
    variant: str | None = None

    def __init__(self, tasks: Mapping[str, Task] | list[str]):
        self.task_names = list(tasks)
        if not self.task_names:
            raise ValueError("an attack objective needs at least one task")

    def start(
        self,
        clean_losses: Losses,
        clean_preds: Preds | None = None,
        targets: Preds | None = None,
    ) -> None:
        """Reset per-sample state for a new run on this batch (stateless objectives: none)."""
        return None

    @abstractmethod
    def direction(
        self, losses: Losses, x: torch.Tensor, preds: Preds | None = None
    ) -> torch.Tensor: ...

    @abstractmethod
    def score(self, losses: Losses, clean_losses: Losses) -> torch.Tensor: ...

    def stack(self, losses: Losses) -> torch.Tensor:
        """``(B, T)`` losses of this objective's tasks."""
        return torch.stack([losses[t] for t in self.task_names], dim=1)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(tasks={self.task_names})"


class SingleTask(Objective):
    """SINGLE(t): ascend ``L[:, t]`` only; the score is that loss."""

    name = "single"

    def __init__(self, tasks: Mapping[str, Task] | list[str], task: str):
        names = list(tasks)
        if task not in names:
            raise ValueError(
                f"attack.task={task!r} is not a task of this dataset; use one of {names} or 'all'"
            )
        super().__init__([task])
        self.task = task

    def direction(self, losses: Losses, x: torch.Tensor, preds: Preds | None = None):
        return input_gradient(losses[self.task], x)

    def score(self, losses: Losses, clean_losses: Losses) -> torch.Tensor:
        return losses[self.task].detach()


class TotalLoss(Objective):
    """TOTAL: ascend ``sum_t w_t L[:, t]`` (weights default to 1); the score is that sum."""

    name = "total"

    def __init__(
        self, tasks: Mapping[str, Task] | list[str], weights: Mapping[str, float] | None = None
    ):
        super().__init__(tasks)
        weights = dict(weights or {})
        unknown = set(weights) - set(self.task_names)
        if unknown:
            raise ValueError(
                f"attack.weights has unknown tasks {sorted(unknown)}; tasks are {self.task_names}"
            )
        self.weights = [float(weights.get(t, 1.0)) for t in self.task_names]

    def weighted(self, losses: Losses) -> torch.Tensor:
        return sum(w * losses[t] for w, t in zip(self.weights, self.task_names))

    def direction(self, losses: Losses, x: torch.Tensor, preds: Preds | None = None):
        return input_gradient(self.weighted(losses), x)

    def score(self, losses: Losses, clean_losses: Losses) -> torch.Tensor:
        return self.weighted(losses).detach()


def task_changes(losses: torch.Tensor, clean: torch.Tensor, min_loss: float) -> torch.Tensor:
    """Relative loss change of every task ``(L_t - Lc_t) / Lc_t``. Shape (B, T) -> (B, T)."""
    return (losses - clean) / clean.clamp_min(min_loss)


def relative_change(losses: torch.Tensor, clean: torch.Tensor, min_loss: float) -> torch.Tensor:
    """Averaged relative loss change ``(1/T) sum_t (L_t - Lc_t) / Lc_t``. Shape (B, T) -> (B,)."""
    return task_changes(losses, clean, min_loss).mean(dim=1)


def least_change(losses: torch.Tensor, clean: torch.Tensor, min_loss: float) -> torch.Tensor:
    """The least relative loss change over tasks ``min_t (L_t - Lc_t) / Lc_t`` (the worst-case
    objectives' score: did every task's loss rise?). Shape (B, T) -> (B,)."""
    return task_changes(losses, clean, min_loss).amin(dim=1)


class DynamicGradientBalancing(Objective):
    """DGBA: direction ``sum_t grad L_t / L_t`` per sample, recomputed at every iterate.

    It is the gradient of ``sum_t log L_t``, so it costs ONE backward pass, like TOTAL. Losses
    are clamped to ``min_loss`` so the direction stays finite when a task's loss reaches zero.
    The score is the averaged relative loss change against the clean input (the quantity DGBA
    maximizes, method.md section 3). Multiplying one task's loss by a constant leaves the
    direction unchanged: that is the balancing property.
    """

    name = "dgba"

    def __init__(self, tasks: Mapping[str, Task] | list[str], min_loss: float = 1e-8):
        super().__init__(tasks)
        self.min_loss = float(min_loss)

    def direction(self, losses: Losses, x: torch.Tensor, preds: Preds | None = None):
        log_sum = self.stack(losses).clamp_min(self.min_loss).log().sum(dim=1)  # (B,)
        return input_gradient(log_sum, x)

    def score(self, losses: Losses, clean_losses: Losses) -> torch.Tensor:
        return relative_change(
            self.stack(losses).detach(), self.stack(clean_losses), self.min_loss
        )


class TaskGradients:
    """The T per-task input gradients from one forward pass: one batched backward
    (``is_grads_batched``, i.e. vmap over the graph) when every op supports it, otherwise T
    backward passes that reuse the graph (the fallback is kept for good after one failure)."""

    def __init__(self, task_names: list[str], batched: bool = True):
        self.task_names = list(task_names)
        self.batched = batched

    def __call__(self, losses: Losses, x: torch.Tensor) -> torch.Tensor:
        """Shape: ``{task: [B]}``, (B, C, H, W) -> (T, B, C, H, W)."""
        stacked = torch.stack([losses[t].sum() for t in self.task_names])  # (T,) batch sums
        eye = torch.eye(len(self.task_names), dtype=stacked.dtype, device=stacked.device)
        if self.batched:
            try:
                (grads,) = torch.autograd.grad(
                    stacked, x, eye, retain_graph=True, is_grads_batched=True
                )
                return grads
            except RuntimeError:  # an op without a batching rule: fall back for good
                self.batched = False
        grads = [
            torch.autograd.grad(stacked[i], x, retain_graph=i + 1 < len(self.task_names))[0]
            for i in range(len(self.task_names))
        ]
        return torch.stack(grads)


class SignSum(Objective):
    """SIGNSUM (baseline of the reference code): the per-coordinate vote ``sum_t sign(grad L_t)``.

    The T input gradients come from one forward pass: one batched backward
    (``is_grads_batched``, i.e. vmap over the graph) when every op supports it, otherwise T
    backward passes that reuse the graph. The score is DGBA's averaged relative loss change, so
    that no task dominates it by scale (the vote itself is scale-free too).
    """

    name = "signsum"

    def __init__(
        self, tasks: Mapping[str, Task] | list[str], min_loss: float = 1e-8, batched: bool = True
    ):
        super().__init__(tasks)
        self.min_loss = float(min_loss)
        self.gradients = TaskGradients(self.task_names, batched)

    def task_gradients(self, losses: Losses, x: torch.Tensor) -> torch.Tensor:
        """Per-task input gradients. Shape: (T, B, C, H, W)."""
        return self.gradients(losses, x)

    def direction(self, losses: Losses, x: torch.Tensor, preds: Preds | None = None):
        return self.task_gradients(losses, x).sign().sum(dim=0)

    def score(self, losses: Losses, clean_losses: Losses) -> torch.Tensor:
        return relative_change(
            self.stack(losses).detach(), self.stack(clean_losses), self.min_loss
        )
