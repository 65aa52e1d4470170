"""Dense-prediction attack losses: what each task's attack ascends (``attack.loss``).

The evaluation always measures the tasks' own losses and metrics; an attack loss only changes the
per-pixel weights of what the attack *ascends*, never the step rule (sign step, projection,
clip). Every loss is per sample, shape ``[B]``: a mean over the sample's valid pixels (an ignored
pixel stays ignored; 0 for a sample without valid pixels). Facts: attacks_literature.md §4, §7.

- ``ce``: the task's own loss (the default; bit-identical to attacks without ``attack.loss``).
- ``segpgd`` (Gu et al., ECCV 2022, arXiv 2207.12391): at step t of T (t from 0),
  ``lambda_t = t / (2T)``; a pixel whose argmax equals its label weighs ``1 - lambda_t``, a
  wrong one ``lambda_t``: early steps push the still-correct pixels, the last ones both about
  equally. Defined for segmentation.
- ``cospgd`` (Agnihotri, Jung & Keuper, ICML 2024, arXiv 2302.02213): each pixel's loss times
  the detached cosine similarity over channels between ``softmax(pred)`` and the target
  distribution: the one-hot label (segmentation), ``softmax(target)`` for pixel-wise regression
  (normals: the 3 channels; depth: one channel, whose softmax is 1, so the weight is 1 and the
  loss is the task's L1 exactly). A pixel already far from its target weighs little.
- ``mask_ce``, ``mask_ce_bal``, ``jsd`` (SEA: Croce, Singh & Hein, ECCV 2024, arXiv
  2306.12941): cross-entropy on the currently correct pixels only; the same with each pixel
  weighted by ``1 - share of its class among the image's valid pixels``; and the Jensen-Shannon
  divergence between ``softmax(pred)`` and the one-hot label. Defined for segmentation.

Segmentation losses use the plain (unweighted) per-pixel cross-entropy, as the papers do, also
where the task's loss has class weights (Taskonomy). A task a loss is not defined for ascends its
own loss (:class:`AttackLoss` says so once).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Mapping

import torch

from mtl_attack.data.schema import IGNORE_INDEX
from mtl_attack.tasks import Depth, Segmentation, SurfaceNormal, Task, label_wins, masked_mean
from mtl_attack.tasks.base import labels_at

log = logging.getLogger("mtl_attack")

LOSSES = ("ce", "segpgd", "cospgd", "mask_ce", "mask_ce_bal", "jsd")
Pair = tuple[torch.Tensor, torch.Tensor]


def seg_pixels(pred: torch.Tensor, target: torch.Tensor):
    """Per-pixel cross-entropy, valid mask, safe labels and the detached log-probabilities of a
    segmentation (one log-softmax serves them all).

    Shape: pred (B, C, h, w), target (B, H, W) -> three (B, h, w) tensors and (B, C, h, w).
    """
    target = labels_at(target, pred)
    valid = target != IGNORE_INDEX
    safe = torch.where(valid, target, torch.zeros_like(target))
    logp = pred.log_softmax(1)
    nll = -logp.gather(1, safe[:, None])[:, 0]
    return nll, valid, safe, logp.detach()


def plain(nll: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The unweighted cross-entropy per sample, detached: the segmentation task's own loss when
    it has no class weights, computed from the attack loss's own log-softmax."""
    return masked_mean(nll.detach(), valid)


def segpgd_weight(correct: torch.Tensor, step: int, steps: int) -> torch.Tensor:
    """SegPGD's per-pixel weight at step ``step`` of ``steps``: ``1 - lambda`` on correct
    pixels, ``lambda`` on wrong ones, ``lambda = step / (2 steps)``. Shape kept."""
    lam = step / (2.0 * steps)
    return torch.where(correct, 1.0 - lam, lam)


# Each pixel loss returns (ascended [B] on the graph, the task's own loss [B] detached): the
# own loss comes from the same intermediates, so an attack step pays one log-softmax, not two.


def segpgd(pred, target, step: int, steps: int) -> Pair:
    nll, valid, safe, logp = seg_pixels(pred, target)
    weight = segpgd_weight(label_wins(logp, safe), step, steps).to(nll.dtype)
    return masked_mean(weight * nll, valid), plain(nll, valid)


def cospgd_segmentation(pred, target, step: int, steps: int) -> Pair:
    """CE times cos(softmax(pred), one-hot(label)) = p_y / ||p||_2, detached."""
    nll, valid, _, logp = seg_pixels(pred, target)
    # ||p||_2 as sqrt(sum exp(2 log p)): on the CPU torch.linalg.vector_norm over the channels
    # of (B, C, h, w) takes 43 ms at the default attack batch, this 4 ms
    norm = (2.0 * logp).exp().sum(1).sqrt()
    weight = torch.exp(-nll.detach()) / norm.clamp_min(1e-12)
    return masked_mean(weight * nll, valid), plain(nll, valid)


def mask_ce(pred, target, step: int, steps: int) -> Pair:
    nll, valid, safe, logp = seg_pixels(pred, target)
    return masked_mean(label_wins(logp, safe).to(nll.dtype) * nll, valid), plain(nll, valid)


def mask_ce_bal(pred, target, step: int, steps: int) -> Pair:
    """Masked CE with weight ``1 - n_c / n`` (n_c: the image's valid pixels of the pixel's
    class c, n: all its valid pixels), as SEA's class-balanced loss."""
    nll, valid, safe, logp = seg_pixels(pred, target)
    flat, keep = safe.flatten(1), valid.flatten(1).to(nll.dtype)  # (B, h*w)
    counts = torch.zeros(flat.shape[0], pred.shape[1], dtype=nll.dtype, device=nll.device)
    counts.scatter_add_(1, flat, keep)  # (B, C)
    share = counts.gather(1, flat) / keep.sum(1, keepdim=True).clamp_min(1.0)
    weight = (1.0 - share.view_as(nll)) * label_wins(logp, safe).to(nll.dtype)
    return masked_mean(weight * nll, valid), plain(nll, valid)


def jsd(pred, target, step: int, steps: int) -> Pair:
    """JS(softmax(pred), one-hot(y)) = log 2 + (p log p - (1 + p) log(1 + p)) / 2 with p the
    label's probability (the closed form of the two KL terms against m = (p + y) / 2)."""
    nll, valid, _, _ = seg_pixels(pred, target)
    p = torch.exp(-nll)
    pixels = math.log(2.0) - 0.5 * (p * nll + (1.0 + p) * torch.log1p(p))
    return masked_mean(pixels, valid), plain(nll, valid)


def regression_weight(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CosPGD's detached weight for pixel-wise regression: cos(softmax(pred), softmax(target))
    over channels. Shape: (B, C, h, w) -> (B, h, w); identically 1 for one channel."""
    p, t = pred.detach().softmax(1), target.softmax(1)
    return (p * t).sum(1) / ((p * p).sum(1) * (t * t).sum(1)).sqrt().clamp_min(1e-8)


def cospgd_normal(pred, target, step: int, steps: int) -> Pair:
    """The normal loss 1 - cos(pred, target) per pixel, times CosPGD's regression weight."""
    target = labels_at(target, pred)
    valid = target.abs().sum(1) > 0
    norm = (pred * pred).sum(1).clamp_min(1e-24).sqrt()
    pixels = 1.0 - (pred * target).sum(1) / norm
    ascended = masked_mean(regression_weight(pred, target) * pixels, valid)
    return ascended, masked_mean(pixels.detach(), valid)


def cospgd_depth(pred, target, step: int, steps: int) -> Pair:
    """The L1 depth loss per pixel times CosPGD's regression weight, computed only for several
    channels: the softmax of one channel is 1, so the weight is exactly 1 and the loss is L1."""
    target = labels_at(target, pred)
    pixels = (pred - target).abs()
    own = masked_mean(pixels.detach(), target > 0)
    if pred.shape[1] == 1:
        return masked_mean(pixels, target > 0), own
    weighted = regression_weight(pred, target)[:, None] * pixels
    return masked_mean(weighted[:, 0], target[:, 0] > 0), own


PixelLoss = Callable[[torch.Tensor, torch.Tensor, int, int], "Pair"]
#: loss name -> {task class: its function}; a task of another class ascends its own loss
DEFINED: dict[str, dict[type, PixelLoss]] = {
    "segpgd": {Segmentation: segpgd},
    "cospgd": {
        Segmentation: cospgd_segmentation,
        SurfaceNormal: cospgd_normal,
        Depth: cospgd_depth,
    },
    "mask_ce": {Segmentation: mask_ce},
    "mask_ce_bal": {Segmentation: mask_ce_bal},
    "jsd": {Segmentation: jsd},
}
#: the task kinds each loss is defined for, as the fallback message names them
KINDS = {Segmentation: "segmentation", SurfaceNormal: "normals", Depth: "depth"}


def loss_label(spec: str | Mapping[str, str] | None) -> str | None:
    """The loss part of an attack's label: ``None`` for the default (``ce`` everywhere, so
    default results keep their labels and cache keys), the name (``segpgd``), or
    ``task=name`` pairs joined by commas for a per-task choice (``ce`` entries left out)."""
    if spec is None or isinstance(spec, AttackLoss):
        return None if spec is None else spec.label
    if isinstance(spec, str):
        return None if spec == "ce" else spec
    pairs = [f"{t}={n}" for t, n in spec.items() if n != "ce"]
    return ",".join(pairs) or None


def assign(spec: str | Mapping[str, str], tasks: list[str]) -> dict[str, str]:
    """``{task: loss name}`` from one name or a ``{task: name}`` mapping (unnamed: ``ce``)."""
    if isinstance(spec, str):
        spec = dict.fromkeys(tasks, spec)
    elif not isinstance(spec, Mapping):
        raise ValueError(f"attack.loss must be a name or a {{task: name}} mapping, got {spec!r}")
    unknown = sorted(set(spec) - set(tasks))
    if unknown:
        raise ValueError(f"attack.loss names unknown tasks {unknown}; the tasks are {tasks}")
    bad = sorted({str(n) for n in spec.values()} - set(LOSSES))
    if bad:
        raise ValueError(f"attack.loss={bad[0]!r} is not a loss; use one of {list(LOSSES)}")
    return {t: str(spec.get(t, "ce")) for t in tasks}


class AttackLoss:
    """The per-task losses an attack ascends, built from ``attack.loss``.

    Args:
        spec: a name from :data:`LOSSES` for every task, or ``{task: name}`` (tasks not named
            ascend ``ce``, their own loss).
        tasks: the model's tasks (their classes decide where a loss is defined).
        announce: log once which tasks fall back to their own loss.

    Call it with the predictions, the targets and the step index ``step`` of ``steps`` (SegPGD's
    weights follow it): ``{task: [B]}``, attached to the graph of the predictions;
    :meth:`both` also gives the tasks' own losses at the same predictions.
    """

    def __init__(self, spec, tasks: Mapping[str, Task], announce: bool = True):
        self.tasks = dict(tasks)
        self.names = assign(spec, list(self.tasks))
        self.label = loss_label(spec)
        self.functions: dict[str, PixelLoss] = {}
        self.fallback: list[str] = []
        for task, name in self.names.items():
            found = [
                f for cls, f in DEFINED.get(name, {}).items() if isinstance(self.tasks[task], cls)
            ]
            if found:
                self.functions[task] = found[0]
            elif name != "ce":
                self.fallback.append(task)
        if self.fallback and announce:
            log.warning("%s", self.fallback_message())

    @property
    def is_task_loss(self) -> bool:
        """True when every task ascends its own loss (``ce``): the attack is unchanged."""
        return not self.functions

    def fallback_message(self) -> str:
        parts = []
        for task in self.fallback:
            kinds = [KINDS[c] for c in DEFINED[self.names[task]]]
            parts.append(f"{self.names[task]} on {task} (defined for {', '.join(kinds)} only)")
        return (
            f"attack.loss={self.label}: {'; '.join(parts)}: these tasks ascend their own task "
            "loss instead"
        )

    def __call__(self, preds, targets, step: int, steps: int) -> dict[str, torch.Tensor]:
        """The ascended losses ``{task: [B]}``, on the graph of the predictions."""
        return self.both(preds, targets, step, steps)[1]

    def both(self, preds, targets, step: int, steps: int):
        """``(own, ascended)``: the tasks' own losses (detached) and the ascended ones at the
        same predictions, each ``{task: [B]}``. A task that ascends its own loss gives one tensor
        to both; a pixel loss gives its task's own loss from the same log-softmax, except for a
        class-weighted segmentation, whose own loss is computed once more without a graph."""
        own, ascended = {}, {}
        for task, obj in self.tasks.items():
            fn = self.functions.get(task)
            if fn is None:
                ascended[task] = obj.loss(preds[task], targets[task])
                own[task] = ascended[task].detach()
                continue
            ascended[task], own[task] = fn(preds[task], targets[task], step, steps)
            if getattr(obj, "class_weights", None) is not None:
                with torch.no_grad():
                    own[task] = obj.loss(preds[task].detach(), targets[task])
        return own, ascended

    def __repr__(self) -> str:
        return f"AttackLoss({self.names})"


def attack_loss(spec, tasks: Mapping[str, Task], announce: bool = True) -> AttackLoss:
    """``spec`` as an :class:`AttackLoss` (an AttackLoss is returned as it is)."""
    return spec if isinstance(spec, AttackLoss) else AttackLoss(spec, tasks, announce)
