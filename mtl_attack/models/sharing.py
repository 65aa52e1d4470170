"""Sharing layouts: which tasks share which backbone blocks (TreeMTL-style trees).

A layout over B coarse blocks and T tasks gives, for every block, a partition of the task
indices; each block's partition refines the previous one, so the model is a tree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Group = tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    """Per block, a partition of ``range(num_tasks)`` into groups of task indices.

    Groups are stored sorted (by their smallest task index), so equal trees compare equal.
    """

    blocks: tuple[tuple[Group, ...], ...]
    num_tasks: int

    def __post_init__(self):
        canon = tuple(
            tuple(sorted((tuple(sorted(g)) for g in part), key=lambda g: g[:1]))
            for part in self.blocks
        )
        object.__setattr__(self, "blocks", canon)
        _validate(self.blocks, self.num_tasks)

    @classmethod
    def from_lists(cls, blocks: Sequence[Sequence[Sequence[int]]], num_tasks: int) -> Layout:
        return cls(tuple(tuple(tuple(g) for g in part) for part in blocks), num_tasks)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def as_lists(self) -> list[list[list[int]]]:
        """One list per block, each a list of task-index lists."""
        return [[list(g) for g in part] for part in self.blocks]

    def group_of(self, block: int, task: int) -> Group:
        return next(g for g in self.blocks[block] if task in g)


def _validate(blocks, num_tasks: int) -> None:
    if num_tasks < 1 or not blocks:
        raise ValueError("a layout needs at least one task and one block")
    everyone = set(range(num_tasks))
    for b, part in enumerate(blocks):
        seen = [t for g in part for t in g]
        if any(len(g) == 0 for g in part):
            raise ValueError(f"block {b}: empty task group in {part}")
        if sorted(seen) != sorted(everyone):
            missing, extra = everyone - set(seen), set(seen) - everyone
            repeated = {t for t in seen if seen.count(t) > 1}
            raise ValueError(
                f"block {b}: groups {list(map(list, part))} must cover tasks 0..{num_tasks - 1} "
                f"exactly once (missing {sorted(missing)}, unknown {sorted(extra)}, "
                f"repeated {sorted(repeated)})"
            )
        if b > 0:
            for g in part:
                parents = {p for p in blocks[b - 1] if set(g) & set(p)}
                if len(parents) != 1 or not set(g) <= set(next(iter(parents))):
                    raise ValueError(
                        f"block {b}: group {list(g)} merges tasks that were split in block "
                        f"{b - 1} ({[list(p) for p in blocks[b - 1]]}); a later block may only "
                        "split groups"
                    )


def all_shared(num_tasks: int, num_blocks: int) -> Layout:
    """Every task shares every backbone block (hard parameter sharing); layout index 0."""
    return Layout(tuple((tuple(range(num_tasks)),) for _ in range(num_blocks)), num_tasks)
