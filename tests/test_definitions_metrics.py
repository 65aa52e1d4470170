"""Pins of the metric, degradation, adversarial-training and preprocessing definitions
(datasets.md sections 2.2, 3 and 5, method.md sections 7 and 8) on cases small enough to work
out by hand: each test fails when its formula changes (a hand mutation of the formula survived
the rest of the suite). Depth predictions here are positive (the handling of non-positive ones
is issue 11's).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from real_formats import write_taskonomy_view
from torch import nn

from mtl_attack.data.convert.taskonomy_raw import decode_view
from mtl_attack.data.transforms import ScaleCropFlip, resize_linear, resize_nearest
from mtl_attack.defense import AdversarialTraining
from mtl_attack.defense.training import train_step
from mtl_attack.evaluation import evaluate, summarize
from mtl_attack.tasks import Depth, L1Map, Segmentation, SurfaceNormal, build_tasks
from tests.test_tasks import logits_for, normal_batch

# --- normals: angle thresholds (datasets.md sections 2.2 and 5) --------------------------------


def test_normal_thresholds_count_the_boundary_only_in_the_reference_convention():
    """Angle within t: reference counts angle <= t in percent (datasets.md section 5), LibMTL
    angle < t as a fraction (section 2.2)."""
    angles = [11.2, 11.3, 22.4, 22.6, 29.9, 30.1]
    pred, target = normal_batch(angles)
    ref, lib = SurfaceNormal("reference").meter(), SurfaceNormal("libmtl").meter()
    for m in (ref, lib):
        m.update(pred, target)
    # within 11.25: 1 of 6; 22.5: 3 of 6; 30: 5 of 6
    assert [ref.compute()[k] for k in ref.thresholds] == pytest.approx([100 / 6, 50, 500 / 6])
    assert [lib.compute()[k] for k in lib.thresholds] == pytest.approx([1 / 6, 1 / 2, 5 / 6])
    # An angle from acos lands exactly on 11.25, 22.5 or 30 for no float64 cosine near them, so
    # the boundary is exercised where it is exact: a prediction equal to its target has angle
    # acos(1) = 0 exactly, counted by "<= 0" and not by "< 0".
    exact = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).view(1, 3, 1, 1)
    for convention, expected in (("reference", 100.0), ("libmtl", 0.0)):
        meter = SurfaceNormal(convention).meter()
        meter.thresholds = dict.fromkeys(meter.thresholds, 0.0)
        meter.update(exact, exact)
        out = meter.compute()
        assert out["angle_mean"] == 0.0
        assert [out[k] for k in meter.thresholds] == [expected] * 3


def test_normal_loss_is_one_minus_signed_cosine_and_taskonomy_cosine_normalizes_both():
    """Normal loss 1 - cos(normalize(pred), gt) (an opposite normal costs 2, not 0); Taskonomy's
    cosine_similarity is cos(normalize(pred), normalize(gt)) (datasets.md sections 3.3 and 5)."""
    pixels = [([0.0, 0.0, -2.0], [0.0, 0.0, 1.0]), ([1.0, 0.0, 0.0], [0.0, 0.0, 1.0])]
    pred = torch.tensor([p for p, _ in pixels]).T.reshape(1, 3, 1, 2)
    gt = torch.tensor([g for _, g in pixels]).T.reshape(1, 3, 1, 2)
    # cos -1 and 0: (2 + 1) / 2
    assert SurfaceNormal().loss(pred, gt).tolist() == pytest.approx([1.5])
    meter = SurfaceNormal(metric_set="taskonomy").meter()
    # gt (0, 0, 2) is not unit: cos((1, 0, 1) / sqrt 2, (0, 0, 1)) = 1 / sqrt 2
    meter.update(
        torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1),
        torch.tensor([0.0, 0.0, 2.0]).view(1, 3, 1, 1),
    )
    assert meter.compute()["cosine_similarity"] == pytest.approx(1 / math.sqrt(2))


# --- batch weighting of the reference convention (datasets.md section 5) -----------------------


def test_pixel_accuracy_reference_weights_batches_by_size():
    """Pixel accuracy: reference = batch-size-weighted mean of per-batch accuracies; LibMTL =
    trace(H) / sum(H) over the dataset (datasets.md sections 5 and 2.2)."""
    batches = [
        (torch.tensor([[[0, 1]]]), torch.tensor([[[0, 0]]])),  # B = 1: 1 of 2 right
        (torch.tensor([[[1]], [[1]], [[0]]]), torch.tensor([[[1]], [[1]], [[0]]])),  # B = 3: all
    ]
    ref, lib = Segmentation(2).meter(), Segmentation(2, convention="libmtl").meter()
    for m in (ref, lib):
        for gt, pred in batches:
            m.update(logits_for(pred, 2), gt)
    assert ref.compute()["pixel_acc"] == pytest.approx((1 * 0.5 + 3 * 1.0) / 4)  # 0.875
    assert lib.compute()["pixel_acc"] == pytest.approx(4 / 5)


def depth_batches():
    # A (B = 1): pred (2, 3), gt (1, 2): |e| = (1, 1), |e|/g = (1, 0.5), ratios (2, 1.5)
    # B (B = 3, gt 0 = invalid in column 1): pred (1, 2, 7), gt (1, 1, 2): |e| = (0, 1, 5),
    #   |e|/g = (0, 1, 2.5), ratios (1, 2, 3.5)
    a = (torch.tensor([[[[2.0, 3.0]]]]), torch.tensor([[[[1.0, 2.0]]]]))
    b_pred = torch.tensor([[1.0, 9.0], [2.0, 9.0], [7.0, 9.0]]).view(3, 1, 1, 2)
    b_gt = torch.tensor([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0]]).view(3, 1, 1, 2)
    return [a, (b_pred, b_gt)]


def test_depth_errors_weight_batches_by_size_in_the_reference_convention():
    """Depth abs/rel error: reference = batch-size-weighted mean of per-batch pixel means; LibMTL
    = mean over all valid pixels; deltas max(p/g, g/p) <= 1.25^k over all valid pixels in
    percent (datasets.md sections 5 and 2.2)."""
    ref, lib = Depth("reference").meter(), Depth("libmtl").meter()
    for m in (ref, lib):
        for pred, gt in depth_batches():
            m.update(pred, gt)
    r, lm = ref.compute(), lib.compute()
    # batch means: abs A 1, B 2; rel A 0.75, B 3.5 / 3
    assert r["abs_err"] == pytest.approx((1 * 1 + 3 * 2) / 4)  # 1.75
    assert r["rel_err"] == pytest.approx((1 * 0.75 + 3 * 3.5 / 3) / 4)  # 1.0625
    assert lm["abs_err"] == pytest.approx((1 + 1 + 0 + 1 + 5) / 5)  # 1.6
    assert lm["rel_err"] == pytest.approx((1 + 0.5 + 0 + 1 + 2.5) / 5)  # 1.0
    # ratios 2, 1.5, 1, 2, 3.5: <= 1.25: 1; <= 1.5625: 2; <= 1.953: 2 (of 5)
    assert [r[f"delta_{k}"] for k in (1, 2, 3)] == pytest.approx([20.0, 40.0, 40.0])
    assert [lm[f"delta_{k}"] for k in (1, 2, 3)] == pytest.approx([0.2, 0.4, 0.4])


def test_l1_error_weights_batches_by_size_in_the_reference_convention():
    """Keypoint/edge error: reference = batch-size-weighted mean of per-batch pixel means over
    gt != invalid; LibMTL-style = mean over all valid pixels (datasets.md section 5)."""
    task = L1Map("keypoints2d", "key_err", invalid=255.0)
    lib_task = L1Map("keypoints2d", "key_err", invalid=255.0, convention="libmtl")
    # A (B = 1): |e| = (1, 1); B (B = 2): |e| = (0, -) and (6, 0), the '-' pixel invalid
    a = (torch.tensor([[[[1.0, 1.0]]]]), torch.zeros(1, 1, 1, 2))
    b = (
        torch.tensor([[0.0, 0.0], [6.0, 0.0]]).view(2, 1, 1, 2),
        torch.tensor([[0.0, 255.0], [0.0, 0.0]]).view(2, 1, 1, 2),
    )
    ref, lib = task.meter(), lib_task.meter()
    for m in (ref, lib):
        for pred, gt in (a, b):
            m.update(pred, gt)
    assert ref.compute()["key_err"] == pytest.approx((1 * 1 + 2 * 2) / 3)  # batch means 1, 2
    assert lib.compute()["key_err"] == pytest.approx((1 + 1 + 0 + 6 + 0) / 5)


def test_taskonomy_err_weights_batches_by_size_in_the_reference_convention():
    """Taskonomy seg err: per-batch weighted CE, then the batch-size-weighted mean (datasets.md
    section 5)."""
    meter = Segmentation(2, metric_set="taskonomy").meter()
    meter.update(torch.zeros(1, 2, 1, 1), torch.tensor([[[0]]]))  # B = 1: nll = log 2
    confident = torch.tensor([0.0, 5.0]).view(1, 2, 1, 1).expand(2, 2, 1, 1)
    meter.update(confident, torch.tensor([[[1]], [[1]]]))  # B = 2: nll = log(1 + e^-5)
    expected = (1 * math.log(2) + 2 * math.log(1 + math.exp(-5))) / 3
    assert meter.compute()["err"] == pytest.approx(expected)


# --- degradation (method.md section 7) ---------------------------------------------------------


def test_metrics_without_a_relative_change_are_left_out_of_every_mean():
    """A metric whose clean value is 0 has no relative change: it is left out of its task's
    mean, a task without any is left out of avg_degradation and min_degradation (method.md
    section 7)."""
    tasks = build_tasks(["segment_semantic", "depth_zbuffer"], 2)
    clean = {
        "segment_semantic": {"miou": 0.0, "pixel_acc": 0.0, "loss": 1.0},
        "depth_zbuffer": {"abs_err": 0.5, "rel_err": 0.0, "delta_1": 80.0, "delta_2": 90.0,
                          "delta_3": 100.0, "loss": 0.5},
    }  # fmt: skip
    adv = {
        "segment_semantic": {"miou": 0.0, "pixel_acc": 0.0, "loss": 2.0},
        "depth_zbuffer": {"abs_err": 0.75, "rel_err": 0.1, "delta_1": 60.0, "delta_2": 90.0,
                          "delta_3": 100.0, "loss": 0.75},
    }  # fmt: skip
    out = summarize(tasks, clean, adv)
    assert math.isnan(out["tasks"]["segment_semantic"]["degradation"])
    # depth: abs (0.75 - 0.5) / 0.5 = 0.5, rel left out, delta_1 (80 - 60) / 80 = 0.25, 0, 0
    assert out["tasks"]["depth_zbuffer"]["degradation"] == pytest.approx(0.75 / 4)
    assert out["avg_degradation"] == pytest.approx(0.1875)
    assert out["min_degradation"] == pytest.approx(0.1875)
    assert out["avg_loss_increase"] == pytest.approx((1.0 + 0.5) / 2)


class RedDepth(nn.Module):
    """Predicts depth = the red channel."""

    def forward(self, x):
        return {"depth_zbuffer": x[:, :1]}


def test_reported_loss_is_the_mean_per_sample_loss_over_the_split():
    """The loss beside the metrics (and in loss_increase) is the mean of the per-sample losses
    over the whole split, not a mean of batch means (method.md section 7)."""
    tasks = {"depth_zbuffer": Depth()}
    loader = [  # red 0 against depth 1: loss 1 (B = 1); red 0.5: loss 0.5 each (B = 3)
        {"image": torch.zeros(1, 3, 1, 1), "depth_zbuffer": torch.ones(1, 1, 1, 1)},
        {"image": torch.full((3, 3, 1, 1), 0.5), "depth_zbuffer": torch.ones(3, 1, 1, 1)},
    ]
    out = evaluate(RedDepth(), tasks, loader, torch.device("cpu"), progress=False)
    assert out["depth_zbuffer"]["loss"] == pytest.approx((1 + 3 * 0.5) / 4)  # 0.625


# --- adversarial training (method.md section 8) ------------------------------------------------


class BiasDepth(nn.Module):
    """Predicts one learned depth ``b`` (starting at 0) whatever the image."""

    def __init__(self):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return {"depth_zbuffer": x[:, :1] * 0.0 + self.b}


def test_adversarial_training_mixes_clean_and_attacked_loss_and_default_step():
    """L = (1 - w) L(x_adv) + w L(x); the training attack's default step size is
    2.5 * eps / steps (Madry et al.; FGSM keeps eps) (method.md section 8)."""
    tasks = {"depth_zbuffer": Depth()}
    defense = AdversarialTraining(tasks, attack="total", eps=8, steps=4, clean_weight=0.3)
    assert defense.step_size == 5.0 and defense.attack.step_size == pytest.approx(5 / 255)
    fgsm = AdversarialTraining(tasks, attack="total", step="fgsm", eps=8)
    assert fgsm.attack.step_size == pytest.approx(8 / 255)
    model = BiasDepth()
    images = torch.full((2, 3, 2, 2), 0.5)
    targets = {"depth_zbuffer": torch.full((2, 1, 2, 2), 2.0)}
    views = defense(model, images, targets)
    assert [w for _, w in views] == pytest.approx([0.7, 0.3]) and views[1][0] is images
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    parts = train_step(model, tasks, images, targets, optimizer, views=defense)
    # both views have loss |0 - 2| = 2 and d/db = -1: L = 0.7 * 2 + 0.3 * 2 = 2, dL/db = -1,
    # so b = 0 - 0.5 * (-1) = 0.5
    assert parts["depth_zbuffer"] == pytest.approx(2.0)
    assert model.b.item() == pytest.approx(0.5)


# --- preprocessing (datasets.md sections 3.2 and 3.3) ------------------------------------------


def test_nearest_resize_takes_the_floor_of_the_source_position():
    """Labels resize like OpenCV's INTER_NEAREST: src = floor(dst * src_size / dst_size), on
    both axes (datasets.md section 3.2)."""
    grid = np.arange(25).reshape(5, 5)  # value = 5 * row + column
    # 3 of 5: positions 0, 1.67, 3.33 -> 0, 1, 3 (rounding would give 0, 2, 3)
    assert resize_nearest(grid, 3, 3).tolist() == [[0, 1, 3], [5, 6, 8], [15, 16, 18]]


def test_nearest_resize_uses_the_reciprocal_of_the_scale_as_opencv():
    """OpenCV computes the source column as floor(x * (1 / (dst / src))) in double precision,
    which puts some exact integers just below: 327 * 640 / 654 = 320 exactly, but OpenCV (and
    so the reference's labels) reads column 319 there (checked against OpenCV 5.0)."""
    row = np.arange(640).reshape(1, 640)
    assert resize_nearest(row, 1, 654)[0, 326:329].tolist() == [319, 319, 320]


def test_linear_resize_samples_at_pixel_centres_and_clamps_at_the_border():
    """Images resize like cv2.resize (INTER_LINEAR, no antialiasing): output x reads source
    (x + 0.5) * src / dst - 0.5, positions outside [0, src - 1] take the border pixel. For 2 ->
    4 pixels the positions are -0.25, 0.25, 0.75, 1.25: [a, 0.75 a + 0.25 b, 0.25 a + 0.75 b,
    b]; 75.75 rounds to 76."""
    assert resize_linear(np.array([[0, 100]], np.uint8), 1, 4).tolist() == [[0, 25, 75, 100]]
    assert resize_linear(np.array([[0, 101]], np.uint8), 1, 4).tolist() == [[0, 25, 76, 101]]
    column = resize_linear(np.array([[0], [100]], np.uint8), 4, 1)  # the same along rows
    assert column[:, 0].tolist() == [0, 25, 75, 100]
    # 4 -> 2 (a factor of 2): each output pixel is the mean of two, no wider filter
    assert resize_linear(np.array([[0, 40, 80, 200]], np.uint8), 1, 2).tolist() == [[20, 140]]


def test_training_scale_is_truncated_and_the_image_centred_in_the_padding():
    """Train transform: scale s ~ U[0.5, 1.5) to int(s H) x int(s W) (truncated, as the
    reference's int(h * scale)), then the image is centred in a canvas padded to the crop
    size, offset (pad - size) // 2, before the random window (datasets.md section 3.2)."""
    image = np.zeros((10, 10, 3), np.uint8)
    targets = {"segment_semantic": np.zeros((10, 10), np.uint8)}
    transform = ScaleCropFlip(crop=20)  # crop > 15: the window is the whole padded canvas
    torch.manual_seed(0)
    heights = set()
    for _ in range(60):
        _, out = transform(image, targets)
        rows = np.nonzero((out["segment_semantic"] != 255).any(1))[0]
        heights.add(len(rows))
        assert rows[0] == (20 - len(rows)) // 2  # centred: (pad - size) // 2 rows above
    # height int(10 s) for s in [0.5, 1.5): 5..14 (15 only by rounding), both ends reached
    assert min(heights) <= 6 and max(heights) == 14


def test_taskonomy_depth_is_invalid_from_raw_64500(tmp_path):
    """Raw Taskonomy depth (1/512 m units) is valid below 64500 and invalid from 64500 on, not
    only at 65535; normals share the depth mask (datasets.md sections 0 and 3.3)."""
    write_taskonomy_view(tmp_path, "point_0_view_0", np.random.default_rng(0), size=2)
    raw = np.array([[64499, 64500], [65535, 512]], np.uint16)
    Image.fromarray(raw).save(
        tmp_path / "depth_zbuffer" / "point_0_view_0_domain_depth_zbuffer.png"
    )
    _, targets = decode_view(tmp_path, "point_0_view_0", 2, "background")
    np.testing.assert_array_equal(targets["depth_zbuffer"], [[64499 / 512, 0.0], [0.0, 1.0]])
    assert (targets["normal"].any(-1) == [[True, False], [False, True]]).all()
