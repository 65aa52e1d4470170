"""Training data order that depends only on ``(seed, epoch)``, so a resumed run sees the same
batches as an uninterrupted one."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

#: mixes the epoch into the seed; any odd constant far above the number of epochs will do
_EPOCH_STRIDE = 1_000_003


def epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * _EPOCH_STRIDE + int(epoch)) % (2**63)


class EpochShuffle(Sampler[int]):
    """A fresh permutation of ``range(num_items)`` per epoch, seeded by ``(seed, epoch)``;
    under torchrun each of ``world_size`` ranks iterates its own disjoint shard of it.

    ``set_epoch(epoch, start)`` picks the epoch and skips its first ``start`` indices (a resumed
    run skips the batches it already trained on without loading them).
    """

    def __init__(self, num_items: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if num_items < world_size:
            raise ValueError(
                f"cannot shard {num_items} training images over {world_size} processes"
            )
        self.num_items = int(num_items)
        self.seed = int(seed)
        self.rank, self.world_size = int(rank), int(world_size)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = int(epoch), int(start)

    def permutation(self) -> torch.Tensor:
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        return torch.randperm(self.num_items, generator=gen)

    def shard(self) -> torch.Tensor:
        """This rank's part of the epoch's permutation (every rank draws the same permutation,
        cut to a multiple of the world size, and takes every ``world_size``-th index)."""
        usable = self.num_items - self.num_items % self.world_size
        return self.permutation()[:usable][self.rank :: self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.shard()[self.start :].tolist())

    def __len__(self) -> int:
        return self.num_items // self.world_size - self.start
