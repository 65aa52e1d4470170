"""Per-task prediction heads."""

from __future__ import annotations

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
