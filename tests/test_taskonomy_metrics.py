"""The Taskonomy metric set against values computed by hand (datasets.md §5)."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_attack.tasks import Depth, Segmentation, SurfaceNormal, build_tasks


def test_weighted_ce_err_both_conventions():
    weights = [1.0, 3.0]
    task = Segmentation(2, weights, metric_set="taskonomy")
    assert task.higher_is_better == {"err": False}
    zero = torch.zeros(1, 2, 1, 2)  # nll = log 2 everywhere
    right = torch.tensor([[[[0.0, 0.0]], [[5.0, 5.0]]]])  # class 1 confident
    nll1 = math.log(1 + math.exp(-5))
    batches = [(zero, torch.tensor([[[0, 255]]])), (right, torch.tensor([[[1, 0]]]))]
    ref, lib = task.meter(), Segmentation(2, weights, "libmtl", "taskonomy").meter()
    for m in (ref, lib):
        for pred, gt in batches:
            m.update(pred, gt)
    b2 = (3 * nll1 + 1 * (5 + nll1)) / 4  # batch 2: weighted mean of its two pixels
    assert ref.compute()["err"] == pytest.approx((math.log(2) + b2) / 2)
    assert lib.compute()["err"] == pytest.approx((math.log(2) + 3 * nll1 + 5 + nll1) / 5)


def test_cosine_similarity_over_valid_pixels():
    task = SurfaceNormal(metric_set="taskonomy")
    target = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 0.0]]).T.reshape(
        1, 3, 1, 3
    )
    pred = torch.tensor([[0.0, 0.0, 2.0], [1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]).T.reshape(1, 3, 1, 3)
    meter = task.meter()
    meter.update(pred, target)
    assert meter.compute() == {"cosine_similarity": pytest.approx((1 + math.sqrt(0.5)) / 2)}


def test_taskonomy_depth_reports_abs_err_only_and_build_tasks_defaults_unchanged():
    meter = Depth(metric_set="taskonomy").meter()
    meter.update(torch.tensor([[[[0.5, 0.2]]]]), torch.tensor([[[[0.4, 0.0]]]]))
    assert meter.compute() == {"abs_err": pytest.approx(0.1)}
    default = build_tasks(["segment_semantic", "normal", "depth_zbuffer"], 4)
    assert set(default["segment_semantic"].higher_is_better) == {"miou", "pixel_acc"}
    assert "within_11_25" in default["normal"].higher_is_better
    assert "delta_1" in default["depth_zbuffer"].higher_is_better


def test_reference_delta_counts_the_boundary():
    # ratio exactly 1.25: the reference code counts <=, LibMTL-style strict <
    pred, target = torch.tensor([[[[1.25]]]]), torch.tensor([[[[1.0]]]])
    ref, lib = Depth("reference").meter(), Depth("libmtl").meter()
    for m in (ref, lib):
        m.update(pred, target)
    assert ref.compute()["delta_1"] == pytest.approx(100.0)
    assert lib.compute()["delta_1"] == 0.0
