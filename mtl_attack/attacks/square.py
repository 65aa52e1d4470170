"""Square Attack: score-based random search in the L-infinity ball, no gradients.

Andriushchenko, Croce, Flammarion & Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", ECCV 2020 (https://arxiv.org/abs/1912.00049); the
gradient-free member of AutoAttack. Here for multi-task dense outputs: the score of every
candidate is an objective's ``score(losses, clean_losses)`` (any objective of
:mod:`mtl_attack.attacks.objectives`), computed under ``torch.no_grad()`` from the model's
outputs only, so it also attacks models whose forward cannot be differentiated.

L-infinity scheme (attacks_literature.md section 7): start from vertical stripes (every image
column gets ``+eps`` or ``-eps`` per channel); at query i pick, per image, one square of side
``h = max(1, round(sqrt(p_i * H * W)))`` (at most H - 1) at a random position and set it, per
channel, to the clean value +-eps (one random sign per channel and image; a sign that would leave
the window as it is flips); keep the candidate where the score rises (strictly). ``p_i`` starts
at ``p_init`` and halves at queries 10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000 of 10,000,
rescaled to the budget. Every iterate is clipped to [0, 1].

Budget: ``queries`` score evaluations per image, the stripes included; each is one forward pass
of the image (``draws`` forward passes under EOT). Counted in ``stats.queries``.

Shape: images (B, C, H, W) in [0, 1]; targets ``{task: (B, ...)}``; result like images.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from mtl_attack.attacks.base import Attack, record_outcome
from mtl_attack.attacks.objectives import Objective
from mtl_attack.attacks.outcome import Outcome, better_of
from mtl_attack.attacks.steps import per_sample, project
from mtl_attack.tasks import Task

#: queries (out of 10,000) after which the square's area fraction p halves
HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


def square_fraction(p_init: float, query: int, queries: int) -> float:
    """The area fraction p at ``query`` of ``queries``: ``p_init`` halved once for every point
    of :data:`HALVINGS` (rescaled from 10,000 to ``queries``) already passed."""
    rescaled = int(query / queries * 10000)
    return p_init / 2 ** sum(rescaled > h for h in HALVINGS)


def square_side(p: float, height: int, width: int) -> int:
    """``max(1, round(sqrt(p * H * W)))``, at most ``H - 1`` (a square always fits)."""
    return max(1, min(int(round(math.sqrt(p * height * width))), max(height - 1, 1)))


class SquareAttack(Attack):
    """Square Attack, L-infinity, untargeted (module docstring).

    Args:
        objective: whose per-sample ``score`` the search raises (e.g. ``MinMax``'s: the least
            relative loss change over tasks).
        tasks: every task of the model.
        eps: budget in pixel levels.
        queries: score evaluations per image (>= 1; the stripe start is the first).
        p_init: the square's initial area fraction (0.8 for L-inf in AutoAttack).
        seed: seeds the stripes, positions and signs; the same seed gives the same result.
    """

    def __init__(
        self,
        objective: Objective,
        tasks: Mapping[str, Task],
        eps: float,
        queries: int = 1000,
        p_init: float = 0.8,
        seed: int = 0,
    ):
        super().__init__(tasks, eps)
        if queries < 1 or not 0 < p_init <= 1:
            raise ValueError(
                f"square needs queries >= 1 and 0 < p_init <= 1, got {queries} and {p_init}"
            )
        self.objective, self.queries = objective, int(queries)
        self.p_init, self.seed = float(p_init), int(seed)

    def perturb(self, model, images, targets, clean_losses, outputs) -> Outcome:
        gen = torch.Generator().manual_seed(self.seed)
        with torch.no_grad():
            clean_preds, fresh = self.forward(model, images, targets)
            clean_losses = fresh if clean_losses is None else clean_losses
            self.objective.start(clean_losses, clean_preds, targets)
            best = self.score(model, self.stripes(images, gen), targets, clean_losses)
            for query in range(1, self.queries):
                p = square_fraction(self.p_init, query, self.queries)
                candidate = self.square_step(images, best.images, p, gen)
                best = better_of(best, self.score(model, candidate, targets, clean_losses))
        self.stats.queries += self.queries * images.shape[0]
        self.record(images, best)
        return best

    def score(self, model, x, targets, clean_losses) -> Outcome:
        preds, losses = self.forward(model, x, targets)
        return Outcome(x, self.objective.score(losses, clean_losses), losses, preds, clean_losses)

    def stripes(self, images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """The start: each column of each channel at clean +-eps. Shape (B, C, 1, W) signs."""
        b, c, _, w = images.shape
        signs = torch.randint(0, 2, (b, c, 1, w), generator=gen).to(images) * 2 - 1
        return project(images + self.eps * signs, images, self.eps)

    def square_step(self, images, current, p: float, gen: torch.Generator) -> torch.Tensor:
        """One candidate per image: a random square of ``current`` set to clean +-eps."""
        b, c, h, w = images.shape
        side = square_side(p, h, w)
        top = torch.randint(0, h - side + 1, (b,), generator=gen).to(images.device)
        left = torch.randint(0, w - side + 1, (b,), generator=gen).to(images.device)
        rows = torch.arange(h, device=images.device).view(1, h, 1)
        cols = torch.arange(w, device=images.device).view(1, 1, w)
        inside = (rows >= top.view(b, 1, 1)) & (rows < (top + side).view(b, 1, 1))
        inside = inside & (cols >= left.view(b, 1, 1)) & (cols < (left + side).view(b, 1, 1))
        inside = inside.unsqueeze(1)  # (B, 1, H, W)
        signs = torch.randint(0, 2, (b, c, 1, 1), generator=gen).to(images) * 2 - 1
        candidate = self.set_window(images, current, inside, signs)
        same = (candidate == current).flatten(1).all(dim=1)  # the window did not change
        flipped = self.set_window(images, current, inside, -signs)
        return torch.where(per_sample(same, images), flipped, candidate)

    def set_window(self, images, current, inside, signs) -> torch.Tensor:
        return torch.where(inside, project(images + self.eps * signs, images, self.eps), current)

    def record(self, images: torch.Tensor, outcome: Outcome) -> None:
        record_outcome(self.stats, self.objective, self.eps, images, outcome)

    def __repr__(self) -> str:
        return (
            f"SquareAttack({self.objective!r}, eps={self.eps_levels}, queries={self.queries}, "
            f"p_init={self.p_init})"
        )
