"""A small CPU-friendly ResNet cut into 5 coarse blocks (the default backbone)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from mtl_attack.models.backbones.base import Backbone
from mtl_attack.models.backbones.resnet_blocks import BasicBlock


class TinyResNet(Backbone):
    """Stem conv (stride 2) then four stages of ``depth`` basic blocks each.

    Coarse blocks: 0 = stem, 1 = stage 1 (stride 1), 2 = stage 2 (stride 2), 3 = stage 3
    (dilation 2), 4 = stage 4 (dilation 4). Output stride 4: a 64x64 image gives 16x16 features.

    Args:
        widths: output channels of the 5 coarse blocks.
        depth: basic blocks per stage (fine blocks per coarse block 1..4).
    """

    def __init__(self, widths: Sequence[int] = (16, 32, 48, 64, 96), depth: int = 1):
        super().__init__()
        if len(widths) != 5:
            raise ValueError(
                f"backbone.widths needs 5 entries (one per coarse block), got {widths}"
            )
        w = list(widths)
        stem = nn.Sequential(
            nn.Sequential(
                nn.Conv2d(3, w[0], 3, 2, 1, bias=False),
                nn.BatchNorm2d(w[0]),
                nn.ReLU(inplace=True),
            )
        )
        stages = [
            nn.Sequential(
                *[
                    BasicBlock(
                        w[i - 1] if j == 0 else w[i], w[i], stride if j == 0 else 1, dilation
                    )
                    for j in range(depth)
                ]
            )
            for i, stride, dilation in ((1, 1, 1), (2, 2, 1), (3, 1, 2), (4, 1, 4))
        ]
        self.blocks = nn.ModuleList([stem, *stages])
        self.channels = w
        self.output_stride = 4
