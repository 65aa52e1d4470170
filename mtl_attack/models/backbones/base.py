"""The block contract every backbone follows."""

from __future__ import annotations

from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Backbone(nn.Module):
    """A feature extractor cut into coarse blocks.

    ``blocks[i]`` is an ``nn.Sequential`` of the fine blocks of coarse block i; running the
    blocks in order maps a normalized image (B, 3, H, W) to features of ``channels[-1]`` channels
    at ``1/output_stride`` resolution. A :class:`~mtl_attack.models.tree.BranchedTrunk` copies
    blocks out of a backbone instance (so pretrained weights reach every branch), and never runs
    the backbone itself.
    """

    blocks: nn.ModuleList
    channels: list[int]
    output_stride: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def fine_blocks(self) -> list[int]:
        """Number of fine blocks in each coarse block."""
        return [len(b) for b in self.blocks]

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x
