"""A vision task: output channels, a per-sample loss, streaming metrics and their directions.

Losses are masked means over the valid pixels of each sample, shape ``[B]``. Predictions may come
at any resolution. When it differs from the labels', the reference code's convention applies
(``eval.resolution=prediction``, models.md section 4): a loss compares the prediction with the
labels resized to it (:func:`labels_at`), a metric compares the labels with the prediction
resized to them (:func:`prediction_at`), both nearest neighbour, so an ignored pixel stays
ignored and no label value is invented. With ``eval.resolution=input`` the model upsamples its
outputs to the input (= label) size and nothing is resized here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F


class Meter(ABC):
    """Streams a metric over a whole dataset: call :meth:`update` per batch, then
    :meth:`compute`. All state lives in ``self.state`` (a dict of tensors of sums/counts) so that
    distributed evaluation can all-reduce it exactly."""

    def __init__(self):
        self.state: dict[str, torch.Tensor] = {}

    def _add(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().to("cpu", torch.float64)
        self.state[key] = self.state[key] + value if key in self.state else value.clone()

    @abstractmethod
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, float]: ...


class Task(ABC):
    """One dense prediction task.

    Attributes:
        name: the task's key in every ``dict[str, Tensor]`` (e.g. ``depth_zbuffer``).
        channels: prediction channels the head must output.
        higher_is_better: metric name -> direction (drives relative degradation).
        convention: ``reference`` (the paper's code) or ``libmtl``; see datasets.md.
    """

    name: str
    channels: int
    higher_is_better: dict[str, bool]

    def __init__(self, convention: str = "reference"):
        if convention not in ("reference", "libmtl"):
            raise ValueError(
                f"dataset.metrics must be 'reference' or 'libmtl', got {convention!r}"
            )
        self.convention = convention

    @abstractmethod
    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample loss, shape ``[B]``: a masked mean over the sample's valid pixels
        (0 for a sample without valid pixels)."""

    @abstractmethod
    def meter(self) -> Meter:
        """A fresh streaming metric accumulator."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, channels={self.channels})"


METRIC_SETS = ("nyuv2", "taskonomy", "cityscapes")


def check_metric_set(metric_set: str) -> str:
    """``nyuv2`` (also the synthetic benchmark's), ``taskonomy`` (datasets.md §5) or
    ``cityscapes`` (the nyuv2 definitions; LibMTL reports no depth deltas, docs/cityscapes.md)."""
    if metric_set not in METRIC_SETS:
        raise ValueError(f"metric_set must be one of {list(METRIC_SETS)}, got {metric_set!r}")
    return metric_set


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` per sample. Shape: (B, ...) -> (B,)."""
    mask = mask.to(values.dtype)
    dims = tuple(range(1, values.ndim))
    return (values * mask).sum(dims) / mask.sum(dims).clamp_min(1.0)


def labels_at(target: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """``target`` resized (nearest, as ``F.interpolate``'s default) to ``pred``'s spatial size.

    Shape: (B, H, W) or (B, C, H, W) -> (B, h, w) or (B, C, h, w) with (h, w) of ``pred``;
    the dtype is kept (integer labels round-trip exactly through float).
    """
    size = pred.shape[-2:]
    if target.shape[-2:] == size:
        return target
    planar = target.ndim == 3
    resized = F.interpolate((target[:, None] if planar else target).float(), size=size)
    resized = resized[:, 0] if planar else resized
    return resized.to(target.dtype)


def prediction_at(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``pred`` (B, C, h, w) resized (nearest) to ``target``'s spatial size (H, W)."""
    size = target.shape[-2:]
    return pred if pred.shape[-2:] == size else F.interpolate(pred, size=size)
