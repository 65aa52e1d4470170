"""Attacks made of attacks: the worst-case ensemble and the task trade-off frontier.

:class:`Ensemble` is a worst-case evaluation in the spirit of AutoAttack (Croce & Hein, ICML
2020) and SEA (Croce, Singh & Hein, ECCV 2024, single-task segmentation): it runs a list of
member attacks on the same batch, at the same budget, and keeps per sample the member result that
maximizes a criterion declared in advance, computed from the per-task relative loss changes
``c_t = (L_t - Lc_t) / Lc_t`` at each member's result:

- ``mean``: ``mean_t c_t`` (average-case damage);
- ``min``: ``min_t c_t`` (the least-damaged task: did one image hurt every task?);
- ``per_task``: each task ``t`` keeps its own best member by ``c_t``: a per-task robustness
  lower bound whose tasks are evaluated on DIFFERENT images (one per task).

Members run once and serve every criterion; they share the clean pass (the first member's clean
losses go to the others). How often each member won is counted per criterion (``wins``).

:class:`Frontier` runs TOTAL with static weights on a grid of the simplex (Ghamizi et al.'s
GRID_SEARCH, made enumerable): each point's per-task degradation shows what weighting alone can
reach. ``scale="clean"`` weighs the relative losses ``w_t L_t / Lc_t`` (vertices = SINGLE,
centre = RELATIVE); ``scale="none"`` the raw losses ``w_t L_t``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from mtl_attack.attacks.base import Attack, AttackStats, IterativeAttack
from mtl_attack.attacks.losses import attack_loss
from mtl_attack.attacks.objectives import TotalLoss, task_changes
from mtl_attack.attacks.outcome import Outcome, frozen, pick
from mtl_attack.attacks.simplex import simplex_grid
from mtl_attack.attacks.steps import StepRule, per_sample
from mtl_attack.attacks.weighting import RelativeLoss

CRITERIA = ("mean", "min", "per_task")


class Ensemble(Attack):
    """Per-sample worst case over member attacks (module docstring).

    Args:
        members: ``{name: attack}``, all on the same tasks and eps; earlier members win ties.
        criteria: the views one run produces (``mean``, ``min``, ``per_task``).
        criterion: the view ``__call__`` / ``run`` return (not ``per_task``: no single image).
        min_loss: clean losses are clamped here in the relative changes.
    """

    def __init__(
        self,
        members: Mapping[str, Attack],
        criteria: Iterable[str] = CRITERIA,
        criterion: str = "mean",
        min_loss: float = 1e-8,
    ):
        members = dict(members)
        if not members:
            raise ValueError("attack=ensemble needs at least one member attack")
        first = next(iter(members.values()))
        if any(m.eps != first.eps or list(m.tasks) != list(first.tasks) for m in members.values()):
            raise ValueError("ensemble members must share the tasks and eps")
        self.criteria = tuple(criteria)
        unknown = set(self.criteria) - set(CRITERIA)
        if (
            unknown
            or not self.criteria
            or criterion not in self.criteria
            or criterion == "per_task"
        ):
            raise ValueError(
                f"ensemble criteria must come from {CRITERIA} and criterion from mean|min, got "
                f"{list(self.criteria)} and {criterion!r}"
            )
        super().__init__(first.tasks, first.eps_levels)
        self.members, self.criterion, self.min_loss = members, criterion, float(min_loss)
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats = AttackStats()
        self.views_stats = {c: AttackStats() for c in self.criteria}
        tallies = [c for c in self.criteria if c != "per_task"]
        tallies += [f"per_task/{t}" for t in self.tasks] if "per_task" in self.criteria else []
        self.wins = {view: dict.fromkeys(self.members, 0) for view in tallies}
        for member in self.members.values():
            member.reset_stats()

    def view_stats(self) -> dict[str, AttackStats]:
        return self.views_stats

    def view_info(self, view: str) -> dict:
        """``{"wins": {member: samples won}}`` (``per_task``: one tally per task)."""
        if view == "per_task":
            return {"wins": {t: self.wins.get(f"per_task/{t}", {}) for t in self.tasks}}
        return {"wins": self.wins.get(view, {})}

    def perturb(self, model, images, targets, clean_losses, outputs) -> Outcome:
        return self.select(model, images, targets, clean_losses)[self.criterion]

    def run_views(self, model, images, targets, clean_losses=None) -> dict[str, Outcome]:
        with frozen(model):
            return self.select(model, images.detach(), targets, clean_losses)

    def select(self, model, images, targets, clean_losses) -> dict[str, Outcome]:
        """Run every member once; per criterion, keep each sample's best member result."""
        best: dict[str, tuple] = {}  # view -> (value [B], outcome, winner [B])
        zero_gradient = 0
        for index, member in enumerate(self.members.values()):
            before = member.stats.zero_gradient
            out = member.perturb(model, images, targets, clean_losses, outputs=True)
            zero_gradient += member.stats.zero_gradient - before
            clean_losses = out.clean_losses
            for view, value, outcome in self.candidates(out):
                best[view] = keep_best(best.get(view), value, outcome, index)
        views = {c: best[c][1] for c in self.criteria if c != "per_task"}
        if "per_task" in self.criteria:
            views["per_task"] = merge_tasks({t: best[f"per_task/{t}"] for t in self.tasks})
        self.count_wins(best)
        for view, outcome in views.items():
            self.record(self.views_stats[view], images, outcome, zero_gradient)
        self.record(self.stats, images, views[self.criterion], zero_gradient)
        return views

    def candidates(self, out: Outcome):
        """``(view, value [B], outcome)`` for every view this member result competes in."""
        names = list(self.tasks)
        losses = torch.stack([out.losses[t] for t in names], dim=1)
        clean = torch.stack([out.clean_losses[t] for t in names], dim=1)
        changes = task_changes(losses, clean, self.min_loss)  # (B, T)
        if "mean" in self.criteria:
            yield "mean", changes.mean(dim=1), out
        if "min" in self.criteria:
            yield "min", changes.amin(dim=1), out
        if "per_task" in self.criteria:
            for i, t in enumerate(names):
                yield f"per_task/{t}", changes[:, i], out

    def count_wins(self, best: dict[str, tuple]) -> None:
        names = list(self.members)
        for view, (_, _, winner) in best.items():
            counts = torch.bincount(winner.cpu(), minlength=len(names)).tolist()
            for name, n in zip(names, counts):
                self.wins[view][name] += n

    def record(self, stats: AttackStats, images, outcome: Outcome, zero_gradient: int) -> None:
        adv = outcome.task_images or {"": outcome.images}
        outside = torch.zeros(images.shape[0], dtype=torch.bool, device=images.device)
        for x in adv.values():
            linf = (x - images).flatten(1).abs().amax(dim=1)
            outside |= (linf > self.eps + 1e-6) | (x.flatten(1).amin(1) < 0)
            outside |= x.flatten(1).amax(1) > 1
        stats.samples += images.shape[0]
        stats.outside_budget += int(outside.sum())
        stats.zero_gradient += zero_gradient
        stats.scored += images.shape[0]
        stats.not_raised += int((outcome.score <= 0).sum())  # the clean criterion value is 0
        stats.adv_score += float(outcome.score.sum())

    def __repr__(self) -> str:
        return f"Ensemble(members={list(self.members)}, criteria={list(self.criteria)})"


def keep_best(current, value, outcome: Outcome, index: int):
    """``(value, outcome, winner)`` per sample: the new member where its value is strictly
    larger, else the current best. Shape: value [B]."""
    if current is None:
        winner = torch.full_like(value, index, dtype=torch.long)
        return (
            value,
            Outcome(outcome.images, value, outcome.losses, outcome.preds, outcome.clean_losses),
            winner,
        )
    old_value, old, winner = current
    better = value > old_value
    merged = Outcome(
        torch.where(per_sample(better, old.images), outcome.images, old.images),
        torch.where(better, value, old_value),
        pick(better, outcome.losses, old.losses),
        pick(better, outcome.preds, old.preds),
        old.clean_losses,
    )
    return merged.score, merged, torch.where(better, index, winner)


def merge_tasks(per_task: dict[str, tuple]) -> Outcome:
    """The ``per_task`` view: task t's prediction, loss and image from its own best member."""
    first = next(iter(per_task.values()))[1]
    values = torch.stack([v for v, _, _ in per_task.values()], dim=1)  # (B, T)
    return Outcome(
        None,
        values.mean(dim=1),
        {t: o.losses[t] for t, (_, o, _) in per_task.items()},
        {t: o.preds[t] for t, (_, o, _) in per_task.items()},
        first.clean_losses,
        task_images={t: o.images for t, (_, o, _) in per_task.items()},
    )


def point_name(weights: tuple[float, ...]) -> str:
    """A grid point's view name, e.g. ``w0.25_0.50_0.25`` (weights in task order)."""
    return "w" + "_".join(f"{w:.2f}" for w in weights)


class Frontier(Attack):
    """TOTAL on every point of a simplex grid (module docstring); one view per point.

    Args:
        step_rule, tasks, eps, steps, step_size, random_start, restarts, seed, loss: as
            :class:`IterativeAttack`, shared by every point.
        resolution: grid divisions n: ``(n + T - 1) choose (T - 1)`` points (15 for T=3, n=4).
        scale: ``clean`` (weights on ``L_t / Lc_t``) or ``none`` (on the raw losses).
    """

    def __init__(
        self,
        step_rule: StepRule,
        tasks,
        eps: float,
        resolution: int = 4,
        scale: str = "clean",
        steps: int = 10,
        step_size: float | None = None,
        random_start: bool = False,
        restarts: int = 1,
        seed: int = 0,
        loss="ce",
    ):
        super().__init__(tasks, eps)
        if scale not in ("clean", "none"):
            raise ValueError(f"attack.scale must be 'clean' or 'none', got {scale!r}")
        self.resolution, self.scale = int(resolution), scale
        self.points = simplex_grid(len(self.tasks), self.resolution)
        loop = dict(
            steps=steps,
            step_size=step_size,
            random_start=random_start,
            restarts=restarts,
            seed=seed,
            loss=attack_loss(loss, self.tasks),  # one object: a fallback is logged once
        )
        self.members = {}
        for point in self.points:
            weights = dict(zip(self.tasks, point))
            objective = (RelativeLoss if scale == "clean" else TotalLoss)(self.tasks, weights)
            self.members[point_name(point)] = IterativeAttack(
                step_rule, objective, self.tasks, eps=eps, **loop
            )

    shared_views = False  # each point is an attack of its own

    def weights(self) -> dict[str, dict[str, float]]:
        """``{view: {task: weight}}`` of every grid point."""
        return {name: dict(zip(self.tasks, p)) for name, p in zip(self.members, self.points)}

    def view_info(self, view: str) -> dict:
        return {"weights": self.weights()[view], "scale": self.scale}

    def reset_stats(self) -> None:
        self.stats = AttackStats()
        for member in getattr(self, "members", {}).values():
            member.reset_stats()

    def view_stats(self) -> dict[str, AttackStats]:
        return {name: member.stats for name, member in self.members.items()}

    def perturb(self, model, images, targets, clean_losses, outputs) -> Outcome:
        raise TypeError("a frontier has one result per grid point: call run_views()")

    def run_views(self, model, images, targets, clean_losses=None) -> dict[str, Outcome]:
        views = {}
        with frozen(model):
            for name, member in self.members.items():
                out = member.perturb(model, images.detach(), targets, clean_losses, outputs=True)
                clean_losses = out.clean_losses
                views[name] = out
        return views

    def __repr__(self) -> str:
        return f"Frontier({len(self.points)} points, resolution={self.resolution}, {self.scale})"
