"""Losses and metrics against values computed by hand, ignore/invalid pixels included."""

from __future__ import annotations

import math

import pytest
import torch

from mtl_attack.tasks import Depth, L1Map, Segmentation, SurfaceNormal, build_tasks

IGN = 255


def logits_for(labels: torch.Tensor, num_classes: int, scale: float = 10.0) -> torch.Tensor:
    """Confident logits (B, C, H, W) predicting ``labels`` (B, H, W)."""
    return torch.nn.functional.one_hot(labels, num_classes).permute(0, 3, 1, 2).float() * scale


def test_segmentation_loss_per_sample_with_ignore_and_weights():
    logits = torch.zeros(2, 3, 1, 2)
    logits[0, :, 0, 0] = torch.tensor([2.0, 0.0, 0.0])
    target = torch.tensor([[[0, IGN]], [[IGN, IGN]]])
    loss = Segmentation(3).loss(logits, target)
    expected = -math.log(math.exp(2) / (math.exp(2) + 2))  # only pixel (0, 0) is valid
    assert loss.shape == (2,)
    assert loss[0].item() == pytest.approx(expected, rel=1e-6)
    assert loss[1].item() == 0.0  # no valid pixel
    # class weights: sum_p w_y nll_p / sum_p w_y
    target = torch.tensor([[[0, 1]]])
    logits = torch.zeros(1, 3, 1, 2)  # nll = log 3 everywhere
    weighted = Segmentation(3, class_weights=[1.0, 3.0, 1.0]).loss(logits, target)
    assert weighted.item() == pytest.approx(math.log(3), rel=1e-6)
    logits[0, 1, 0, 1] = 5.0  # pixel of class 1 becomes right: its nll shrinks, weight 3
    nll1 = -math.log(math.exp(5) / (math.exp(5) + 2))
    w = Segmentation(3, class_weights=[1.0, 3.0, 1.0]).loss(logits, target)
    assert w.item() == pytest.approx((math.log(3) + 3 * nll1) / 4, rel=1e-6)


def test_miou_and_pixel_accuracy_both_conventions():
    # batch 1: gt [0,0,1,1], pred [0,1,1,1]; batch 2: gt [2,2,IGN,0], pred [0,2,1,0]
    gts = [torch.tensor([[[0, 0, 1, 1]]]), torch.tensor([[[2, 2, IGN, 0]]])]
    preds = [torch.tensor([[[0, 1, 1, 1]]]), torch.tensor([[[0, 2, 1, 0]]])]
    # confusion (rows gt): [[2,1,0],[0,2,0],[1,0,1]] -> IoU 2/4, 2/3, 1/2
    for convention in ("reference", "libmtl"):
        meter = Segmentation(4, convention=convention).meter()
        for g, p in zip(gts, preds):
            meter.update(logits_for(p, 4), g)
        m = meter.compute()
        # class 3 never appears: both conventions skip it (no TP / no union)
        assert m["miou"] == pytest.approx((2 / 4 + 2 / 3 + 1 / 2) / 3)
        if convention == "reference":  # mean of per-batch accuracies: 3/4 and 2/3
            assert m["pixel_acc"] == pytest.approx((3 / 4 + 2 / 3) / 2)
        else:  # over all 7 valid pixels
            assert m["pixel_acc"] == pytest.approx(5 / 7)


def test_miou_reference_skips_classes_without_true_positive():
    meter = Segmentation(3, convention="reference").meter()
    libmtl = Segmentation(3, convention="libmtl").meter()
    gt, pred = torch.tensor([[[0, 1]]]), torch.tensor([[[0, 0]]])  # class 1 never right
    for m in (meter, libmtl):
        m.update(logits_for(pred, 3), gt)
    assert meter.compute()["miou"] == pytest.approx(1 / 2)  # only class 0: IoU 1/2
    assert libmtl.compute()["miou"] == pytest.approx((1 / 2 + 0) / 2)


def _unit(deg: float) -> list[float]:
    rad = math.radians(deg)
    return [math.sin(rad), 0.0, math.cos(rad)]


def normal_batch(angles, invalid=0):
    """Target (0, 0, 1) everywhere; prediction rotated by each angle; ``invalid`` extra pixels."""
    n = len(angles) + invalid
    pred = torch.tensor([_unit(a) for a in angles] + [[1.0, 0, 0]] * invalid).T.reshape(1, 3, 1, n)
    target = torch.tensor([[0.0, 0, 1]] * len(angles) + [[0.0, 0, 0]] * invalid)
    return pred * 3.0, target.T.reshape(1, 3, 1, n)  # scale: the loss must normalize


def test_normal_loss_and_angles():
    angles = [5.0, 11.0, 20.0, 40.0]
    pred, target = normal_batch(angles, invalid=2)
    loss = SurfaceNormal().loss(pred, target)
    expected = sum(1 - math.cos(math.radians(a)) for a in angles) / 4
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    ref, lib = SurfaceNormal("reference").meter(), SurfaceNormal("libmtl").meter()
    for m in (ref, lib):
        m.update(pred, target)
    r, lm = ref.compute(), lib.compute()
    assert r["angle_mean"] == pytest.approx(sum(angles) / 4, abs=1e-4)
    # even count: the mean of the two middle angles (each exact to its 0.01 degree bin)
    assert r["angle_median"] == pytest.approx((11.0 + 20.0) / 2, abs=0.01)
    assert r["within_11_25"] == pytest.approx(50.0)  # percent in the paper's code
    assert lm["within_11_25"] == pytest.approx(0.5, abs=1e-6)  # a fraction in LibMTL
    assert r["within_22_5"] == pytest.approx(75.0) and r["within_30"] == pytest.approx(75.0)


def test_normal_median_is_exact_to_histogram_resolution():
    angles = [1.0, 2.0, 3.3, 7.77, 50.0]
    pred, target = normal_batch(angles)
    meter = SurfaceNormal().meter()
    meter.update(pred, target)
    assert meter.compute()["angle_median"] == pytest.approx(3.3, abs=0.01)


def test_depth_loss_and_metrics_with_invalid_pixels():
    target = torch.tensor([[[[1.0, 2.0, 0.0, 4.0]]]])
    pred = torch.tensor([[[[1.1, 3.0, 9.0, 2.0]]]])
    loss = Depth().loss(pred, target)
    assert loss.item() == pytest.approx((0.1 + 1.0 + 2.0) / 3)
    for convention, scale in (("reference", 100.0), ("libmtl", 1.0)):
        meter = Depth(convention).meter()
        meter.update(pred, target)
        m = meter.compute()
        assert m["abs_err"] == pytest.approx((0.1 + 1.0 + 2.0) / 3)
        assert m["rel_err"] == pytest.approx((0.1 / 1 + 1.0 / 2 + 2.0 / 4) / 3)
        # ratios max(p/g, g/p): 1.1, 1.5, 2.0 -> < 1.25: 1, < 1.5625: 2, < 1.953: 2
        assert m["delta_1"] == pytest.approx(scale / 3)
        assert m["delta_2"] == pytest.approx(2 * scale / 3)
        assert m["delta_3"] == pytest.approx(2 * scale / 3)


def test_depth_conventions_differ_across_batches():
    # batch A: one valid pixel error 1; batch B: three valid pixels error 0
    a = (torch.tensor([[[[2.0, 0, 0, 0]]]]), torch.tensor([[[[1.0, 0, 0, 0]]]]))
    b = (torch.tensor([[[[1.0, 1, 1, 0]]]]), torch.tensor([[[[1.0, 1, 1, 0]]]]))
    ref, lib = Depth("reference").meter(), Depth("libmtl").meter()
    for m in (ref, lib):
        m.update(*a)
        m.update(*b)
    assert ref.compute()["abs_err"] == pytest.approx(0.5)  # mean of batch means (B = 1 each)
    assert lib.compute()["abs_err"] == pytest.approx(0.25)  # over all 4 valid pixels


def test_l1_maps():
    task = L1Map("keypoints2d", "key_err")
    pred = torch.tensor([[[[0.5, 0.0]]], [[[1.0, 1.0]]]])
    target = torch.tensor([[[[0.0, 0.0]]], [[[0.0, 1.0]]]])
    assert task.loss(pred, target).tolist() == pytest.approx([0.25, 0.5])
    masked = L1Map("edge_texture", "edge_err", invalid=-1.0)
    target = torch.tensor([[[[0.0, -1.0]]], [[[0.0, 1.0]]]])
    assert masked.loss(pred, target).tolist() == pytest.approx([0.5, 0.5])
    meter = masked.meter()
    meter.update(pred, target)
    assert meter.compute() == {"edge_err": pytest.approx(0.5)}


def test_build_tasks_rejects_unknown_names():
    tasks = build_tasks(["segment_semantic", "normal"], num_classes=5)
    assert (
        list(tasks) == ["segment_semantic", "normal"] and tasks["segment_semantic"].channels == 5
    )
    with pytest.raises(ValueError, match="unknown task 'semseg'"):
        build_tasks(["semseg"], num_classes=5)
    with pytest.raises(ValueError, match="dataset.metrics"):
        build_tasks(["normal"], num_classes=5, convention="paper")
