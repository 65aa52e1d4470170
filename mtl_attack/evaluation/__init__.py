"""Evaluation: per-task metrics, relative degradation, metric names."""

from mtl_attack.evaluation.evaluate import evaluate, split_batch
from mtl_attack.evaluation.keys import flatten, metric_key

__all__ = ["evaluate", "flatten", "metric_key", "split_batch"]
