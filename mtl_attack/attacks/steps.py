"""L-infinity step rules: how an iterate moves along an objective's direction.

A step rule implements ``init`` (its state for one run), ``update`` (the next iterate, already
projected) and ``project`` (onto the eps-ball around the clean image and into [0, 1]); ``finish``
picks what the run returns. ``carry`` is an optional dict of per-sample tensors (the losses and
predictions at the iterate) that travels with the returned point (``finish`` leaves the returned
point's carry in ``state["final_carry"]``), so that nobody has to run the model on it again;
``needs_final`` says whether ``finish`` needs the last iterate's score. The attack loop lives
in :class:`~mtl_attack.attacks.base.IterativeAttack`; FGSM is that loop with one step of size
eps (conf/attack/step/fgsm.yaml).

Every tensor is batched: per-sample quantities have shape ``[B]``; images ``(B, C, H, W)``.
eps and step sizes arrive in [0, 1] image units (pixel levels / 255).
"""

from __future__ import annotations

from typing import Any

import torch

State = dict[str, Any]
Carry = dict[str, dict[str, torch.Tensor]]  # e.g. {"losses": {task: [B]}, "preds": {...}}


def project(x: torch.Tensor, x_clean: torch.Tensor, eps: float) -> torch.Tensor:
    """Project onto ``||x - x_clean||_inf <= eps`` and clip to the valid range [0, 1]."""
    return torch.minimum(torch.maximum(x, x_clean - eps), x_clean + eps).clamp(0.0, 1.0)


def per_sample(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a ``[B]`` tensor against ``(B, C, H, W)``."""
    return values.view(-1, *([1] * (like.ndim - 1)))


class StepRule:
    """Base step rule: holds the budget, projects, and returns the last iterate."""

    name = "step"
    needs_final = False  # the last iterate is returned whatever its score

    def init(
        self,
        x_clean: torch.Tensor,
        x_start: torch.Tensor,
        eps: float,
        step_size: float,
        steps: int,
    ) -> State:
        return {"x_clean": x_clean, "eps": eps, "step_size": step_size, "steps": steps}

    def update(
        self,
        state: State,
        x: torch.Tensor,
        direction: torch.Tensor,
        score: torch.Tensor,
        k: int,
        carry: Carry | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError

    def project(self, state: State, x: torch.Tensor) -> torch.Tensor:
        return project(x, state["x_clean"], state["eps"])

    def finish(
        self, state: State, x: torch.Tensor, score: torch.Tensor, carry: Carry | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """What the run returns: ``(images, per-sample score)``; here the last iterate. The
        carry of the returned point goes to ``state["final_carry"]``."""
        state["final_carry"] = carry
        return x, score

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SignStep(StepRule):
    """PGD / I-FGSM (Kurakin et al. 2017; Madry et al. 2018, L-inf):
    ``x <- P(x + alpha * sign(direction))``. One step of size eps is FGSM (Goodfellow et al.
    2015): the same rule, labelled ``fgsm`` (conf/attack/step/fgsm.yaml).

    Args:
        name: the label results and logs carry (``pgd``, or ``fgsm`` for the one-step attack).
    """

    def __init__(self, name: str = "pgd"):
        if name not in ("pgd", "fgsm"):
            raise ValueError(f"SignStep name must be 'pgd' or 'fgsm', got {name!r}")
        self.name = name

    def update(self, state, x, direction, score, k, carry=None):
        return self.project(state, x + state["step_size"] * direction.sign())

    def __repr__(self) -> str:
        return f"SignStep(name={self.name!r})"


class MomentumSign(StepRule):
    """MIM (Dong et al. 2018, "Boosting Adversarial Attacks with Momentum"):
    ``g <- mu * g + direction / ||direction||_1`` per sample, ``x <- P(x + alpha * sign(g))``.

    Args:
        momentum: decay ``mu`` (1.0 in the paper).
    """

    name = "mim"

    def __init__(self, momentum: float = 1.0):
        self.momentum = float(momentum)

    def init(self, x_clean, x_start, eps, step_size, steps):
        return super().init(x_clean, x_start, eps, step_size, steps) | {
            "g": torch.zeros_like(x_clean)
        }

    def update(self, state, x, direction, score, k, carry=None):
        l1 = direction.abs().flatten(1).sum(dim=1).clamp_min(1e-12)  # (B,)
        state["g"] = self.momentum * state["g"] + direction / per_sample(l1, direction)
        return self.project(state, x + state["step_size"] * state["g"].sign())

    def __repr__(self) -> str:
        return f"MomentumSign(momentum={self.momentum})"
