"""Equivalence of the attacks with short textbook references (method.md sections 3-4)."""

from __future__ import annotations

import pytest
import torch

from mtl_attack.attacks import AutoPGD, DynamicGradientBalancing, build_attack, checkpoints
from mtl_attack.attacks.steps import project
from tests.attack_setup import single_thread, tiny_batch, tiny_model, tiny_tasks

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def losses_at(model, tasks, images, targets, scale: dict | None = None):
    x = images.clone().requires_grad_(True)
    preds = model(x)
    scale = scale or {}
    return x, {t: scale.get(t, 1.0) * task.loss(preds[t], targets[t]) for t, task in tasks.items()}


def test_dgba_direction_equals_slow_per_task_sum():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()
    x, losses = losses_at(model, tasks, images, targets)
    fast = DynamicGradientBalancing(tasks).direction(losses, x)
    x, losses = losses_at(model, tasks, images, targets)
    slow = torch.zeros_like(images)
    for t in tasks:  # one backward per task, as in the reference code
        (g,) = torch.autograd.grad(losses[t].sum(), x, retain_graph=True)
        slow += g / losses[t].detach().view(-1, 1, 1, 1)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-7)


def test_dgba_direction_is_invariant_to_scaling_one_task_loss():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()
    dgba = DynamicGradientBalancing(tasks)
    x, losses = losses_at(model, tasks, images, targets)
    plain = dgba.direction(losses, x)
    x, losses = losses_at(model, tasks, images, targets, scale={"depth_zbuffer": 1000.0})
    scaled = dgba.direction(losses, x)
    torch.testing.assert_close(plain, scaled, rtol=1e-4, atol=1e-7)


def test_single_pgd_equals_textbook_sign_gradient_loop():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()
    eps, steps = 8 / 255, 5
    attack = build_attack("single", "pgd", tasks, eps=8, steps=steps, target_task="normal")
    adv = attack(model, images, targets)
    x = images.clone()
    for _ in range(steps):
        x.requires_grad_(True)
        loss = tasks["normal"].loss(model(x)["normal"], targets["normal"]).sum()
        (grad,) = torch.autograd.grad(loss, x)
        x = x.detach() + (eps / steps) * grad.sign()
        x = torch.min(torch.max(x, images - eps), images + eps).clamp(0, 1)
    torch.testing.assert_close(adv, x, rtol=0, atol=1e-7)


def test_total_with_one_task_equals_single():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch()
    only_depth = {"depth_zbuffer": tasks["depth_zbuffer"]}
    total = build_attack("total", "apgd", only_depth, eps=4, steps=6)
    single = build_attack("single", "apgd", tasks, eps=4, steps=6, target_task="depth_zbuffer")
    assert torch.equal(total(model, images, targets), single(model, images, targets))


def test_apgd_checkpoints_match_formula():
    # p = 0, .22, .41, .57, .70, .80, .87, .93, .99 (increments .19, .16, .13, .10, .07, .06...)
    assert checkpoints(100) == [0, 22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(10) == [0, 3, 5, 6, 7, 8, 9, 10]
    assert checkpoints(1000)[:4] == [0, 220, 410, 570]


def run_apgd(scores: torch.Tensor, steps: int):
    """Drive APGD with a constructed score sequence ``scores`` (k, B) and fixed directions;
    iterate k is recorded so the best point is identifiable."""
    batch = scores.shape[1]
    clean = torch.full((batch, 1, 1, 2), 0.5)
    direction = torch.tensor([1.0, -1.0]).expand(batch, 1, 1, 2).clone()
    rule, eps = AutoPGD(), 8 / 255
    state = rule.init(clean, clean, eps, None, steps)
    x, iterates = clean, []
    for k in range(scores.shape[0]):
        iterates.append(x)
        carry = {"losses": {"k": torch.full((batch,), float(k))}}  # rides with the best point
        x = rule.update(state, x, direction, scores[k], k, carry)
    return rule, state, x, iterates, clean, direction, eps


def test_apgd_halving_and_restart_from_best():
    # checkpoint w_1 = 22 for 100 steps. Sample 0 rises every step: keeps eta. Sample 1 falls
    # after k=0: oscillation condition (0 increases < 0.75 * 22) -> halve, restart from x_0.
    # Sample 2 falls once, then rises 21 times but stays below its k=0 best: only the
    # "not halved last time and best not improved" condition holds -> halve, restart.
    k = torch.arange(23, dtype=torch.float32)
    scores = torch.stack([k, -k, torch.where(k == 0, 100.0, k - 1)], dim=1)
    rule, state, x_next, iterates, clean, direction, eps = run_apgd(scores, steps=100)
    assert state["eta"].tolist() == pytest.approx([2 * eps, eps, eps])
    assert state["halved_last"].tolist() == [False, True, True]
    best = iterates[0]  # the best point of samples 1 and 2 is x_0
    z = project(best + eps * direction.sign(), clean, eps)
    restarted = project(best + 0.75 * (z - best), clean, eps)  # no momentum after a restart
    torch.testing.assert_close(x_next[1:], restarted[1:])
    assert not torch.equal(x_next[0], restarted[0])
    final = {"losses": {"k": torch.full((3,), 23.0)}}
    x_best, score_best = rule.finish(state, x_next, torch.tensor([-1.0, -1.0, -1.0]), final)
    torch.testing.assert_close(x_best[1:], best[1:])  # returns each sample's best point
    torch.testing.assert_close(x_best[0], iterates[22][0])
    assert score_best.tolist() == [22.0, 0.0, 100.0]
    carry = state["final_carry"]  # the carry of each returned (best) point
    assert carry["losses"]["k"].tolist() == [22.0, 0.0, 0.0]
