"""What an attack returns on one batch, its running counters, and the bookkeeping around
running the model.

:class:`Outcome` carries the adversarial images with the losses and predictions of the forward
pass that scored them, so an evaluation never runs the model on them again; :func:`frozen` is
the model state an attack runs in; :func:`better_of` / :func:`pick` select per sample.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, fields

import torch
from torch import nn

from mtl_attack.attacks.steps import per_sample

Tensors = Mapping[str, torch.Tensor]


@dataclass
class Outcome:
    """An attack's result on one batch.

    ``images`` (B, C, H, W), detached; ``score`` ``[B]`` (the objective's score at ``images``;
    None when only the images were asked for); ``losses`` ``{task: [B]}`` and ``preds``
    ``{task: prediction}`` at ``images`` (empty when only the images were asked for);
    ``clean_losses`` ``{task: [B]}`` at the clean images. ``task_images`` is set instead of
    ``images`` when each task's result comes from its own image (the ensemble's ``per_task``).
    """

    images: torch.Tensor | None
    score: torch.Tensor | None
    losses: dict[str, torch.Tensor] = field(default_factory=dict)
    preds: dict[str, torch.Tensor] = field(default_factory=dict)
    clean_losses: dict[str, torch.Tensor] = field(default_factory=dict)
    task_images: dict[str, torch.Tensor] | None = None


@dataclass
class AttackStats:
    """Running sanity counters over every batch an attack saw (auto-attack ``checks.py``)."""

    samples: int = 0
    zero_gradient: int = 0  # samples whose first direction was exactly zero
    not_raised: int = 0  # scored samples whose score at the result is not above the clean score
    outside_budget: int = 0  # samples with ||adv - x||_inf > eps or a pixel outside [0, 1]
    scored: int = 0  # samples whose result was scored (all of them, unless images-only PGD/MIM)
    clean_score: float = 0.0  # sum over scored samples
    adv_score: float = 0.0  # sum over scored samples
    nonfinite_gradient: int = 0  # samples with a NaN or infinite direction at some step
    falling: int = 0  # scored samples whose last iterate scores below their start point
    queries: int = 0  # gradient-free score evaluations (Square: one forward per image each)
    square_samples: int = 0  # samples the gradient-free stage of attack=standard attacked
    square_wins: int = 0  # ... on which it beat every white-box member (gradient masking?)
    randomized: int = 0  # batches whose outputs changed between two identical forwards

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """Eval mode, parameters without ``requires_grad``, gradients on; everything restored."""
    was_training = model.training
    flags = [p.requires_grad for p in model.parameters()]
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)  # no parameter gradients: cheaper, and .grad stays as is
    try:
        with torch.enable_grad():
            yield
    finally:
        for p, flag in zip(model.parameters(), flags):
            p.requires_grad_(flag)
        model.train(was_training)


def detached(tensors: Tensors) -> dict[str, torch.Tensor]:
    return {k: v.detach() for k, v in tensors.items()}


def better_of(a: Outcome, b: Outcome) -> Outcome:
    """Per sample, the outcome with the higher score (``a`` on ties)."""
    better = b.score > a.score
    return Outcome(
        torch.where(per_sample(better, a.images), b.images, a.images),
        torch.where(better, b.score, a.score),
        pick(better, b.losses, a.losses),
        pick(better, b.preds, a.preds),
        a.clean_losses,
    )


def pick(mask: torch.Tensor, yes: Tensors, no: Tensors) -> dict[str, torch.Tensor]:
    """Per sample, ``yes[t]`` where ``mask`` else ``no[t]``. Shape: mask [B]."""
    return {t: torch.where(per_sample(mask, no[t]), yes[t], no[t]) for t in no}
