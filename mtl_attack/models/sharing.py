"""Sharing layouts: which tasks share which backbone blocks (TreeMTL-style trees).

A layout over B coarse blocks and T tasks gives, for every block, a partition of the task
indices; each block's partition refines the previous one, so the model is a tree.
"""

from __future__ import annotations

import functools
import itertools
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


def all_shared(num_tasks: int, num_blocks: int, task_names: Sequence[str] | None = None) -> Layout:
    """Every task shares every backbone block (hard parameter sharing); layout index 0.

    ``task_names`` is accepted (and unused) so every preset has the runner's call signature.
    """
    return Layout(tuple((tuple(range(num_tasks)),) for _ in range(num_blocks)), num_tasks)


def independent(
    num_tasks: int, num_blocks: int, task_names: Sequence[str] | None = None
) -> Layout:
    """Every task has its own copy of every block: T single-task networks side by side."""
    return branch(num_tasks, num_blocks, branch_at=0)


def branch(
    num_tasks: int,
    num_blocks: int,
    branch_at: int,
    task_names: Sequence[str] | None = None,
) -> Layout:
    """All tasks share coarse blocks ``0..branch_at-1``; each task owns blocks from ``branch_at``.

    ``branch_at=0`` is :func:`independent`, ``branch_at=num_blocks`` is :func:`all_shared`.
    """
    if not isinstance(branch_at, int) or not 0 <= branch_at <= num_blocks:
        raise ValueError(
            f"sharing.branch_at={branch_at!r} must be an integer in 0..{num_blocks} "
            f"(the backbone has {num_blocks} coarse blocks)"
        )
    shared = (tuple(range(num_tasks)),)
    alone = tuple((t,) for t in range(num_tasks))
    return Layout(tuple(shared if b < branch_at else alone for b in range(num_blocks)), num_tasks)


def select_layout(
    num_tasks: int,
    num_blocks: int,
    index: int | None = None,
    blocks: Sequence[Sequence[Sequence[int | str]]] | None = None,
    task_names: Sequence[str] | None = None,
) -> Layout:
    """``sharing=layout``: a layout by its TreeMTL index or spelled out block by block.

    Args:
        index: position in :func:`enumerate_layouts` (``num_tasks``, ``num_blocks``).
        blocks: one entry per coarse block, each a list of task groups, each group a list of
            task names (from ``task_names``) or task indices, e.g.
            ``[[[seg, depth, normal]], [[seg, depth], [normal]], ...]``.
    """
    if (index is None) == (blocks is None):
        raise ValueError(
            "sharing=layout needs exactly one of sharing.index=K (TreeMTL layout index) or "
            "sharing.blocks=[...] (one list of task groups per block)"
        )
    if index is not None:
        return layout_at(index, num_tasks, num_blocks)
    if len(blocks) != num_blocks:
        raise ValueError(
            f"sharing.blocks has {len(blocks)} entries but the backbone has {num_blocks} coarse "
            "blocks; give one list of task groups per block"
        )
    ids = [[[_task_id(t, num_tasks, task_names) for t in g] for g in part] for part in blocks]
    return Layout.from_lists(ids, num_tasks)


def _task_id(task: int | str, num_tasks: int, task_names: Sequence[str] | None) -> int:
    if isinstance(task, int):
        return task
    names = list(task_names or [])
    if task not in names:
        raise ValueError(
            f"sharing.blocks names task {task!r}, which is not one of this run's tasks {names}; "
            f"use those names or indices 0..{num_tasks - 1}"
        )
    return names.index(task)


def layout_at(index: int, num_tasks: int, num_blocks: int) -> Layout:
    """The layout with TreeMTL index ``index`` (0 = all shared)."""
    layouts = enumerate_layouts(num_tasks, num_blocks)
    if not isinstance(index, int) or not 0 <= index < len(layouts):
        raise ValueError(
            f"sharing.index={index!r} is out of range: {num_tasks} tasks over {num_blocks} "
            f"blocks have {len(layouts)} layouts (indices 0..{len(layouts) - 1})"
        )
    return layouts[index]


def enumerate_layouts(num_tasks: int, num_blocks: int) -> list[Layout]:
    """Every layout of ``num_tasks`` tasks over ``num_blocks`` blocks, in TreeMTL's order.

    TreeMTL (Zhang et al., "A Tree-Structured Multi-Task Model Recommender", AutoML 2022)
    enumerates depth first from the all-shared layout: for every block i from the last cut
    position on, for every group of two or more tasks in block i (in the order the groups were
    created), for every split of the group into two non-empty parts (the parts that move away
    from the group's smallest task, in binary-counting order), the split is applied to blocks
    i..B-1; a layout not seen before is appended and explored from cut position i. Index 0 is
    all shared. Counts for B = 5: 6, 51, 561, 7556 layouts for T = 2, 3, 4, 5.
    """
    return list(_enumerate(num_tasks, num_blocks))


def treemtl_order(index: int, num_tasks: int, num_blocks: int) -> list[list[Group]]:
    """The task groups of layout ``index`` per block in the order TreeMTL's state lists them.

    TreeMTL's ``apply_cut`` removes the cut group from blocks i..B-1 and appends its two parts
    (the part without the group's smallest task first) at the end of each block's list; its
    models number their trunk nodes in this order (models.md section 3), e.g. index 20 of 3
    tasks: ``[[(0, 1, 2)], [(1, 2), (0,)], [(1, 2), (0,)], [(0,), (2,), (1,)], ...]``.
    """
    states = _states(num_tasks, num_blocks)
    if not isinstance(index, int) or not 0 <= index < len(states):
        layout_at(index, num_tasks, num_blocks)  # raises the out-of-range message
    return [list(part) for part in states[index]]


@functools.lru_cache(maxsize=16)
def _enumerate(num_tasks: int, num_blocks: int) -> tuple[Layout, ...]:
    return tuple(Layout(_canonical(s), num_tasks) for s in _states(num_tasks, num_blocks))


@functools.lru_cache(maxsize=16)
def _states(num_tasks: int, num_blocks: int) -> tuple[tuple[tuple[Group, ...], ...], ...]:
    if num_tasks < 1 or num_blocks < 1:
        raise ValueError(f"need at least one task and one block, got {num_tasks}, {num_blocks}")
    # a state is a list (per block) of lists of groups, in creation order: the order matters
    # because it decides which cut is explored first
    root = [[tuple(range(num_tasks))] for _ in range(num_blocks)]
    found, seen = [root], {_canonical(root)}

    def explore(state: list[list[Group]], lowest_cut: int) -> None:
        for i in range(lowest_cut, num_blocks):
            for group in state[i]:
                for moved, kept in _two_way_splits(group):
                    cut = [list(part) for part in state[:i]] + [
                        [g for g in part if g != group] + [moved, kept] for part in state[i:]
                    ]
                    key = _canonical(cut)
                    if key not in seen:
                        seen.add(key)
                        found.append(cut)
                        explore(cut, i)

    explore(root, 0)
    return tuple(tuple(tuple(part) for part in state) for state in found)


def _canonical(state: Sequence[Sequence[Group]]) -> tuple[tuple[Group, ...], ...]:
    return tuple(tuple(sorted(part)) for part in state)


def _two_way_splits(group: Group) -> list[tuple[Group, Group]]:
    """Splits of a sorted group into (moved, kept), ``kept`` holding the smallest task.

    Ordered like counting down in binary over the other members (first member = most
    significant bit), e.g. (0, 1, 2) -> ((1, 2), (0,)), ((1,), (0, 2)), ((2,), (0, 1)).
    """
    splits = []
    for mask in itertools.product((True, False), repeat=len(group) - 1):
        if any(mask):
            moved = tuple(t for t, m in zip(group[1:], mask) if m)
            kept = (group[0], *(t for t, m in zip(group[1:], mask) if not m))
            splits.append((moved, kept))
    return splits


def sharing_degree(layout: Layout) -> float:
    """Mean over task pairs of the fraction of backbone blocks the pair shares.

    1.0 for all shared, 0.0 for independent (and 0.0 for a single task: nothing is shared).
    """
    pairs = list(itertools.combinations(range(layout.num_tasks), 2))
    if not pairs:
        return 0.0
    shared = sum(
        sum(j in layout.group_of(b, i) for b in range(layout.num_blocks)) for i, j in pairs
    )
    return shared / (len(pairs) * layout.num_blocks)
