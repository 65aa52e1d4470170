"""Models: a backbone cut into blocks x a sharing layout (tree) x per-task heads, or a model a
user brings (``model=external``: any module; ``model=treemtl``: the paper's checkpoints)."""

from typing import Any

from torch import nn

from mtl_attack.models.convention import CAFFE_BGR_MEAN, InputConvention
from mtl_attack.models.external import ExternalModel, import_external, wrap_model
from mtl_attack.models.sharing import (
    Layout,
    all_shared,
    branch,
    enumerate_layouts,
    independent,
    select_layout,
    sharing_degree,
    treemtl_order,
)
from mtl_attack.models.tree import BranchedTrunk, MultiTaskModel, sharing_stats
from mtl_attack.models.treemtl import load_treemtl

__all__ = [
    "CAFFE_BGR_MEAN",
    "BranchedTrunk",
    "ExternalModel",
    "InputConvention",
    "Layout",
    "MultiTaskModel",
    "all_shared",
    "branch",
    "describe_model",
    "enumerate_layouts",
    "import_external",
    "independent",
    "load_treemtl",
    "select_layout",
    "sharing_degree",
    "sharing_stats",
    "treemtl_order",
    "wrap_model",
]


def describe_model(model: nn.Module) -> dict[str, Any]:
    """``results.json["model"]``: sharing statistics of a tree model (see :func:`sharing_stats`),
    the parameter count of any other module, and ``imported`` (kind, checkpoint file, sha256)
    for a model built from a user's weights file."""
    if isinstance(model, MultiTaskModel):
        stats = sharing_stats(model)
    else:
        stats = {
            "params_total": sum(p.numel() for p in model.parameters()),
            "params_shared": None,
            "layout": None,
            "sharing_degree": None,
        }
    source = getattr(model, "source", None)
    if source is not None:
        stats["imported"] = dict(source)
    return stats
