"""The multi-task model: normalization, a tree of backbone blocks, per-task heads."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from mtl_attack.models.backbones.base import Backbone
from mtl_attack.models.convention import InputConvention
from mtl_attack.models.sharing import Group, Layout, sharing_degree


def node_name(block: int, group: Group) -> str:
    return f"b{block}_t{'-'.join(map(str, group))}"


class BranchedTrunk(nn.Module):
    """One copy of coarse block b per task group of the layout at block b.

    Each node runs exactly once per forward, on its parent's output (the node of the previous
    block whose group contains it). ``forward`` returns one feature map per task index.
    """

    def __init__(self, backbone: Backbone, layout: Layout):
        super().__init__()
        if layout.num_blocks != backbone.num_blocks:
            raise ValueError(
                f"layout has {layout.num_blocks} blocks but the backbone has {backbone.num_blocks}"
            )
        self.layout = layout
        self.out_channels = backbone.channels[-1]
        self.nodes = nn.ModuleDict(
            {
                node_name(b, g): copy.deepcopy(backbone.blocks[b])
                for b, part in enumerate(layout.blocks)
                for g in part
            }
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features: dict[Group, torch.Tensor] = {}
        for b, part in enumerate(self.layout.blocks):
            step = {}
            for g in part:
                parent = x if b == 0 else features[self.layout.group_of(b - 1, g[0])]
                step[g] = self.nodes[node_name(b, g)](parent)
            features = step
        last = self.layout.num_blocks - 1
        return [features[self.layout.group_of(last, t)] for t in range(self.layout.num_tasks)]


class MultiTaskModel(nn.Module):
    """``model(images) -> dict[task, prediction]``.

    Images are float (B, 3, H, W) in [0, 1], RGB. With ``upsample`` (``eval.resolution=input``)
    every prediction is upsampled (bilinear) to (B, C_task, H, W), the input resolution, which
    is also the label resolution; without it (``eval.resolution=prediction``, the paper's code)
    predictions keep the heads' resolution (1/8 for DeepLab) and the tasks resize labels.

    Args:
        backbone: block template (weights are copied into every tree node).
        layout: which tasks share which blocks; task i of the layout is ``task_channels``' i-th.
        task_channels: task name -> prediction channels (ordered like the layout's tasks).
        head: ``head(in_channels, out_channels) -> nn.Module``, called once per task.
        normalize: the input convention (first layer); default: the backbone's mean and std
            on [0, 1] RGB images.
        upsample: upsample predictions to the input size.
    """

    def __init__(
        self,
        backbone: Backbone,
        layout: Layout,
        task_channels: dict[str, int],
        head: Callable[[int, int], nn.Module],
        normalize: InputConvention | None = None,
        upsample: bool = True,
    ):
        super().__init__()
        if layout.num_tasks != len(task_channels):
            raise ValueError(f"layout is for {layout.num_tasks} tasks, got {list(task_channels)}")
        self.task_names = list(task_channels)
        self.normalize = normalize or InputConvention(backbone.mean, backbone.std)
        self.upsample = upsample
        self.trunk = BranchedTrunk(backbone, layout)
        self.heads = nn.ModuleDict(
            {t: head(self.trunk.out_channels, c) for t, c in task_channels.items()}
        )

    @property
    def layout(self) -> Layout:
        return self.trunk.layout

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.trunk(self.normalize(images))
        size = images.shape[-2:]
        out = {}
        for name, feat in zip(self.task_names, feats):
            pred = self.heads[name](feat)
            if self.upsample and pred.shape[-2:] != size:
                pred = F.interpolate(pred, size=size, mode="bilinear", align_corners=False)
            out[name] = pred
        return out


def sharing_stats(model: MultiTaskModel) -> dict:
    """Parameter counts and sharing of a model, for ``results.json["model"]`` and the logger.

    ``params_shared`` counts parameters of trunk nodes used by two or more tasks (each counted
    once); ``sharing_degree`` is the mean over task pairs of the fraction of blocks they share.
    """
    layout = model.layout
    shared = sum(
        p.numel()
        for b, part in enumerate(layout.blocks)
        for g in part
        if len(g) > 1
        for p in model.trunk.nodes[node_name(b, g)].parameters()
    )
    return {
        "params_total": sum(p.numel() for p in model.parameters()),
        "params_shared": shared,
        "layout": layout.as_lists(),
        "sharing_degree": sharing_degree(layout),
    }
