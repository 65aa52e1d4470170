"""APGD: Auto-PGD step rule with per-sample step size, momentum and checkpoints.

Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks", ICML 2020 (https://arxiv.org/abs/2003.01690), L-inf, as specified in
method.md section 4; fully vectorized over the batch (no loop over samples).

Per sample: the step size eta starts at 2 * eps. The first step has no momentum; later
``z = P(x_k + eta * sign(direction))``,
``x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))`` with ``a = 0.75``. At the
checkpoints ``w_j`` (:func:`checkpoints`) eta is halved for a sample when (1) its score
increased in fewer than ``rho`` of the steps since the last checkpoint, or (2) eta was not
halved at the last checkpoint and the best score has not improved since; a halved sample
restarts from its best point (with that point's direction, and no momentum). The best point is
kept with a strict increase, and the run returns each sample's best point.
"""

from __future__ import annotations

import math

import torch

from mtl_attack.attacks.steps import Carry, StepRule, per_sample


def checkpoints(steps: int, p1: float = 0.22, decay: float = 0.03, floor: float = 0.06):
    """Iterations ``w_j = ceil(p_j * steps)`` with ``p_0 = 0``, ``p_1 = 0.22`` and
    ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``, for ``p_j <= 1``; sorted, unique.

    The 1e-9 guard keeps float noise (0.41 * 100 = 41.000000000000007) from rounding up.
    """
    ps = [0.0, p1]
    while ps[-1] + max(ps[-1] - ps[-2] - decay, floor) <= 1.0 + 1e-12:
        ps.append(ps[-1] + max(ps[-1] - ps[-2] - decay, floor))
    return sorted({math.ceil(p * steps - 1e-9) for p in ps})


def pick_carry(mask: torch.Tensor, new: Carry | None, old: Carry | None) -> Carry | None:
    """Per sample, the new carry where ``mask`` (shape [B]) else the old one."""
    if new is None or old is None:
        return None
    return {
        group: {k: torch.where(per_sample(mask, v), v, old[group][k]) for k, v in values.items()}
        for group, values in new.items()
    }


class AutoPGD(StepRule):
    """APGD step rule. Args: ``alpha`` (momentum weight a, 0.75), ``rho`` (0.75), and the
    step size factor ``initial_step`` (eta_0 = initial_step * eps, 2.0). The loop's step size
    argument is ignored: APGD sets its own."""

    name = "apgd"
    needs_final = True  # the last iterate competes for the best point

    def __init__(self, alpha: float = 0.75, rho: float = 0.75, initial_step: float = 2.0):
        self.alpha, self.rho, self.initial_step = float(alpha), float(rho), float(initial_step)

    def init(self, x_clean, x_start, eps, step_size, steps):
        batch = x_clean.shape[0]
        return super().init(x_clean, x_start, eps, step_size, steps) | {
            "eta": torch.full((batch,), self.initial_step * eps, device=x_clean.device),
            "checkpoints": set(checkpoints(steps)[1:]),
            "last_checkpoint": 0,
            "halved_last": torch.zeros(batch, dtype=torch.bool, device=x_clean.device),
            "increases": torch.zeros(batch, device=x_clean.device),
        }

    def track(self, state, x, direction, score, carry=None) -> None:
        """Keep each sample's best point (strict increase, with its carry) and count score
        increases."""
        if "best_score" not in state:
            state.update(best_x=x.clone(), best_dir=direction.clone(), best_score=score.clone())
            state.update(prev_score=score.clone(), best_at_checkpoint=score.clone())
            state["best_carry"] = carry
            return
        better = score > state["best_score"]
        mask = per_sample(better, x)
        state["best_x"] = torch.where(mask, x, state["best_x"])
        state["best_dir"] = torch.where(mask, direction, state["best_dir"])
        state["best_score"] = torch.where(better, score, state["best_score"])
        state["best_carry"] = pick_carry(better, carry, state["best_carry"])
        state["increases"] += (score > state["prev_score"]).float()
        state["prev_score"] = score.clone()

    def checkpoint(self, state, k, x, direction):
        """At a checkpoint: halve eta where a condition holds, and restart those samples
        from their best point. Returns the (possibly restarted) iterate and direction."""
        span = k - state["last_checkpoint"]
        oscillating = state["increases"] < self.rho * span
        stalled = ~state["halved_last"] & (state["best_score"] <= state["best_at_checkpoint"])
        halve = oscillating | stalled
        state["eta"] = torch.where(halve, state["eta"] / 2, state["eta"])
        mask = per_sample(halve, x)
        x = torch.where(mask, state["best_x"], x)
        direction = torch.where(mask, state["best_dir"], direction)
        state["prev_x"] = torch.where(mask, state["best_x"], state["prev_x"])
        state.update(halved_last=halve, best_at_checkpoint=state["best_score"].clone())
        state.update(increases=torch.zeros_like(state["increases"]), last_checkpoint=k)
        return x, direction

    def update(self, state, x, direction, score, k, carry=None):
        self.track(state, x, direction, score, carry)
        if k == 0:
            state["prev_x"] = x
            return self.project(state, x + per_sample(state["eta"], x) * direction.sign())
        if k in state["checkpoints"]:
            x, direction = self.checkpoint(state, k, x, direction)
        z = self.project(state, x + per_sample(state["eta"], x) * direction.sign())
        a = self.alpha
        x_next = self.project(state, x + a * (z - x) + (1 - a) * (x - state["prev_x"]))
        state["prev_x"] = x
        return x_next

    def finish(self, state, x, score, carry=None):
        """Score the last iterate too, then return each sample's best point (its carry goes to
        ``state["final_carry"]``)."""
        better = score > state["best_score"]
        best_x = torch.where(per_sample(better, x), x, state["best_x"])
        state["final_carry"] = pick_carry(better, carry, state["best_carry"])
        return best_x, torch.where(better, score, state["best_score"])

    def __repr__(self) -> str:
        return f"AutoPGD(alpha={self.alpha}, rho={self.rho}, initial_step={self.initial_step})"
