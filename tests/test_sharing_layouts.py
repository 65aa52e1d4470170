"""Layouts: TreeMTL enumeration order and counts, presets, validation errors, sharing degree."""

from __future__ import annotations

import pytest

from mtl_attack.models.sharing import (
    Layout,
    all_shared,
    branch,
    enumerate_layouts,
    independent,
    select_layout,
    sharing_degree,
)

S = [[0, 1, 2]]  # all three tasks shared in a block


@pytest.mark.parametrize("num_tasks, count", [(1, 1), (2, 6), (3, 51), (4, 561), (5, 7556)])
def test_enumeration_counts_for_five_blocks(num_tasks, count):
    layouts = enumerate_layouts(num_tasks, 5)
    assert len(layouts) == count
    assert len(set(layouts)) == count  # no duplicates
    assert layouts[0] == all_shared(num_tasks, 5)


def test_two_tasks_split_at_ever_later_blocks():
    layouts = [lay.as_lists() for lay in enumerate_layouts(2, 5)]
    for k, lay in enumerate(layouts[1:]):  # index k + 1 splits at block k
        assert lay == [[[0, 1]]] * k + [[[0], [1]]] * (5 - k)


def test_first_three_task_layouts_follow_treemtl_depth_first_order():
    one_two = [[0], [1, 2]]
    alone = [[0], [1], [2]]
    expected = [
        [S] * 5,  # 0: all shared
        [one_two] * 5,  # 1: cut block 0, {1,2} moves away from 0 ...
        [alone] * 5,  # 2: ... then, depth first, {1,2} split at block 0
        [one_two] + [alone] * 4,  # 3..6: {1,2} split at blocks 1..4
        [one_two] * 2 + [alone] * 3,
        [one_two] * 3 + [alone] * 2,
        [one_two] * 4 + [alone],
        [[[0, 2], [1]]] * 5,  # 7: second split of block 0 ({1} moves away)
        [[[0, 2], [1]]] + [alone] * 4,  # 8: ({0,2} split at block 1; [alone]*5 is known)
    ]
    got = [lay.as_lists() for lay in enumerate_layouts(3, 5)[: len(expected)]]
    assert got == expected


def test_every_enumerated_layout_is_a_valid_tree_and_all_trees_appear():
    layouts = enumerate_layouts(3, 3)
    # brute force: every sequence of partitions of {0, 1, 2} in which each block refines the last
    partitions = [((0, 1, 2),), ((0,), (1, 2)), ((0, 2), (1,)), ((0, 1), (2,)), ((0,), (1,), (2,))]
    valid = 0
    for a in partitions:
        for b in partitions:
            for c in partitions:
                seq = (a, b, c)
                refines = all(
                    all(any(set(g) <= set(p) for p in prev) for g in nxt)
                    for prev, nxt in zip(seq, seq[1:])
                )
                valid += refines
    assert len(layouts) == valid
    assert all(isinstance(lay, Layout) and lay.num_blocks == 3 for lay in layouts)


def test_presets():
    assert all_shared(3, 5).as_lists() == [S] * 5
    assert independent(3, 5).as_lists() == [[[0], [1], [2]]] * 5
    assert branch(3, 5, branch_at=2).as_lists() == [S] * 2 + [[[0], [1], [2]]] * 3
    assert branch(3, 5, branch_at=0) == independent(3, 5)
    assert branch(3, 5, branch_at=5) == all_shared(3, 5)


def test_select_layout_by_index_names_or_indices():
    names = ["segment_semantic", "normal", "depth_zbuffer"]
    assert select_layout(3, 5, index=7) == enumerate_layouts(3, 5)[7]
    by_name = select_layout(
        3,
        5,
        blocks=[[names]] * 2 + [[["segment_semantic", "depth_zbuffer"], ["normal"]]] * 3,
        task_names=names,
    )
    by_index = select_layout(3, 5, blocks=[S] * 2 + [[[0, 2], [1]]] * 3)
    assert by_name == by_index
    assert by_index.as_lists() == [S, S, [[0, 2], [1]], [[0, 2], [1]], [[0, 2], [1]]]


def test_sharing_degree():
    assert sharing_degree(all_shared(4, 5)) == 1.0
    assert sharing_degree(independent(4, 5)) == 0.0
    assert sharing_degree(branch(3, 5, branch_at=2)) == pytest.approx(2 / 5)
    # pairs (0,1): 5/5, (0,2): 2/5, (1,2): 2/5
    lay = select_layout(3, 5, blocks=[S, S, [[0, 1], [2]], [[0, 1], [2]], [[0, 1], [2]]])
    assert sharing_degree(lay) == pytest.approx((1 + 0.4 + 0.4) / 3)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"blocks": [S] * 4}, r"sharing.blocks has 4 entries but the backbone has 5"),
        ({"blocks": [[[0, 1]]] * 5}, r"block 0: .*missing \[2\]"),
        ({"blocks": [[[0, 1], [1, 2]]] * 5}, r"block 0: .*repeated \[1\]"),
        ({"blocks": [[[0, 1, 3]]] * 5}, r"unknown \[3\]"),
        (
            {"blocks": [S, [[0], [1, 2]], [[0, 1], [2]], [[0], [1], [2]], [[0], [1], [2]]]},
            r"block 2: group \[0, 1\] merges tasks that were split in block 1",
        ),
        ({"blocks": [[["depth", "normal", "x"]]] * 5}, r"names task 'depth', which is not one"),
        ({"index": 51}, r"sharing.index=51 is out of range: .* 51 layouts \(indices 0..50\)"),
        ({}, r"exactly one of sharing.index=K .* or sharing.blocks"),
        ({"index": 0, "blocks": [S] * 5}, r"exactly one of sharing.index"),
    ],
)
def test_select_layout_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        select_layout(3, 5, task_names=["segment_semantic", "normal", "x"], **kwargs)


@pytest.mark.parametrize("branch_at", [-1, 6, 2.5])
def test_branch_at_out_of_range(branch_at):
    with pytest.raises(ValueError, match=r"sharing.branch_at=.* must be an integer in 0..5"):
        branch(3, 5, branch_at=branch_at)
