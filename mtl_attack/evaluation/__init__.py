"""Evaluation: per-task metrics, relative degradation, transfer matrix, metric names."""

from mtl_attack.evaluation.degradation import (
    relative_degradation,
    summarize,
    transfer_matrix,
)
from mtl_attack.evaluation.evaluate import evaluate, split_batch
from mtl_attack.evaluation.flags import sanity_checks, sanity_flags
from mtl_attack.evaluation.keys import flatten, metric_key
from mtl_attack.evaluation.robustness import (
    attack_label,
    evaluate_attack,
    evaluate_robustness,
    evaluate_views,
    transfer_matrices,
)
from mtl_attack.evaluation.verdict import verdicts

__all__ = [
    "attack_label",
    "evaluate",
    "evaluate_attack",
    "evaluate_views",
    "evaluate_robustness",
    "flatten",
    "metric_key",
    "relative_degradation",
    "sanity_checks",
    "sanity_flags",
    "split_batch",
    "summarize",
    "transfer_matrices",
    "transfer_matrix",
    "verdicts",
]
