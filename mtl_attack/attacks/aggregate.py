"""AGGREGATE: multi-task gradient aggregators applied to the input gradients, per sample.

The T per-task input gradients come from one forward pass (SignSum's batched backward), are
normalized (``loss``: ``g_t / L_t``, DGBA's terms, the default; ``l2``: ``g_t / ||g_t||``;
``none``), flattened to G (B, T, D) and combined per sample into one direction (B, D). The step
rule then looks at its sign. Aggregators (attacks_literature.md sections 2.3-2.6; formulas from
LibMTL, https://github.com/median-research-group/LibMTL):

- ``mgda`` (Desideri 2012; Sener & Koltun, NeurIPS 2018): ``d = G^T w*``,
  ``w* = argmin_{w in simplex} ||G^T w||_2^2``, solved exactly per sample.
- ``linf_mgda`` (derived for this project, section 2.5): ``w* = argmin_{w in simplex}
  ||G^T w||_1``, whose ``sign(G^T w*)`` maximizes the least first-order gain
  ``min_t <g_t, s>`` over the L-inf ball: the worst-case counterpart of DGBA.
- ``pcgrad`` (Yu et al., NeurIPS 2020): each ``g_i`` is projected off every ``g_j`` (per-sample
  random order, i included) it conflicts with (``<g_i, g_j> < 0``); ``d`` = their mean.
- ``dbmtl`` (Lin et al., "Dual-Balancing Multi-Task Learning", 2023): an EMA
  ``h_t <- beta h_t + (1 - beta) g_t`` of the (log-loss) gradients, rescaled to the largest
  norm: ``d = sum_t (max_s ||h_s|| / ||h_t||) h_t``.
- ``imtl`` (IMTL-G, Liu et al., ICLR 2021): the combination ``sum_t a_t g_t`` (``sum a = 1``)
  with equal projections on every unit gradient ``g_t / ||g_t||``.

Cost per step: one forward, one batched backward for T gradients (as SignSum), plus O(T^2 D)
per sample (``linf_mgda``: a few Newton steps of that cost). Score (fixed, for APGD): the least
relative loss change over tasks for the worst-case aggregators ``mgda`` and ``linf_mgda``, the
averaged relative loss change for the others.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from mtl_attack.attacks.objectives import (
    Losses,
    Objective,
    Preds,
    TaskGradients,
    least_change,
    relative_change,
)
from mtl_attack.attacks.simplex import linf_min_norm, min_norm
from mtl_attack.tasks import Task

AGGREGATORS = ("mgda", "linf_mgda", "pcgrad", "dbmtl", "imtl")
NORMALIZERS = ("loss", "l2", "none")
WORST_CASE = ("mgda", "linf_mgda")


class Aggregate(Objective):
    """Per-sample aggregation of the normalized per-task input gradients (module docstring).

    Args:
        aggregator: one of ``mgda | linf_mgda | pcgrad | dbmtl | imtl``.
        normalizer: ``loss`` (``g_t / L_t``) | ``l2`` | ``none``.
        momentum: DB-MTL's EMA weight beta (0.9 in LibMTL).
        seed: PCGrad's per-sample random task orders.
        linf_warm: Newton stages (one step each) of ``linf_mgda`` after the first step, which
            start from the previous step's weights; the first step runs the full solve.
        min_loss: losses are clamped here before dividing by them.
        batched: take the T gradients with one batched backward (else T backwards).
    """

    name = "aggregate"

    def __init__(
        self,
        tasks: Mapping[str, Task] | list[str],
        aggregator: str = "mgda",
        normalizer: str = "loss",
        momentum: float = 0.9,
        seed: int = 0,
        linf_warm: int = 2,
        min_loss: float = 1e-8,
        batched: bool = True,
    ):
        super().__init__(tasks)
        if aggregator not in AGGREGATORS:
            raise ValueError(f"attack aggregator must be one of {AGGREGATORS}, got {aggregator!r}")
        if normalizer not in NORMALIZERS:
            raise ValueError(f"attack normalizer must be one of {NORMALIZERS}, got {normalizer!r}")
        self.aggregator, self.normalizer = aggregator, normalizer
        self.variant = aggregator
        self.momentum, self.seed, self.linf_warm = float(momentum), int(seed), int(linf_warm)
        self.min_loss = float(min_loss)
        self.gradients = TaskGradients(self.task_names, batched)
        self.state: dict | None = None

    def start(self, clean_losses, clean_preds=None, targets=None) -> None:
        self.state = {"generator": torch.Generator().manual_seed(self.seed)}

    def direction(self, losses: Losses, x: torch.Tensor, preds: Preds | None = None):
        if self.state is None:
            raise RuntimeError("Aggregate.direction before start(): the attack starts each run")
        grads = self.gradients(losses, x)  # (T, B, C, H, W)
        flat = grads.flatten(2).transpose(0, 1)  # (B, T, D)
        flat = self.normalize(flat, self.stack(losses).detach()).contiguous()
        combined = getattr(self, f"_{self.aggregator}")(flat)  # (B, D)
        return combined.view_as(x)

    def normalize(self, grads: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Shape: (B, T, D), (B, T) -> (B, T, D)."""
        if self.normalizer == "loss":
            return grads / losses.clamp_min(self.min_loss).unsqueeze(2)
        if self.normalizer == "l2":
            return grads / grads.norm(dim=2, keepdim=True).clamp_min(1e-30)
        return grads

    def _mgda(self, grads: torch.Tensor) -> torch.Tensor:
        gram = torch.bmm(grads, grads.transpose(1, 2)).double()  # (B, T, T)
        return combine(min_norm(gram).to(grads.dtype), grads)

    def _linf_mgda(self, grads: torch.Tensor) -> torch.Tensor:
        previous = self.state.get("weights")
        if previous is None:
            weights = linf_min_norm(grads)
        else:
            weights = linf_min_norm(
                grads, previous, stages=self.linf_warm, newton_steps=1, first_mu=1e-2
            )
        self.state["weights"] = weights
        return combine(weights, grads)

    def _pcgrad(self, grads: torch.Tensor) -> torch.Tensor:
        batch, tasks, _ = grads.shape
        order = torch.rand(batch, tasks, generator=self.state["generator"]).argsort(dim=1)
        order = order.to(grads.device)
        rows = torch.arange(batch, device=grads.device)
        squared = (grads * grads).sum(dim=2).clamp_min(1e-30)  # (B, T)
        projected = grads.clone()
        for position in range(tasks):
            j = order[:, position]  # (B,): the task each sample projects off now
            other = grads[rows, j].unsqueeze(1)  # (B, 1, D)
            dots = (projected * other).sum(dim=2)  # (B, T)
            coef = torch.where(dots < 0, dots / squared[rows, j].unsqueeze(1), 0.0)
            projected = projected - coef.unsqueeze(2) * other
        return projected.mean(dim=1)

    def _dbmtl(self, grads: torch.Tensor) -> torch.Tensor:
        ema = self.state.get("ema", torch.zeros_like(grads))
        ema = self.momentum * ema + (1 - self.momentum) * grads
        self.state["ema"] = ema
        norms = ema.norm(dim=2)  # (B, T)
        scale = norms.amax(dim=1, keepdim=True) / norms.clamp_min(1e-30)
        return (scale.unsqueeze(2) * ema).sum(dim=1)

    def _imtl(self, grads: torch.Tensor) -> torch.Tensor:
        batch, tasks, _ = grads.shape
        if tasks == 1:
            return grads[:, 0]
        units = grads / grads.norm(dim=2, keepdim=True).clamp_min(1e-30)
        diffs = grads[:, :1] - grads[:, 1:]  # (B, T-1, D)
        unit_diffs = units[:, :1] - units[:, 1:]
        system = torch.bmm(diffs, unit_diffs.transpose(1, 2)).double()  # (B, T-1, T-1)
        rhs = torch.bmm(grads[:, :1], unit_diffs.transpose(1, 2)).double()  # (B, 1, T-1)
        rest, info = torch.linalg.solve_ex(system.transpose(1, 2), rhs.transpose(1, 2))
        rest = torch.where((info == 0).view(-1, 1, 1), rest, 1.0 / tasks).squeeze(2)
        alphas = torch.cat([1 - rest.sum(dim=1, keepdim=True), rest], dim=1).to(grads.dtype)
        return combine(alphas, grads)

    def score(self, losses: Losses, clean_losses: Losses) -> torch.Tensor:
        change = least_change if self.aggregator in WORST_CASE else relative_change
        return change(self.stack(losses).detach(), self.stack(clean_losses), self.min_loss)

    def __repr__(self) -> str:
        return (
            f"Aggregate(tasks={self.task_names}, aggregator={self.aggregator!r}, "
            f"normalizer={self.normalizer!r})"
        )


def combine(weights: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """``sum_t w_t g_t`` per sample. Shape: (B, T), (B, T, D) -> (B, D)."""
    return torch.bmm(weights.unsqueeze(1), grads).squeeze(1)
