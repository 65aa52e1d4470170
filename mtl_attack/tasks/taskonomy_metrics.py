"""The Taskonomy metric set of the paper's reference code (datasets.md §5, ``TaskonomyMetrics``).

Segmentation is scored by its prior-weighted cross-entropy (``err``), normals by the mean cosine
similarity; depth (log-normalized), keypoints and edges by their L1 errors, which reuse
:class:`~mtl_attack.tasks.geometry.DepthMeter` and :class:`~mtl_attack.tasks.geometry.L1Meter`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mtl_attack.data.schema import IGNORE_INDEX
from mtl_attack.tasks.base import Meter, prediction_at


class WeightedCEMeter(Meter):
    """``err``: class-weighted cross-entropy over pixels with a valid label (lower is better).

    ``reference``: per batch sum_p w[y_p] nll_p / sum_p w[y_p] (PyTorch's weighted mean over the
    batch), then the batch-size-weighted mean of the batch values. ``libmtl`` (LibMTL has no
    Taskonomy; the dataset-wide analogue): the same ratio over all pixels of the dataset.
    """

    def __init__(self, num_classes: int, class_weights: torch.Tensor | None, convention: str):
        super().__init__()
        self.num_classes = num_classes
        self.class_weights = class_weights
        self.convention = convention

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = prediction_at(pred, target)
        valid = (target != IGNORE_INDEX) & (target < self.num_classes)
        if not valid.any():
            return
        safe = torch.where(valid, target, torch.zeros_like(target))
        nll = F.cross_entropy(pred.double(), safe, reduction="none")[valid]
        weight = torch.ones_like(nll)
        if self.class_weights is not None:
            weight = self.class_weights.to(nll.device, nll.dtype)[safe[valid]]
        if self.convention == "reference":
            batch = float(target.shape[0])
            self._add("sum", (nll * weight).sum() / weight.sum() * batch)
            self._add("weight", torch.tensor(batch))
        else:
            self._add("sum", (nll * weight).sum())
            self._add("weight", weight.sum())

    def compute(self) -> dict[str, float]:
        value = self.state["sum"] / self.state["weight"] if self.state else math.nan
        return {"err": float(value)}


class CosineMeter(Meter):
    """``cosine_similarity``: mean over all valid pixels of the dataset of
    cos(normalize(pred), normalize(target)); the zero target vector is invalid."""

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = prediction_at(pred, target)
        valid = target.abs().sum(1) > 0  # (B, H, W)
        cos = (F.normalize(pred.double(), dim=1) * F.normalize(target.double(), dim=1)).sum(1)
        self._add("sum", cos[valid].sum())
        self._add("count", valid.sum().double())

    def compute(self) -> dict[str, float]:
        if not self.state or float(self.state["count"]) == 0:
            return {"cosine_similarity": math.nan}
        return {"cosine_similarity": float(self.state["sum"] / self.state["count"])}
