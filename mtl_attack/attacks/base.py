"""The attack base (bookkeeping) and the iterative attack = step rule x objective.

Threat model (method.md section 2): white-box, L-infinity, untargeted. ``eps`` and
``step_size`` are given in pixel levels of an 8-bit image (eps=4 means 4/255); images are float
in [0, 1] with the normalization inside the model, so every iterate is projected onto the
eps-ball around the clean image and clipped to [0, 1].

Shape: ``images`` (B, C, H, W) in [0, 1]; ``targets`` ``{task: (B, ...)}``; the model maps
images to ``{task: prediction}``; the result has the shape of ``images``.

Cost: ``steps`` x (forward + backward) per run, plus one forward pass at the result when its
score, losses or predictions are asked for (:meth:`Attack.run`; the evaluation reads the
adversarial metrics from it instead of running the model again). The clean losses come from
step 0's forward pass when the run starts at the clean image, from the caller
(``clean_losses``), or else from one clean forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from mtl_attack.attacks.losses import attack_loss
from mtl_attack.attacks.objectives import Objective
from mtl_attack.attacks.outcome import AttackStats, Outcome, better_of, detached, frozen
from mtl_attack.attacks.steps import StepRule, project
from mtl_attack.tasks import Task

Tensors = Mapping[str, torch.Tensor]


def record_outcome(
    stats: AttackStats, objective: Objective, eps: float, images: torch.Tensor, outcome: Outcome
) -> None:
    """Add one batch's result to an attack's counters: samples outside the eps-ball or [0, 1],
    and (when the result was scored) the objective's score at the clean and adversarial images.
    ``eps`` as a fraction of the pixel range."""
    adv = outcome.images.flatten(1)
    linf = (outcome.images - images).flatten(1).abs().amax(dim=1)
    outside = (linf > eps + 1e-6) | (adv.amin(1) < 0) | (adv.amax(1) > 1)
    stats.samples += images.shape[0]
    stats.outside_budget += int(outside.sum())
    if outcome.score is not None:
        clean_score = objective.score(outcome.clean_losses, outcome.clean_losses)
        stats.scored += images.shape[0]
        stats.not_raised += int((outcome.score <= clean_score).sum())
        stats.clean_score += float(clean_score.sum())
        stats.adv_score += float(outcome.score.sum())


class Attack:
    """Base: ``attack(model, images, targets) -> adversarial images`` (detached).

    Owns the bookkeeping (torchattacks ``Attack.__call__``): the model runs in eval mode with its
    parameters frozen during the attack, and afterwards its mode, ``requires_grad`` flags and
    ``.grad`` are as before; gradients are taken w.r.t. the input only. :meth:`run` returns the
    whole :class:`Outcome`; :meth:`run_views` every result one run produces (an ensemble has one
    per selection criterion), keyed by view name (``""`` for a plain attack).
    """

    def __init__(self, tasks: Mapping[str, Task], eps: float):
        if eps < 0:
            raise ValueError(f"attack.eps must be >= 0 pixel levels, got {eps}")
        self.tasks = dict(tasks)
        self.eps_levels = float(eps)
        self.eps = float(eps) / 255.0
        self.stats = AttackStats()
        #: forward passes averaged per evaluation (EOT on a randomized model; attack=standard
        #: raises it when two identical forwards differ)
        self.draws = 1

    def __call__(self, model: nn.Module, images: torch.Tensor, targets: Tensors) -> torch.Tensor:
        return self.run(model, images, targets, outputs=False).images

    def run(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: Tensors,
        clean_losses: Tensors | None = None,
        outputs: bool = True,
    ) -> Outcome:
        """Attack one batch. ``clean_losses`` (per-sample, at ``images``) saves a forward pass
        when the run does not start at the clean image; ``outputs=False`` asks for the images
        only (no forward pass at the result unless the step rule needs its score)."""
        with frozen(model):
            return self.perturb(model, images.detach(), targets, clean_losses, outputs)

    def run_views(
        self,
        model: nn.Module,
        images: torch.Tensor,
        targets: Tensors,
        clean_losses: Tensors | None = None,
    ) -> dict[str, Outcome]:
        return {"": self.run(model, images, targets, clean_losses)}

    def perturb(self, model, images, targets, clean_losses, outputs) -> Outcome:
        raise NotImplementedError

    #: whether every view needs the whole run (ensemble criteria) or owns its share of it
    #: (frontier points): how an evaluation splits the run's seconds among the views
    shared_views = True

    def view_stats(self) -> dict[str, AttackStats]:
        """The sanity counters of every view :meth:`run_views` returns."""
        return {"": self.stats}

    def view_info(self, view: str) -> dict:
        """What a view's result records besides its metrics (ensemble wins, frontier weights)."""
        return {}

    def forward(
        self, model: nn.Module, x: torch.Tensor, targets: Tensors
    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Predictions and per-sample losses ``{task: [B]}`` of every task at ``x``. With
        ``draws > 1`` (EOT, Athalye et al. 2018) the losses are averaged over that many forward
        passes, so their input gradient is the mean of the draws' gradients; the predictions
        are the last draw's."""
        total: dict[str, torch.Tensor] = {}
        for _ in range(self.draws):
            preds = model(x)
            for t, task in self.tasks.items():
                loss = task.loss(preds[t], targets[t])
                total[t] = loss if t not in total else total[t] + loss
        return preds, {t: v / self.draws for t, v in total.items()} if self.draws > 1 else total

    def losses(
        self, model: nn.Module, x: torch.Tensor, targets: Tensors
    ) -> dict[str, torch.Tensor]:
        """Per-sample loss of every task at ``x``: ``{task: [B]}``."""
        return self.forward(model, x, targets)[1]

    def reset_stats(self) -> None:
        self.stats = AttackStats()


class IterativeAttack(Attack):
    """``steps`` iterations of a step rule along a multi-task objective's direction.

    Args:
        step_rule: how iterates move (SignStep = PGD, MomentumSign = MIM, AutoPGD = APGD).
        objective: which direction and per-sample score (see ``conf/attack``).
        tasks: every task of the model (losses are computed for all of them).
        eps: budget in pixel levels.
        steps: iterations (10 in the reference code); 1 with step size eps is FGSM.
        step_size: in pixel levels; ``None`` = eps / steps (ignored by APGD).
        random_start: start from a uniform point in the eps-ball instead of the clean image.
        restarts: independent runs; each sample keeps the run with the highest score. Runs
            after the first start from a random point.
        seed: seeds the random starts; the same seed gives the same result.
        loss: what each task ascends (:mod:`~mtl_attack.attacks.losses`): ``ce`` (the task's
            own loss), a dense loss name (``segpgd``, ``cospgd``, ...), ``{task: name}``, or an
            :class:`~mtl_attack.attacks.losses.AttackLoss`.

    The objective works on the attack losses: ``start`` gets their clean values (step 0) and
    ``direction`` their values at each step, with the step index, so SegPGD's schedule sees it.
    Its ``score`` (APGD's best point and step-size rule, the restarts' choice, the sanity
    checks) and the returned losses are always the tasks' own losses: a fixed function of the
    image, as objectives.py requires, whereas SegPGD's weights move with the step and a masked
    loss *falls* when its pixels flip, so a best point by the ascended loss would keep the
    iterate before the damage. With ``ce`` both are the same tensors and nothing changes.
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
        loss="ce",
    ):
        super().__init__(tasks, eps)
        self.loss = attack_loss(loss, self.tasks)
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

    def perturb(self, model, images, targets, clean_losses, outputs):
        gen = torch.Generator().manual_seed(self.seed)  # a pure function of (seed, inputs)
        scored = outputs or self.restarts > 1 or self.step_rule.needs_final
        best = None
        for r in range(self.restarts):
            start = None  # the clean image
            if self.random_start or r > 0:
                noise = torch.rand(images.shape, generator=gen).to(images.device) * 2 - 1
                start = project(images + self.eps * noise.to(images.dtype), images, self.eps)
            run = self.run_once(model, images, targets, clean_losses, start, scored, outputs)
            clean_losses = run.clean_losses
            best = run if best is None else better_of(best, run)
        self.record(images, best)
        return best

    def run_once(self, model, images, targets, clean_losses, start, scored, outputs) -> Outcome:
        """One run from ``start`` (None: the clean image). ``scored``: run the forward pass at
        the result; ``outputs``: also keep the losses and predictions at the result."""
        x = images if start is None else start
        state = self.step_rule.init(images, x, self.eps, self.step_size, self.steps)
        for k in range(self.steps):
            x = x.detach().requires_grad_(True)
            preds, losses, ascended = self.step_losses(model, x, targets, k)
            if k == 0:
                clean_losses = self.begin(
                    model, images, targets, clean_losses, start, preds, losses, ascended
                )
            direction = self.objective.direction(ascended, x, preds).detach()
            flat = direction.flatten(1)
            if k == 0:
                self.stats.zero_gradient += int((flat.abs().amax(dim=1) == 0).sum())
                nonfinite = torch.zeros(flat.shape[0], dtype=torch.bool, device=flat.device)
            nonfinite |= ~flat.isfinite().all(dim=1)
            losses = detached(losses)
            score = self.objective.score(losses, clean_losses)
            if k == 0:
                start_score = score
            carry = {"losses": losses, "preds": detached(preds)} if outputs else None
            x = self.step_rule.update(state, x.detach(), direction, score, k, carry)
        self.stats.nonfinite_gradient += int(nonfinite.sum())
        if not scored:
            return Outcome(x.detach(), None, clean_losses=clean_losses)
        with torch.no_grad():
            preds, losses = self.forward(model, x, targets)
        final = self.objective.score(losses, clean_losses)
        self.stats.falling += int((final < start_score).sum())  # the last iterate vs the start
        carry = {"losses": losses, "preds": preds} if outputs else None
        x, score = self.step_rule.finish(state, x.detach(), final, carry)
        carry = state.get("final_carry") or {}
        return Outcome(x, score, carry.get("losses", {}), carry.get("preds", {}), clean_losses)

    def step_losses(self, model, x, targets, k: int):
        """Predictions, the tasks' own losses and the ascended attack losses at step ``k``
        (``{task: [B]}`` each; with ``ce`` the same tensors, still attached to the graph)."""
        if self.loss.is_task_loss:
            preds, losses = self.forward(model, x, targets)
            return preds, losses, losses
        preds = model(x)
        losses, ascended = self.loss.both(preds, targets, k, self.steps)
        return preds, losses, ascended

    def begin(self, model, images, targets, clean_losses, start, preds, losses, ascended):
        """Clean losses (from step 0 when it is the clean image, else the caller's or one clean
        forward pass), and the objective's ``start`` with the clean attack losses (the same
        ones under ``ce``). Returns the clean (task) losses."""
        clean_preds = detached(preds) if start is None else None
        clean_ascended = detached(ascended) if start is None else None
        if start is None and clean_losses is None:
            clean_losses = detached(losses)
        needs_preds = self.objective.needs_predictions and clean_preds is None
        if self.loss.is_task_loss:
            clean_ascended = clean_losses
        if clean_losses is None or needs_preds or clean_ascended is None:
            with torch.no_grad():
                clean_preds, fresh, fresh_ascended = self.step_losses(model, images, targets, 0)
            clean_losses = fresh if clean_losses is None else clean_losses
            if clean_ascended is None:
                clean_ascended = clean_losses if self.loss.is_task_loss else fresh_ascended
        self.objective.start(clean_ascended, clean_preds, targets)
        return clean_losses

    def record(self, images: torch.Tensor, outcome: Outcome) -> None:
        record_outcome(self.stats, self.objective, self.eps, images, outcome)

    def __repr__(self) -> str:
        return (
            f"IterativeAttack({self.step_rule!r}, {self.objective!r}, eps={self.eps_levels}"
            f", steps={self.steps}, random_start={self.random_start}, "
            f"restarts={self.restarts}"
            + ("" if self.loss.is_task_loss else f", loss={self.loss.label!r}")
            + ")"
        )
