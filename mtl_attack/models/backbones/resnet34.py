"""DeepLab-ResNet-34 (dilated, output stride 8) with torchvision-compatible parameter names."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from mtl_attack.models.backbones.base import Backbone
from mtl_attack.models.backbones.resnet_blocks import BasicBlock

log = logging.getLogger("mtl_attack")

#: (fine blocks, width, stride, dilation) of layer1..layer4 (method.md section 5)
STAGES = ((3, 64, 1, 1), (4, 128, 2, 1), (6, 256, 1, 2), (3, 512, 1, 4))


class Stem(nn.Module):
    """conv 7x7 stride 2 -> BN -> ReLU -> maxpool 3x3 stride 2 (ceil mode): 1/4 resolution.

    Attribute names are torchvision's (``conv1``, ``bn1``) so checkpoints map one to one.
    """

    def __init__(self, width: int = 64):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1, ceil_mode=True)

    def forward(self, x):
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))


class DeepLabResNet34(Backbone):
    """ResNet-34 (He et al. 2016) made dense as in DeepLab (Chen et al. 2018), cut into 5 blocks.

    Coarse blocks (fine blocks): 0 = stem (1), 1 = layer1 (3), 2 = layer2 (4, stride 2),
    3 = layer3 (6, dilation 2), 4 = layer4 (3, dilation 4): 17 fine blocks, output stride 8,
    512 output channels. A 321x321 image gives 41x41 features.

    Parameter names map to torchvision's ``resnet34`` by :func:`torchvision_key`
    (``blocks.0.0.conv1.weight`` <-> ``conv1.weight``, ``blocks.3.2.bn1.bias`` <->
    ``layer3.2.bn1.bias``); torchvision's ``fc`` is unused.

    Args:
        pretrained: path of a local torchvision-format ResNet-34 state dict (``.pth``), loaded
            with ``weights_only=True`` before the tree copies the blocks; None = random init.
    """

    def __init__(self, pretrained: str | None = None):
        super().__init__()
        stages, in_ch = [], 64
        for depth, width, stride, dilation in STAGES:
            stages.append(
                nn.Sequential(
                    *[
                        BasicBlock(
                            in_ch if j == 0 else width, width, stride if j == 0 else 1, dilation
                        )
                        for j in range(depth)
                    ]
                )
            )
            in_ch = width
        self.blocks = nn.ModuleList([nn.Sequential(Stem()), *stages])
        self.channels = [64, 64, 128, 256, 512]
        self.output_stride = 8
        self.pretrained_report: dict[str, list[str]] | None = None
        if pretrained:
            self.pretrained_report = load_torchvision_checkpoint(self, pretrained)


def torchvision_key(name: str) -> str:
    """Our state-dict key -> torchvision ``resnet34`` key."""
    match = re.fullmatch(r"blocks\.(\d)\.(.+)", name)
    if match is None:
        raise KeyError(f"{name!r} is not a DeepLabResNet34 backbone key")
    block, rest = int(match[1]), match[2]
    if block == 0:
        return rest.removeprefix("0.")
    return f"layer{block}.{rest}"


def torchvision_state_dict(backbone: DeepLabResNet34) -> dict[str, torch.Tensor]:
    """The backbone's weights under torchvision's key names (without ``fc``)."""
    return {torchvision_key(k): v for k, v in backbone.state_dict().items()}


def load_torchvision_checkpoint(backbone: DeepLabResNet34, path: str | Path) -> dict[str, list]:
    """Copy a torchvision-format ResNet-34 state dict from ``path`` into ``backbone``.

    Returns (and logs) ``{"loaded": [...], "missing": [...], "unused": [...]}`` in torchvision
    key names: ``missing`` are backbone tensors the file lacks (they keep their random init),
    ``unused`` are file entries the backbone has no place for (e.g. ``fc.weight``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"backbone.pretrained={path}: no such file; give a local torchvision resnet34 "
            "state dict (.pth) or backbone.pretrained=null for random init"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    for wrapper in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    state = {k.removeprefix("module."): v for k, v in state.items()}
    ours = {torchvision_key(k): k for k in backbone.state_dict()}
    loaded = sorted(k for k in ours if k in state)
    if not loaded:
        raise ValueError(
            f"backbone.pretrained={path} shares no key with torchvision's resnet34 "
            f"(file keys start {sorted(state)[:3]}); is it a resnet34 state dict?"
        )
    target = backbone.state_dict()
    for key in loaded:
        if state[key].shape != target[ours[key]].shape:
            raise ValueError(
                f"backbone.pretrained={path}: {key} has shape {tuple(state[key].shape)}, the "
                f"backbone expects {tuple(target[ours[key]].shape)}; is it a resnet34 state dict?"
            )
    backbone.load_state_dict({ours[k]: state[k] for k in loaded}, strict=False)
    report = {
        "loaded": loaded,
        "missing": sorted(k for k in ours if k not in state),
        "unused": sorted(k for k in state if k not in ours),
    }
    log.info(
        "backbone.pretrained=%s: loaded %d tensors; missing (random init) %s; unused %s",
        path,
        len(loaded),
        report["missing"] or "none",
        report["unused"] or "none",
    )
    return report
