"""eval.resolution=prediction (the paper's code) and the reference depth deltas, by hand."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from mtl_attack.attacks import build_attack
from mtl_attack.models import MultiTaskModel
from mtl_attack.runner import build_model, run, weight_spec
from mtl_attack.tasks import Depth, Segmentation, SurfaceNormal, build_tasks

IGN = 255

# a 4x4 label map; its nearest 2x2 version keeps rows 0, 2 and columns 0, 2: [[0, 255], [0, 2]]
LABELS = torch.tensor([[[0, 1, IGN, 2], [1, 1, 2, 2], [0, IGN, 2, 2], [0, 0, 1, 1]]])


def log_probs(*rows: list[float]) -> torch.Tensor:
    """Logits (1, 3, 2, 2) whose softmax at pixel (i, j) is ``rows[2 * i + j]``."""
    return torch.tensor(rows).log().T.reshape(1, 3, 2, 2)


def test_segmentation_loss_at_prediction_size_metrics_at_label_size():
    pred = log_probs([0.5, 0.25, 0.25], [0.2, 0.6, 0.2], [0.25, 0.5, 0.25], [0.25, 0.25, 0.5])
    # loss: labels resized to 2x2 = [[0, IGN], [0, 2]]; the ignored pixel stays ignored
    loss = Segmentation(3).loss(pred, LABELS)
    assert loss.item() == pytest.approx((math.log(2) + math.log(4) + math.log(2)) / 3)
    # metrics: the 2x2 argmax [[0, 1], [1, 2]] blown up to 2x2 blocks of the 4x4 labels:
    # 3 of 14 valid pixels right; confusion (rows = truth) [[1, 3, 0], [3, 0, 2], [0, 3, 2]]
    for convention, miou in (("reference", (1 / 7 + 2 / 7) / 2), ("libmtl", (1 / 7 + 2 / 7) / 3)):
        meter = Segmentation(3, convention=convention).meter()
        meter.update(pred, LABELS)
        assert meter.state["confusion"].tolist() == [[1, 3, 0], [3, 0, 2], [0, 3, 2]]
        assert meter.compute() == pytest.approx({"miou": miou, "pixel_acc": 3 / 14})


def test_depth_and_normal_losses_use_the_nearest_labels_and_keep_invalid_pixels_out():
    depth = torch.tensor([[[[1.0, 9.0, 0.0, 9.0], [9.0, 9.0, 9.0, 9.0], [0.0, 9.0, 4.0, 9.0]]]])
    depth = torch.cat([depth, torch.full((1, 1, 1, 4), 9.0)], dim=2)  # (1, 1, 4, 4)
    pred = torch.tensor([[[[2.0, 5.0], [7.0, 1.0]]]])
    # nearest 2x2 labels [[1, 0], [0, 4]]: two valid pixels, |2 - 1| and |1 - 4|
    assert Depth().loss(pred, depth).item() == pytest.approx((1 + 3) / 2)
    meter = Depth(convention="libmtl").meter()
    meter.update(pred, depth)  # at 4x4: 14 valid pixels, each 2x2 block predicted by one value
    up = pred.repeat_interleave(2, 2).repeat_interleave(2, 3)
    valid = depth > 0
    assert meter.compute()["abs_err"] == pytest.approx(
        float((up - depth).abs()[valid].mean()), rel=1e-6
    )
    normal = torch.zeros(1, 3, 4, 4)
    normal[0, 2] = 1.0  # facing the camera...
    normal[0, :, 0, 0] = 0.0  # ...except an invalid pixel at a kept position
    npred = torch.zeros(1, 3, 2, 2)
    npred[0, 0] = 1.0  # perpendicular: cosine 0 everywhere
    npred[0, :, 1, 1] = torch.tensor([0.0, 0.0, 2.0])  # parallel: cosine 1
    # kept label pixels (0,0) invalid, (0,2), (2,0), (2,2) valid -> (1 + 1 + 0) / 3
    assert SurfaceNormal().loss(npred, normal).item() == pytest.approx(2 / 3)


def test_same_size_predictions_are_not_resized():
    pred = torch.randn(2, 1, 4, 4)
    target = torch.rand(2, 1, 4, 4) + 0.5
    assert torch.equal(Depth().loss(pred, target), (pred - target).abs().mean((1, 2, 3)))


def test_reference_depth_deltas_are_unguarded_like_the_paper_code():
    # valid pixels (target > 0); one invalid pixel (target 0) is left out
    p = torch.tensor([-1.0, 2.4, 0.0, 5.0, 1.5, 7.0]).view(1, 1, 1, 6)
    g = torch.tensor([1.0, 2.0, 4.0, 2.0, 1.0, 0.0]).view(1, 1, 1, 6)
    # max(p/g, g/p): -1 (both quotients negative), 1.2, inf (g / 0), 2.5, 1.5
    reference = Depth(convention="reference").meter()
    reference.update(p, g)
    assert reference.compute() == pytest.approx(
        {
            "abs_err": (2 + 0.4 + 4 + 3 + 0.5) / 5,
            "rel_err": (2 + 0.2 + 1 + 1.5 + 0.5) / 5,
            "delta_1": 40.0,  # -1 and 1.2: the negative prediction counts as within, as there
            "delta_2": 60.0,  # + 1.5 <= 1.5625
            "delta_3": 60.0,
        }
    )
    guarded = Depth(convention="libmtl").meter()
    guarded.update(p, g)  # the negative prediction is clamped to 1e-6: ratio 1e6, wrong
    out = guarded.compute()
    assert [out["delta_1"], out["delta_2"], out["delta_3"]] == pytest.approx([0.2, 0.4, 0.4])


def test_prediction_resolution_through_hydra_reaches_model_attacks_and_cache_key(tiny_cfg):
    cfg = tiny_cfg("logger=none", "eval.resolution=prediction", "attack.eps=[4]", "attack.steps=2")
    tasks = build_tasks(["segment_semantic", "normal", "depth_zbuffer"], num_classes=6)
    model = build_model(cfg, tasks).eval()
    assert isinstance(model, MultiTaskModel) and not model.upsample
    images = torch.rand(2, 3, 32, 32)
    preds = model(images)
    assert {tuple(p.shape[-2:]) for p in preds.values()} == {(8, 8)}  # tiny: output stride 4
    # what an attack ascends is the loss against labels resized nearest to 8x8
    targets = {
        "segment_semantic": torch.randint(0, 6, (2, 32, 32)),
        "normal": F.normalize(torch.randn(2, 3, 32, 32), dim=1),
        "depth_zbuffer": torch.rand(2, 1, 32, 32) + 0.1,
    }
    attack = build_attack("total", "pgd", tasks, eps=4, steps=1)
    with torch.no_grad():
        seen = attack.losses(model, images, targets)
    small = {t: y[..., ::4, ::4] for t, y in targets.items()}  # nearest 32 -> 8 keeps every 4th
    for name, task in tasks.items():
        direct = task.loss(preds[name], small[name])
        assert torch.allclose(seen[name], direct, atol=1e-6), name
    # a model trained on other losses is another checkpoint; the default key is unchanged
    assert weight_spec(cfg, model, _Data())["resolution"] == "prediction"
    default = tiny_cfg("logger=none")
    assert "resolution" not in weight_spec(default, build_model(default, tasks), _Data())
    results = run(cfg)  # trains and attacks end to end at the prediction resolution
    assert results["config"]["eval"]["resolution"] == "prediction"
    assert results["attacks"][0]["avg_loss_increase"] > 0


class _Data:
    tasks = ["segment_semantic", "normal", "depth_zbuffer"]


def test_bad_resolution_is_one_line(tiny_cfg):
    cfg = tiny_cfg("logger=none", "eval.resolution=label")
    with pytest.raises(ValueError, match="eval.resolution must be 'input' or 'prediction'"):
        build_model(cfg, build_tasks(["depth_zbuffer"], num_classes=6))
