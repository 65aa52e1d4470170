"""Geometric tasks: surface normals, depth, and L1 maps (keypoints, edges)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mtl_attack.tasks.base import (
    Meter,
    Task,
    check_metric_set,
    labels_at,
    masked_mean,
    prediction_at,
)
from mtl_attack.tasks.taskonomy_metrics import CosineMeter

ANGLE_BINS = 18000  # 0.01 degree histogram bins for the streaming median


class SurfaceNormal(Task):
    """``normal``: prediction (B, 3, H, W), target unit vectors with the zero vector = invalid.

    Loss: 1 - cos(normalize(pred), target), masked mean per sample. ``metric_set="taskonomy"``
    reports only the mean cosine similarity (the paper's Taskonomy metric).
    """

    name = "normal"
    channels = 3
    higher_is_better = {
        "angle_mean": False,
        "angle_median": False,
        "within_11_25": True,
        "within_22_5": True,
        "within_30": True,
    }

    def __init__(self, convention: str = "reference", metric_set: str = "nyuv2"):
        super().__init__(convention)
        self.metric_set = check_metric_set(metric_set)
        if metric_set == "taskonomy":
            self.higher_is_better = {"cosine_similarity": True}

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = labels_at(target, pred)
        valid = target.abs().sum(1) > 0
        # cos(normalize(pred), target) without materializing normalize(pred): the loss runs in
        # every attack step, and this form is ~2x cheaper on the CPU (same eps as F.normalize)
        norm = (pred * pred).sum(1).clamp_min(1e-24).sqrt()
        cos = (pred * target).sum(1) / norm
        return masked_mean(1.0 - cos, valid)

    def meter(self) -> Meter:
        if self.metric_set == "taskonomy":
            return CosineMeter()
        return AngleMeter(self.convention)


class AngleMeter(Meter):
    """Angles (degrees) between normalized prediction and target over all valid pixels.

    The mean and the threshold fractions are exact; the median comes from a 0.01-degree
    histogram (exact to 0.01 degrees, constant memory, and all-reducible). ``reference`` counts
    angles <= threshold in percent; ``libmtl`` counts angles < threshold as a fraction.
    """

    thresholds = {"within_11_25": 11.25, "within_22_5": 22.5, "within_30": 30.0}

    def __init__(self, convention: str):
        super().__init__()
        self.convention = convention

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = prediction_at(pred, target)
        valid = target.abs().sum(1) > 0  # (B, H, W)
        cos = (F.normalize(pred, dim=1) * F.normalize(target, dim=1)).sum(1)[valid]
        angle = torch.rad2deg(torch.acos(cos.double().clamp(-1.0, 1.0)))
        self._add("sum", angle.sum())
        self._add("count", torch.tensor(float(angle.numel())))
        bins = (angle * (ANGLE_BINS / 180.0)).long().clamp(0, ANGLE_BINS - 1)
        self._add("hist", torch.bincount(bins, minlength=ANGLE_BINS))
        for key, thr in self.thresholds.items():
            within = angle <= thr if self.convention == "reference" else angle < thr
            self._add(key, within.sum())

    def compute(self) -> dict[str, float]:
        if not self.state:
            return dict.fromkeys(SurfaceNormal.higher_is_better, math.nan)
        n = self.state["count"].clamp_min(1)
        cdf = self.state["hist"].cumsum(0)
        # like numpy.median: the middle value, or the mean of the two middle values
        ranks = torch.stack([((n - 1) // 2 + 1), (n // 2 + 1)])
        centers = (torch.searchsorted(cdf, ranks).double() + 0.5) * 180.0 / ANGLE_BINS
        scale = 100.0 if self.convention == "reference" else 1.0
        out = {
            "angle_mean": float(self.state["sum"] / n),
            "angle_median": float(centers.mean()),
        }
        out.update({k: float(self.state[k] / n) * scale for k in self.thresholds})
        return out


class Depth(Task):
    """``depth_zbuffer``: prediction (B, 1, H, W) in the target's units; target 0 = invalid.

    Loss: L1 over valid pixels, per sample. ``metric_set="taskonomy"`` reports only abs_err
    (on the log-normalized depth the Taskonomy transform produces); ``"cityscapes"`` with the
    ``libmtl`` convention only abs_err and rel_err, as LibMTL's ``examples/cityscapes``.
    """

    name = "depth_zbuffer"
    channels = 1
    higher_is_better = {
        "abs_err": False,
        "rel_err": False,
        "delta_1": True,
        "delta_2": True,
        "delta_3": True,
    }

    def __init__(self, convention: str = "reference", metric_set: str = "nyuv2"):
        super().__init__(convention)
        self.metric_set = check_metric_set(metric_set)
        if metric_set == "taskonomy":
            self.higher_is_better = {"abs_err": False}
        elif metric_set == "cityscapes" and convention == "libmtl":
            self.higher_is_better = {"abs_err": False, "rel_err": False}

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = labels_at(target, pred)
        return masked_mean((pred - target).abs(), target > 0)

    def meter(self) -> Meter:
        return DepthMeter(self.convention, tuple(self.higher_is_better))


class DepthMeter(Meter):
    """abs/rel error and delta < 1.25^k (in percent for ``reference``, fractions for ``libmtl``).

    ``reference``: abs/rel error are batch-size-weighted means of per-batch pixel means;
    ``libmtl``: means over all valid pixels of the dataset. Deltas are shares of all valid pixels
    with ratio = max(p / g, g / p) within 1.25^k:

    - ``reference`` reproduces the paper's code exactly (``pixel2pixel_metrics.py``): the ratio
      in the prediction's dtype, no guard, ``<=``. A negative prediction makes both quotients
      negative, so it counts as *within* every threshold; p = 0 gives g / 0 = inf (wrong).
    - ``libmtl`` (LibMTL reports no deltas; the correct definition): the prediction is clamped
      to 1e-6 so a non-positive depth counts as wrong; strictly ``<``.

    ``metrics`` selects the reported subset.
    """

    def __init__(self, convention: str, metrics: tuple[str, ...] = tuple(Depth.higher_is_better)):
        super().__init__()
        self.convention = convention
        self.metrics = metrics

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = prediction_at(pred, target)
        valid = target > 0
        p, g = pred[valid].double(), target[valid].double()
        n = p.numel()
        if n == 0:
            return
        abs_err, rel_err = (p - g).abs(), (p - g).abs() / g
        batch = float(pred.shape[0])
        if self.convention == "reference":
            self._add("abs_sum", abs_err.mean() * batch)
            self._add("rel_sum", rel_err.mean() * batch)
            self._add("weight", torch.tensor(batch))
        else:
            self._add("abs_sum", abs_err.sum())
            self._add("rel_sum", rel_err.sum())
            self._add("weight", torch.tensor(float(n)))
        for k, within in enumerate(self.within(pred[valid], target[valid]), start=1):
            self._add(f"delta_{k}", within.sum())
        self._add("pixels", torch.tensor(float(n)))

    def within(self, p: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
        """Per valid pixel, whether max(p/g, g/p) is within 1.25, 1.25^2, 1.25^3."""
        if self.convention == "reference":  # the paper's code, unguarded, in pred's dtype
            ratio = torch.maximum(p / g, g / p)
            return [ratio <= 1.25**k for k in (1, 2, 3)]
        p, g = p.double().clamp_min(1e-6), g.double()
        ratio = torch.maximum(p / g, g / p)
        return [ratio < 1.25**k for k in (1, 2, 3)]

    def compute(self) -> dict[str, float]:
        if not self.state:
            return dict.fromkeys(self.metrics, math.nan)
        w = self.state["weight"]
        scale = 100.0 if self.convention == "reference" else 1.0
        out = {
            "abs_err": float(self.state["abs_sum"] / w),
            "rel_err": float(self.state["rel_sum"] / w),
        }
        for k in (1, 2, 3):
            out[f"delta_{k}"] = float(self.state[f"delta_{k}"] / self.state["pixels"]) * scale
        return {k: out[k] for k in self.metrics}


class L1Map(Task):
    """A single-channel regression map scored by L1 (``keypoints2d``, ``edge_texture``).

    Target values equal to ``invalid`` (if given) are excluded from loss and metric.
    """

    channels = 1

    def __init__(
        self, name: str, metric: str, invalid: float | None = None, convention: str = "reference"
    ):
        super().__init__(convention)
        self.name = name
        self.metric = metric
        self.invalid = invalid
        self.higher_is_better = {metric: False}

    def valid(self, target: torch.Tensor) -> torch.Tensor:
        if self.invalid is None:
            return torch.ones_like(target, dtype=torch.bool)
        return target != self.invalid

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        target = labels_at(target, pred)
        return masked_mean((pred - target).abs(), self.valid(target))

    def meter(self) -> Meter:
        return L1Meter(self)


class L1Meter(Meter):
    """Batch-size-weighted mean of per-batch pixel-mean L1 errors (the reference convention);
    ``libmtl`` takes the mean over all valid pixels."""

    def __init__(self, task: L1Map):
        super().__init__()
        self.task = task

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred = prediction_at(pred, target)
        valid = self.task.valid(target)
        err = (pred - target).abs()[valid].double()
        if err.numel() == 0:
            return
        if self.task.convention == "reference":
            batch = float(pred.shape[0])
            self._add("sum", err.mean() * batch)
            self._add("weight", torch.tensor(batch))
        else:
            self._add("sum", err.sum())
            self._add("weight", torch.tensor(float(err.numel())))

    def compute(self) -> dict[str, float]:
        value = self.state["sum"] / self.state["weight"] if self.state else math.nan
        return {self.task.metric: float(value)}
