"""Dense-prediction attack losses (issue 19): each loss against a hand-computed reference on tiny
tensors, SegPGD's schedule, ignored pixels, shapes [B], the fallback, the contract of every
attack config with each loss, unchanged defaults, and results that never mix two losses."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.nn.functional as F

from mtl_attack.attacks import LOSSES, AttackLoss, IterativeAttack, build_attack
from mtl_attack.attacks.losses import segpgd_weight
from mtl_attack.evaluation.keys import attack_name
from mtl_attack.report import write_report
from mtl_attack.runner import run
from mtl_attack.runner.attacking import attack_item, entry_label
from mtl_attack.runner.errors import ConfigError
from tests.attack_setup import single_thread, tiny_batch, tiny_model, tiny_tasks
from tests.wandb_records import logged_keys, run_files

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)

# one image, 2 classes, 3 pixels: labels 0, 1 and ignored; the argmax is class 0 everywhere,
# so pixel 0 is correct and pixel 1 wrong
LOGITS = torch.tensor([[[[2.0, 1.0, 5.0]], [[0.0, 0.5, -3.0]]]])  # (1, 2, 1, 3)
LABELS = torch.tensor([[[0, 1, 255]]])  # (1, 1, 3)


def ce(z_label: float, z_other: float) -> float:
    return math.log(math.exp(z_label) + math.exp(z_other)) - z_label


CE0, CE1 = ce(2.0, 0.0), ce(0.5, 1.0)  # the two valid pixels
P0, P1 = math.exp(-CE0), math.exp(-CE1)  # the label's probability


def seg_loss(name: str, step: int = 0, steps: int = 10) -> float:
    tasks = tiny_tasks()
    fn = AttackLoss(name, tasks).functions["segment_semantic"]
    (value,) = fn(LOGITS, LABELS, step, steps)[0].tolist()
    return value


def test_segpgd_weights_at_the_first_and_the_last_step():
    correct = torch.tensor([True, False])
    assert segpgd_weight(correct, 0, 10).tolist() == [1.0, 0.0]  # lambda_0 = 0
    assert segpgd_weight(correct, 9, 10).tolist() == pytest.approx([1 - 9 / 20, 9 / 20])
    assert seg_loss("segpgd", 0) == pytest.approx(CE0 / 2)  # only the correct pixel
    assert seg_loss("segpgd", 9) == pytest.approx(((1 - 0.45) * CE0 + 0.45 * CE1) / 2)


def test_cospgd_segmentation_weighs_by_cosine_to_the_one_hot_label():
    def cos(p_label):  # 2 classes: cos(p, e_y) = p_y / ||p||
        return p_label / math.hypot(p_label, 1 - p_label)

    assert seg_loss("cospgd") == pytest.approx((cos(P0) * CE0 + cos(P1) * CE1) / 2)


def test_masked_and_balanced_cross_entropy():
    assert seg_loss("mask_ce") == pytest.approx(CE0 / 2)
    # class 0 holds 1 of the 2 valid pixels: weight 1 - 1/2
    assert seg_loss("mask_ce_bal") == pytest.approx(0.5 * CE0 / 2)
    labels = torch.tensor([[[0, 0, 1]]])  # class 0 holds 2 of 3 pixels, both correct
    fn = AttackLoss("mask_ce_bal", tiny_tasks()).functions["segment_semantic"]
    expected = (1 - 2 / 3) * (CE0 + ce(1.0, 0.5)) / 3
    assert fn(LOGITS, labels, 0, 1)[0].item() == pytest.approx(expected)


def test_jensen_shannon_against_the_two_kl_terms():
    def js(p_label):
        p, y = torch.tensor([p_label, 1 - p_label]), torch.tensor([1.0, 0.0])
        m = (p + y) / 2
        kl_p = (p * (p / m).log()).sum()
        kl_y = (y[0] * (y[0] / m[0]).log()).item()
        return 0.5 * kl_p.item() + 0.5 * kl_y

    assert seg_loss("jsd") == pytest.approx((js(P0) + js(P1)) / 2, rel=1e-5)


def test_cospgd_on_normals_and_depth():
    pred = torch.tensor([[[[1.0, 0.0]], [[0.0, 2.0]], [[0.0, 0.0]]]])  # (1, 3, 1, 2)
    target = torch.tensor([[[[1.0, 0.0]], [[0.0, 0.0]], [[0.0, 0.0]]]])  # pixel 1 invalid
    loss = AttackLoss("cospgd", tiny_tasks())
    weight = F.cosine_similarity(
        torch.tensor([1.0, 0, 0]).softmax(0), target[0, :, 0, 0].softmax(0), 0
    )
    assert weight.item() == pytest.approx(1.0)  # equal vectors
    assert loss.functions["normal"](pred, target, 0, 1)[0].item() == pytest.approx(0.0, abs=1e-7)
    pred[0, :, 0, 0] = torch.tensor([0.0, 1.0, 0.0])  # 90 degrees off: 1 - cos = 1
    p, t = torch.tensor([0.0, 1.0, 0.0]).softmax(0), torch.tensor([1.0, 0, 0]).softmax(0)
    expected = (p @ t / (p.norm() * t.norm())).item()
    assert loss.functions["normal"](pred, target, 0, 1)[0].item() == pytest.approx(expected)
    depth = torch.tensor([[[[1.0, 3.0, 9.0]]]])
    depth_target = torch.tensor([[[[2.0, 1.0, 0.0]]]])  # last pixel invalid
    got = loss.functions["depth_zbuffer"](depth, depth_target, 0, 1)[0].item()
    assert got == pytest.approx((1.0 + 2.0) / 2)  # one channel: weight 1, the L1 loss


def test_channel_argmax_is_argmax_ties_included():
    from mtl_attack.tasks import channel_argmax, label_wins

    torch.manual_seed(0)
    scores = torch.randn(4, 6, 9, 7)
    scores[0, :, :2] = 0.0  # every channel tied: the first one wins, as argmax says
    scores[1, 2:5, 3] = 7.0  # three tied maxima
    assert torch.equal(channel_argmax(scores), scores.argmax(1))
    assert channel_argmax(scores).dtype == torch.int64
    labels = torch.randint(0, 6, (4, 9, 7))
    assert torch.equal(label_wins(scores, labels), scores.argmax(1) == labels)
    assert torch.equal(channel_argmax(scores[:, :, 0, 0]), scores[:, :, 0, 0].argmax(1))


@pytest.mark.parametrize("name", LOSSES[1:])
def test_shapes_and_ignored_pixels(name):
    tasks = tiny_tasks()
    _, targets = tiny_batch(batch=3, size=8)
    targets["segment_semantic"][0, :4] = 255
    targets["segment_semantic"][2] = 255  # no valid pixel at all
    preds = {t: torch.randn(3, task.channels, 8, 8) for t, task in tasks.items()}
    loss = AttackLoss(name, tasks, announce=False)
    out = loss(preds, targets, 3, 10)
    assert all(v.shape == (3,) for v in out.values())
    assert out["segment_semantic"][2] == 0
    changed = {t: p.clone() for t, p in preds.items()}
    changed["segment_semantic"][0, :, :4] = torch.randn(6, 4, 8) * 10  # ignored rows only
    assert torch.equal(loss(changed, targets, 3, 10)["segment_semantic"], out["segment_semantic"])


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("name", LOSSES)
def test_both_gives_the_tasks_own_losses_beside_the_ascended_ones(name, weighted):
    """The own losses an attack step reports come from the pixel loss's log-softmax (one, not
    two per step); they equal each task's loss, class-weighted segmentation included."""
    from mtl_attack.tasks import build_tasks

    weights = [0.5, 1.0, 2.0, 1.0, 3.0, 1.0] if weighted else None
    tasks = build_tasks(list(tiny_tasks()), 6, class_weights=weights)
    _, targets = tiny_batch(batch=3, size=8)
    targets["segment_semantic"][0, :4] = 255
    preds = {t: torch.randn(3, k.channels, 8, 8, requires_grad=True) for t, k in tasks.items()}
    own, ascended = AttackLoss(name, tasks, announce=False).both(preds, targets, 2, 5)
    for t, task in tasks.items():
        expected = task.loss(preds[t], targets[t]).detach()
        assert not own[t].requires_grad and ascended[t].requires_grad
        assert torch.allclose(own[t], expected, rtol=1e-6, atol=1e-7), (t, own[t], expected)


def test_fallback_is_said_once_and_bad_names_are_one_line_errors(caplog):
    tasks = tiny_tasks()
    with caplog.at_level(logging.WARNING, logger="mtl_attack"):
        loss = AttackLoss("segpgd", tasks)
    (record,) = caplog.records
    assert "normal" in record.message and "depth_zbuffer" in record.message
    assert "segmentation only" in record.message and "own task loss" in record.message
    assert loss.fallback == ["normal", "depth_zbuffer"] and list(loss.functions) == [
        "segment_semantic"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="mtl_attack"):
        mixed = AttackLoss({"segment_semantic": "segpgd", "depth_zbuffer": "cospgd"}, tasks)
    assert not caplog.records and mixed.label == "segment_semantic=segpgd,depth_zbuffer=cospgd"
    assert mixed.names["normal"] == "ce"
    with pytest.raises(ValueError, match="unknown tasks \\['edges'\\]"):
        AttackLoss({"edges": "jsd"}, tasks)
    with pytest.raises(ValueError, match="'dice' is not a loss"):
        AttackLoss("dice", tasks)


def reference_pgd(model, tasks, images, targets, eps, steps):
    """Textbook TOTAL-PGD on the tasks' own losses (the behaviour before attack.loss)."""
    x, alpha = images.clone(), eps / steps
    for _ in range(steps):
        x.requires_grad_(True)
        preds = model(x)
        total = sum(task.loss(preds[t], targets[t]).sum() for t, task in tasks.items())
        (grad,) = torch.autograd.grad(total, x)
        x = torch.min(torch.max(x.detach() + alpha * grad.sign(), images - eps), images + eps)
        x = x.clamp(0, 1)
    return x


def test_ce_is_the_attack_without_a_loss():
    tasks = tiny_tasks()
    model = tiny_model(tasks).eval()
    images, targets = tiny_batch()
    expected = reference_pgd(model, tasks, images, targets, 4 / 255, 5)
    for spec in ("ce", {}, {"normal": "ce"}):
        attack = build_attack("total", "pgd", tasks, eps=4, steps=5, loss=spec)
        assert attack.loss.is_task_loss and attack.loss.label is None
        assert torch.allclose(attack(model, images, targets), expected, atol=1e-6)


@pytest.mark.parametrize("name", LOSSES[1:])
def test_a_dense_loss_changes_what_is_ascended_not_what_is_reported(name):
    tasks = tiny_tasks()
    model = tiny_model(tasks).eval()
    images, targets = tiny_batch()
    attack = build_attack("dgba", "apgd", tasks, eps=4, steps=4, loss=name)
    out = attack.run(model, images, targets)
    with torch.no_grad():
        own = attack.losses(model, out.images, targets)
    for t in tasks:  # the outcome's losses are the tasks' own losses at the result
        assert torch.allclose(out.losses[t], own[t])
    plain = build_attack("dgba", "apgd", tasks, eps=4, steps=4)(model, images, targets)
    assert not torch.equal(out.images, plain)
    assert isinstance(attack, IterativeAttack) and name in repr(attack)


QUICK = ["logger=none", "attack.eps=[2]", "attack.steps=3"]
SEG = ["attack=single", "attack.task=segment_semantic"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("attack.loss=dice", "attack.loss='dice' is not a loss; use one of"),
        ("attack.loss={edges:jsd}", "attack.loss names unknown tasks \\['edges'\\]"),
    ],
)
def test_bad_loss_is_a_config_error_before_training(tiny_cfg, tmp_path, override, message):
    with pytest.raises(ConfigError, match=message):
        run(tiny_cfg(override))
    assert not (tmp_path / "outputs" / "checkpoints").exists()


def test_results_reports_and_wandb_never_mix_two_losses(tiny_cfg, tmp_path):
    dense = run(tiny_cfg(*QUICK, *SEG, "attack.loss=segpgd", run="sweep/0"))
    plain = run(tiny_cfg(*QUICK, *SEG, run="sweep/1"))  # same model, same cache folder
    (d,), (p,) = dense["attacks"], plain["attacks"]
    assert d["loss"] == "segpgd" and d["identity"]["loss"] == "segpgd"
    assert "loss" not in p and "loss" not in p["identity"]  # ce: today's label and identity
    assert attack_name(d) == "single/segment_semantic/segpgd/pgd"
    assert attack_name(p) == "single/segment_semantic/pgd"
    assert d["avg_degradation"] != p["avg_degradation"]  # not one cached result for both
    assert attack_item(tiny_cfg(*QUICK, *SEG), entry_label(p)) == attack_item(
        tiny_cfg(*QUICK, *SEG, "attack.loss=ce"), entry_label(p)
    )
    text = write_report([tmp_path / "sweep"], tmp_path / "report")["report"].read_text()
    assert "single[segment_semantic]+segpgd/pgd" in text and "single[segment_semantic]/pgd" in text
    assert "duplicate" not in text
    mixed = "attack.loss={segment_semantic:segpgd,depth_zbuffer:cospgd}"
    wandb = ["logger=wandb", f"logger.dir={tmp_path / 'wandb'}"]
    run(tiny_cfg(*QUICK, "attack=minmax", "attack.weights_from=metric", mixed, *wandb, run="w"))
    keys = logged_keys(run_files(tmp_path / "wandb")[0])
    loss = "segment_semantic=segpgd,depth_zbuffer=cospgd"
    assert f"attack/minmax/metric/{loss}/pgd/eps2/min_degradation" in keys


def test_dgba_with_cospgd_runs(tiny_cfg):
    (entry,) = run(tiny_cfg(*QUICK, "attack=dgba", "attack.loss=cospgd"))["attacks"]
    assert entry["loss"] == "cospgd" and entry["flags"] == []
