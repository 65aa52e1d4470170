"""Semantic segmentation: cross-entropy with an ignore index; mIoU and pixel accuracy."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from mtl_attack.data.schema import IGNORE_INDEX
from mtl_attack.tasks.base import Meter, Task, check_metric_set, labels_at, prediction_at
from mtl_attack.tasks.taskonomy_metrics import WeightedCEMeter


def channel_argmax(scores: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(1)`` (the first maximal channel on ties), computed with maxima.

    On the CPU an argmax over the channels of a (B, C, h, w) tensor is slow (54 ms for B=100,
    C=6, 64x64, a tenth of an attack step on the default model, which asks it at every step);
    the maximum, a comparison and a maximum over descending ranks give the same index in 5 ms.
    Shape: (B, C, ...) -> (B, ...), int64.
    """
    scores = scores.detach()
    channels = scores.shape[1]
    rank = torch.arange(channels, 0, -1, device=scores.device, dtype=torch.int32)
    rank = rank.view(1, channels, *([1] * (scores.ndim - 2)))
    top = scores == scores.amax(1, keepdim=True)
    return (channels - (top * rank).amax(1)).long().clamp_max(channels - 1)  # NaN: last


def label_wins(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``scores.argmax(1) == labels``: pixels predicted as their label. (B, h, w), no gradient."""
    return channel_argmax(scores) == labels


class Segmentation(Task):
    """``segment_semantic``: logits (B, C, H, W) against labels (B, H, W), 255 = ignore.

    Loss per sample: sum_p w[y_p] * nll_p / sum_p w[y_p] over valid pixels (w = 1 without class
    weights), i.e. PyTorch's weighted cross-entropy mean, taken per sample.

    ``metric_set="nyuv2"`` reports mIoU and pixel accuracy; ``"taskonomy"`` reports the weighted
    cross-entropy ``err`` (the paper's Taskonomy metric, datasets.md §5).
    """

    name = "segment_semantic"
    higher_is_better = {"miou": True, "pixel_acc": True}

    def __init__(
        self,
        num_classes: int,
        class_weights: Sequence[float] | None = None,
        convention: str = "reference",
        metric_set: str = "nyuv2",
    ):
        super().__init__(convention)
        check_metric_set(metric_set)
        self.metric_set = metric_set
        if metric_set == "taskonomy":
            self.higher_is_better = {"err": False}
        self.channels = num_classes
        self.num_classes = num_classes
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"{len(class_weights)} class weights for {num_classes} classes")
        self.class_weights = None if class_weights is None else torch.tensor(class_weights)

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = labels_at(target, pred)
        valid = target != IGNORE_INDEX
        safe = torch.where(valid, target, torch.zeros_like(target))
        nll = F.cross_entropy(pred, safe, reduction="none")  # (B, H, W)
        weight = valid.to(pred.dtype)
        if self.class_weights is not None:
            weight = weight * self.class_weights.to(pred.device, pred.dtype)[safe]
        return (nll * weight).sum((1, 2)) / weight.sum((1, 2)).clamp_min(1e-12)

    def meter(self) -> Meter:
        if self.metric_set == "taskonomy":
            return WeightedCEMeter(self.num_classes, self.class_weights, self.convention)
        return ConfusionMeter(self.num_classes, self.convention)


class ConfusionMeter(Meter):
    """Dataset-wide confusion matrix (rows = ground truth) over pixels with a valid label.

    ``reference``: mIoU averaged over classes with a true positive; pixel accuracy as the
    batch-size-weighted mean of per-batch accuracies. ``libmtl``: mIoU averaged over classes
    present in ground truth or prediction; pixel accuracy over all pixels of the dataset.
    """

    def __init__(self, num_classes: int, convention: str):
        super().__init__()
        self.num_classes = num_classes
        self.convention = convention

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        label = channel_argmax(prediction_at(pred, target))
        valid = (target != IGNORE_INDEX) & (target < self.num_classes)
        idx = target[valid] * self.num_classes + label[valid]
        conf = torch.bincount(idx, minlength=self.num_classes**2)
        self._add("confusion", conf.reshape(self.num_classes, self.num_classes))
        per_batch = (label[valid] == target[valid]).float().mean() if valid.any() else None
        if per_batch is not None:
            self._add("acc_sum", per_batch * target.shape[0])
            self._add("acc_weight", torch.tensor(float(target.shape[0])))

    def compute(self) -> dict[str, float]:
        conf = self.state["confusion"]
        tp = conf.diag()
        union = conf.sum(0) + conf.sum(1) - tp
        iou = tp / union.clamp_min(1)
        keep = tp > 0 if self.convention == "reference" else union > 0
        miou = iou[keep].mean() if keep.any() else torch.tensor(0.0)
        if self.convention == "reference":
            acc = self.state["acc_sum"] / self.state["acc_weight"]
        else:
            acc = tp.sum() / conf.sum().clamp_min(1)
        return {"miou": float(miou), "pixel_acc": float(acc)}
