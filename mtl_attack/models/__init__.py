"""Models: a backbone cut into blocks x a sharing layout (tree) x per-task heads."""

from mtl_attack.models.sharing import Layout, all_shared
from mtl_attack.models.tree import BranchedTrunk, MultiTaskModel

__all__ = ["BranchedTrunk", "Layout", "MultiTaskModel", "all_shared"]
