"""Models: a backbone cut into blocks x a sharing layout (tree) x per-task heads."""

from mtl_attack.models.sharing import (
    Layout,
    all_shared,
    branch,
    enumerate_layouts,
    independent,
    select_layout,
    sharing_degree,
)
from mtl_attack.models.tree import BranchedTrunk, MultiTaskModel, sharing_stats

__all__ = [
    "BranchedTrunk",
    "Layout",
    "MultiTaskModel",
    "all_shared",
    "branch",
    "enumerate_layouts",
    "independent",
    "select_layout",
    "sharing_degree",
    "sharing_stats",
]
