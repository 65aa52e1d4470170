"""The standard protocol (``attack=standard``): one fixed evaluation, AutoAttack for multi-task
dense models.

Per batch: (1) two identical forward passes; if they differ the model is randomized and every
attack averages its losses over ``eot_draws`` forward passes (EOT); (2) every white-box member
(APGD with the protocol's objectives) runs once, sharing the clean pass, and per sample the
member result with the highest criterion is kept, as :class:`~mtl_attack.attacks.Ensemble`
does (``mean``, ``min``, ``per_task`` of the relative loss changes); (3) Square
(:class:`~mtl_attack.attacks.square.SquareAttack`, no gradients) attacks the ``square_share`` of
the batch that the members left least degraded (lowest ``min`` criterion), from its own start,
and competes in every criterion like one more member; where it beats every white-box member on
the worst task, the gradients may be masked (``square_wins``).

Views: ``mean``, ``min``, ``per_task`` (the per-sample worst cases) and ``member/<label>``
(each member alone, the same run's images), so that the verdict
(:mod:`mtl_attack.evaluation.verdict`) can also take, per dataset-level number, the strongest of
them. The members, budgets and Square's settings are not arguments a user tunes: they come from
``conf/attack/standard.yaml`` (``version``), built by
:func:`~mtl_attack.attacks.build_standard`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch

from mtl_attack.attacks.base import Attack, AttackStats
from mtl_attack.attacks.ensemble import CRITERIA, Ensemble, keep_best, merge_tasks
from mtl_attack.attacks.outcome import Outcome, frozen
from mtl_attack.attacks.square import SquareAttack

#: member counters summed into the criteria views (per batch deltas)
MEMBER_COUNTERS = ("zero_gradient", "nonfinite_gradient")
SQUARE = "square"


def member_view(name: str) -> str:
    return f"member/{name}"


class Standard(Attack):
    """White-box members + Square on the least-degraded samples, per-sample worst case.

    Args:
        members: ``{label: attack}`` (the white-box members, same tasks and eps).
        square: the gradient-free attack (same eps).
        square_share: the share of each batch Square attacks (least degraded first), in (0, 1].
        eot_draws: forward passes averaged per loss when the model is randomized.
    """

    def __init__(
        self,
        members: Mapping[str, Attack],
        square: SquareAttack,
        square_share: float,
        eot_draws: int,
    ):
        self.ensemble = Ensemble(members, CRITERIA, "min")
        super().__init__(self.ensemble.tasks, self.ensemble.eps_levels)
        if square.eps != self.eps or not 0 < square_share <= 1 or eot_draws < 1:
            raise ValueError(
                "standard protocol: square must share the members' eps, 0 < square_share <= 1 "
                f"and eot_draws >= 1 (got {square.eps_levels}, {square_share}, {eot_draws})"
            )
        self.members, self.square = self.ensemble.members, square
        self.square_share, self.eot_draws = float(square_share), int(eot_draws)
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = AttackStats()
        self.criteria_stats = {c: AttackStats() for c in CRITERIA}
        names = [*self.members, SQUARE]
        tallies = ["mean", "min", *(f"per_task/{t}" for t in self.tasks)]
        self.wins = {view: dict.fromkeys(names, 0) for view in tallies}
        for member in self.members.values():
            member.reset_stats()
        self.square.reset_stats()

    def view_stats(self) -> dict[str, AttackStats]:
        members = {member_view(n): m.stats for n, m in self.members.items()}
        return self.criteria_stats | members

    def view_info(self, view: str) -> dict:
        if view == "per_task":
            return {"wins": {t: self.wins[f"per_task/{t}"] for t in self.tasks}}
        return {"wins": self.wins[view]} if view in self.wins else {}

    def perturb(self, model, images, targets, clean_losses, outputs) -> Outcome:
        return self.select(model, images, targets, clean_losses)["min"]

    def run_views(self, model, images, targets, clean_losses=None) -> dict[str, Outcome]:
        with frozen(model):
            return self.select(model, images.detach(), targets, clean_losses)

    def randomized(self, model, images: torch.Tensor) -> bool:
        """Whether two identical forward passes differ (beyond float noise)."""
        with torch.no_grad():
            first, second = model(images), model(images)
        return any(not torch.allclose(first[t], second[t], rtol=1e-5, atol=1e-6) for t in first)

    def set_draws(self, draws: int) -> None:
        for attack in [*self.members.values(), self.square]:
            attack.draws = draws

    def select(self, model, images, targets, clean_losses) -> dict[str, Outcome]:
        """Members, then Square on the least-degraded samples; per view the best per sample."""
        randomized = self.randomized(model, images)
        self.set_draws(self.eot_draws if randomized else 1)
        before = {n: m.stats.as_dict() for n, m in self.members.items()}
        best: dict[str, tuple] = {}
        outs = {}
        for index, (name, member) in enumerate(self.members.items()):
            out = member.perturb(model, images, targets, clean_losses, outputs=True)
            clean_losses, outs[name] = out.clean_losses, out
            for view, value, outcome in self.ensemble.candidates(out):
                best[view] = keep_best(best.get(view), value, outcome, index)
        wins = self.square_stage(model, images, targets, best)
        views = {"mean": best["mean"][1], "min": best["min"][1]}
        views["per_task"] = merge_tasks({t: best[f"per_task/{t}"] for t in self.tasks})
        self.count_wins(best)
        counts = {
            k: sum(m.stats.as_dict()[k] - before[n][k] for n, m in self.members.items())
            for k in MEMBER_COUNTERS
        }
        counts |= {"randomized": int(randomized), "square_wins": wins}
        for view in CRITERIA:
            self.record(self.criteria_stats[view], images, views[view], counts)
        self.stats = self.criteria_stats["min"]
        return views | {member_view(n): out for n, out in outs.items()}

    def square_stage(self, model, images, targets, best: dict[str, tuple]) -> int:
        """Square on the ``square_share`` least-degraded samples (by the ``min`` criterion);
        its results compete in every view. Returns the samples where it beat every member."""
        white = best["min"][0]  # (B,) the members' best least relative loss change
        count = max(1, math.ceil(self.square_share * images.shape[0]))
        chosen = torch.argsort(white, stable=True)[:count]
        base = best["min"][1]
        sub = self.square.perturb(
            model,
            images[chosen],
            {t: v[chosen] for t, v in targets.items()},
            {t: v[chosen] for t, v in base.clean_losses.items()},
            outputs=True,
        )
        full = scatter(base, chosen, sub)
        mask = torch.zeros_like(white, dtype=torch.bool)
        mask[chosen] = True
        index = len(self.members)
        for view, value, outcome in self.ensemble.candidates(full):
            value = torch.where(mask, value, torch.full_like(value, -math.inf))
            if view == "min":
                wins = int(((value > white) & mask).sum())
            best[view] = keep_best(best[view], value, outcome, index)
        return wins

    def count_wins(self, best: dict[str, tuple]) -> None:
        names = [*self.members, SQUARE]
        for view, (_, _, winner) in best.items():
            counts = torch.bincount(winner.cpu(), minlength=len(names)).tolist()
            for name, n in zip(names, counts):
                self.wins[view][name] += n

    def record(self, stats: AttackStats, images, outcome: Outcome, counts: dict) -> None:
        """The view's counters; ``counts``: the batch's member and protocol counters."""
        self.ensemble.record(stats, images, outcome, counts["zero_gradient"])
        stats.nonfinite_gradient += counts["nonfinite_gradient"]
        stats.randomized += counts["randomized"]
        stats.square_wins += counts["square_wins"]
        stats.queries = self.square.stats.queries
        stats.square_samples = self.square.stats.samples

    def __repr__(self) -> str:
        return (
            f"Standard(members={list(self.members)}, square={self.square!r}, "
            f"square_share={self.square_share}, eot_draws={self.eot_draws})"
        )


def scatter(base: Outcome, chosen: torch.Tensor, sub: Outcome) -> Outcome:
    """``base`` with the samples ``chosen`` replaced by ``sub``'s (images, losses, preds)."""

    def put(full: torch.Tensor, part: torch.Tensor) -> torch.Tensor:
        out = full.clone()
        out[chosen] = part
        return out

    return Outcome(
        put(base.images, sub.images),
        None,
        {t: put(v, sub.losses[t]) for t, v in base.losses.items()},
        {t: put(v, sub.preds[t]) for t, v in base.preds.items()},
        base.clean_losses,
    )
