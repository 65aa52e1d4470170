"""A vision task: output channels, a per-sample loss, streaming metrics and their directions.

Predictions reach a task at the label resolution (the model upsamples its outputs to the input
size, bilinearly); losses are masked means over the valid pixels of each sample, shape ``[B]``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import torch


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
