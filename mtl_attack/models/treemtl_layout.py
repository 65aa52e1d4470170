"""Which TreeMTL layout a ``Deeplab_ASPP_Layout`` checkpoint holds, and its node order.

A state dict alone tells only how many trunk nodes each fine block has, and which of them are
the stem or have a projection: layouts that differ only in which tasks go together (e.g. 47, 49,
50 of 3 tasks) look alike, so the older file format needs ``model.layout_index``. The later
format pickles the ``main.layout.Layout`` object; :class:`StoredLayout` reads its task sets.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mtl_attack.models.files import preview
from mtl_attack.models.sharing import Group, Layout, enumerate_layouts, treemtl_order

#: TreeMTL's ``coarse_to_fined`` mapping for ResNet-34: coarse block -> its fine blocks
FINE_BLOCKS = ((0,), (1, 2, 3), (4, 5, 6, 7), (8, 9, 10, 11, 12, 13), (14, 15, 16))
NUM_COARSE, NUM_FINE = 5, 17
PROJECTIONS = (4, 8, 14)  # fine blocks whose residual has a 1x1 projection (``ds``)

NODE_KEY = re.compile(r"backbone\.mtl_blocks\.(\d+)\.")


class StoredLayout:
    """Stand-in for a pickled ``main.layout.Layout``: keeps ``T``, ``B`` and ``state`` (per block,
    a list of task-index sets) and drops the rest. Created only by the ``weights_only``
    unpickler, so its state holds nothing but tensors and plain values."""

    T: int | None = None
    B: int | None = None
    state: Any = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, dict):
            self.T, self.B, self.state = state.get("T"), state.get("B"), state.get("state")


ALLOWED_GLOBALS = [(StoredLayout, "main.layout.Layout")]


def resolve_layout(
    state: Mapping[str, torch.Tensor],
    stored: StoredLayout | None,
    num_tasks: int,
    layout_index: int | None,
    path: str | Path,
) -> tuple[int | None, list[list[Group]]]:
    """(layout index, task groups per coarse block in TreeMTL's order), checked against the
    trunk's node structure and, in the later format, against the stored layout."""
    signature = file_signature(state)
    if stored is not None:
        order = stored_order(stored, num_tasks, path)
        index = index_of(order, num_tasks)
        if layout_index is not None and layout_index != index:
            raise ValueError(
                f"model.checkpoint={path} stores TreeMTL layout index {index} "
                f"({[[list(g) for g in p] for p in order]}) but model.layout_index={layout_index};"
                f" set model.layout_index={index} (or null to read it from the file)"
            )
    elif layout_index is None:
        raise ValueError(
            f"model.checkpoint={path} is in the older format, which does not record its layout; "
            f"set model.layout_index (layouts with its trunk structure: "
            f"{preview(fitting(signature, num_tasks), 12)})"
        )
    else:
        index, order = layout_index, treemtl_order(layout_index, num_tasks, NUM_COARSE)
    if node_signature(order) != signature:
        raise ValueError(
            f"model.checkpoint={path} has {len(signature)} trunk nodes that do not fit "
            f"model.layout_index={index} of {num_tasks} tasks ({len(node_signature(order))} "
            f"nodes); layouts that fit: {preview(fitting(signature, num_tasks), 12)}"
        )
    return index, order


def stored_order(stored: StoredLayout, num_tasks: int, path: str | Path) -> list[list[Group]]:
    """A pickled layout (17 fine or 5 coarse blocks of task sets) -> coarse groups in order."""
    blocks = stored.state if isinstance(stored.state, list) else []
    if len(blocks) == NUM_FINE:
        blocks = [blocks[fine[0]] for fine in FINE_BLOCKS]
    groups = [[tuple(sorted(int(t) for t in s)) for s in part] for part in blocks]
    try:
        Layout(tuple(tuple(p) for p in groups), num_tasks)
    except (ValueError, TypeError) as err:
        raise ValueError(
            f"model.checkpoint={path}: its stored layout {stored.state!r:.200} is not a "
            f"{NUM_COARSE}- or {NUM_FINE}-block layout of {num_tasks} tasks ({err})"
        ) from None
    return groups


def index_of(order: Sequence[Sequence[Group]], num_tasks: int) -> int:
    target = Layout(tuple(tuple(p) for p in order), num_tasks)
    return enumerate_layouts(num_tasks, NUM_COARSE).index(target)


def node_indices(order: Sequence[Sequence[Group]]) -> dict[tuple[int, Group], int]:
    """``(fine block, group) -> i`` of ``backbone.mtl_blocks.{i}``: nodes are numbered fine
    block by fine block, groups in the layout's state order (models.md sections 2-3)."""
    indices: dict[tuple[int, Group], int] = {}
    for coarse, groups in enumerate(order):
        for fine in FINE_BLOCKS[coarse]:
            for group in groups:
                indices[(fine, tuple(group))] = len(indices)
    return indices


def _kind(fine: int) -> str:
    return "stem" if fine == 0 else "ds" if fine in PROJECTIONS else "block"


def node_signature(order: Sequence[Sequence[Group]]) -> list[str]:
    """Per trunk node, in file order: ``stem``, ``ds`` (a block with a projection) or
    ``block``: all that a state dict tells about its layout."""
    return [_kind(fine) for fine, _ in node_indices(order)]


def file_signature(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The same, read from a state dict's ``backbone.mtl_blocks.{i}.residual_block.*`` keys."""
    kinds: dict[int, str] = {}
    for key in state:
        found = NODE_KEY.match(key)
        if found:
            rest = key[found.end() :].removeprefix("residual_block.")
            kind = "stem" if rest.startswith("0.") else "ds" if rest.startswith("ds.") else None
            kinds[int(found[1])] = kind or kinds.get(int(found[1]), "block")
    return [kinds.get(i, "missing") for i in range(max(kinds, default=-1) + 1)]


def fitting(signature: list[str], num_tasks: int) -> list[int]:
    """Layout indices whose trunk has this node structure (the older format cannot tell apart
    layouts that differ only in which tasks go together)."""
    count = len(enumerate_layouts(num_tasks, NUM_COARSE))
    return [
        i
        for i in range(count)
        if node_signature(treemtl_order(i, num_tasks, NUM_COARSE)) == signature
    ]
