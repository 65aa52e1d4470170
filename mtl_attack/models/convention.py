"""Input conventions: what a model expects instead of the project's images in [0, 1] RGB.

The project's tensor contract keeps images float in [0, 1], RGB, so that an L-inf budget
``eps`` in pixel levels is ``eps / 255`` for every model (STYLE.md practice 6). A model trained
on another convention gets it from its first layer, :class:`InputConvention`; attacks never see
the model's own scale, so eps is never rescaled.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: per-channel means (B, G, R) of the paper's code (Caffe DeepLab), subtracted in the 0-255 scale
CAFFE_BGR_MEAN = (104.00698793, 116.66876762, 122.67891434)

CHANNEL_ORDERS = ("rgb", "bgr")


class InputConvention(nn.Module):
    """``x -> (reorder(x * scale) - mean) / std`` per channel.

    Args:
        mean, std: per channel, in the model's scale and channel order (e.g. ImageNet's
            (0.485, 0.456, 0.406) / (0.229, 0.224, 0.225) for torchvision models, or
            :data:`CAFFE_BGR_MEAN` with std 1 for the paper's DeepLab).
        scale: 1 (images in [0, 1]) or 255 (images in 0-255).
        channel_order: ``rgb`` or ``bgr`` (the model's first input channel is blue).

    The buffers are ``mean`` and ``std`` so a state dict of the former ``Normalize`` layer loads.

    Shape: (B, 3, H, W) in [0, 1], RGB -> (B, 3, H, W) in the model's convention.
    """

    def __init__(
        self,
        mean: Sequence[float] = (0.0, 0.0, 0.0),
        std: Sequence[float] = (1.0, 1.0, 1.0),
        scale: float = 1.0,
        channel_order: str = "rgb",
    ):
        super().__init__()
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(
                f"model.input.channel_order must be one of {list(CHANNEL_ORDERS)}, "
                f"got {channel_order!r}"
            )
        if scale not in (1, 255):
            raise ValueError(f"model.input.scale must be 1 or 255, got {scale!r}")
        if len(mean) != 3 or len(std) != 3 or any(s <= 0 for s in std):
            raise ValueError(
                f"model.input.mean and model.input.std need 3 values each (std > 0), got "
                f"mean={list(mean)} std={list(std)}"
            )
        self.scale = float(scale)
        self.channel_order = channel_order
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale != 1.0:
            x = x * self.scale
        if self.channel_order == "bgr":
            x = x.flip(1)
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"scale={self.scale:g}, channel_order={self.channel_order}"
