"""Per-task prediction heads."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn


class LightHead(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv1x1: a cheap dense head for the tiny backbone.

    Shape: (B, in_channels, h, w) -> (B, out_channels, h, w).
    """

    def __init__(self, in_channels: int, out_channels: int, hidden: int = 32):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, out_channels, 1),
        )

    def forward(self, x):
        return self.net(x)


class ASPPHead(nn.Module):
    """DeepLab-v2 atrous spatial pyramid pooling head, one per task (method.md section 5).

    Four parallel branches with dilation ``rates`` (6, 12, 18, 24), each conv3x3 (dilated) ->
    ``hidden``, ReLU, Dropout, conv1x1 -> ``hidden``, ReLU, Dropout, conv1x1 -> out_channels;
    the branch outputs are summed (Chen et al., "DeepLab", TPAMI 2018, ASPP-L).

    Shape: (B, in_channels, h, w) -> (B, out_channels, h, w).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int = 1024,
        rates: Sequence[int] = (6, 12, 18, 24),
        dropout: float = 0.5,
    ):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(in_channels, hidden, 3, padding=r, dilation=r),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Conv2d(hidden, hidden, 1),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Conv2d(hidden, out_channels, 1),
            )
            for r in rates
        )

    def forward(self, x):
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out
