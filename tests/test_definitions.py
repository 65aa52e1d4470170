"""Pins of the attack definitions (method.md sections 2-4) on cases small enough to work out by
hand: each test fails when its formula changes (a hand mutation of the formula survived the rest
of the suite). Objectives see linear losses ``L_t[b] = c_t . x[b] + k_t[b]``, whose input
gradient is ``c_t``; step rules are driven with given directions and scores; the attack loop
runs on models whose prediction has a zero input gradient, so a sign step stays where it starts.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mtl_attack.attacks import (
    AutoPGD,
    DynamicGradientBalancing,
    MomentumSign,
    SignSum,
    TotalLoss,
    build_attack,
    checkpoints,
)
from mtl_attack.tasks import Depth
from tests.attack_setup import single_thread

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def linear_losses(x: torch.Tensor, coeffs: dict, offsets: dict) -> dict[str, torch.Tensor]:
    """``{t: L_t}`` with ``L_t[b] = coeffs[t] . x[b] + offsets[t][b]``. Shape: x (B, 1, 1, D)."""
    return {
        t: (x.flatten(1) * torch.tensor(c)).sum(1) + torch.tensor(offsets[t])
        for t, c in coeffs.items()
    }


# --- objectives (method.md section 3) ----------------------------------------------------------


@pytest.mark.parametrize("batched", [True, False])
def test_signsum_direction_is_the_per_coordinate_vote(batched):
    """SIGNSUM: direction = sum_t sign(g_t), not the raw gradient sum (method.md section 3)."""
    x = torch.zeros(2, 1, 1, 3, requires_grad=True)
    coeffs = {"a": [3.0, -1.0, 0.5], "b": [-1.0, -1.0, 0.0], "c": [-1.0, 2.0, 0.25]}
    losses = linear_losses(x, coeffs, dict.fromkeys(coeffs, [1.0, 1.0]))
    direction = SignSum(list(coeffs), batched=batched).direction(losses, x)
    # votes: (+1 -1 -1, -1 -1 +1, +1 +0 +1) = (-1, -1, 2); the raw sum would be (1, 0, 0.75)
    expected = torch.tensor([-1.0, -1.0, 2.0]).expand(2, 1, 1, 3)
    torch.testing.assert_close(direction, expected)


def test_dgba_direction_weights_each_task_by_its_own_per_sample_loss():
    """DGBA: d = sum_t g_t / L_t per sample; a zero loss is clamped away (zero weight, finite
    direction), a small positive loss keeps its 1/L weight (method.md section 3)."""
    x = torch.zeros(2, 1, 1, 2, requires_grad=True)
    coeffs = {"a": [2.0, 1.0], "b": [10.0, -20.0], "zero": [1.0, 1.0], "tiny": [1e-4, 0.0]}
    offsets = {"a": [4.0, 1.0], "b": [40.0, 10.0], "zero": [0.0, 0.0], "tiny": [1e-4, 1e-4]}
    losses = linear_losses(x, coeffs, offsets)
    direction = DynamicGradientBalancing(list(coeffs)).direction(losses, x)
    # sample 0: (2, 1)/4 + (10, -20)/40 + 0 + (1e-4, 0)/1e-4 = (0.5 + 0.25 + 1, 0.25 - 0.5)
    # sample 1: (2, 1)/1 + (10, -20)/10 + 0 + (1, 0) = (2 + 1 + 1, 1 - 2)
    expected = torch.tensor([[1.75, -0.25], [4.0, -1.0]]).view(2, 1, 1, 2)
    torch.testing.assert_close(direction, expected)


@pytest.mark.parametrize("objective", [DynamicGradientBalancing, SignSum])
def test_dgba_and_signsum_score_is_the_mean_relative_loss_change(objective):
    """Score = (1/T) sum_t (L_t - L_t(clean)) / L_t(clean), per sample (method.md sections 3
    and 4, the scalar APGD tracks)."""
    adv = {"a": torch.tensor([3.0, 1.5]), "b": torch.tensor([30.0, 5.0])}
    clean = {"a": torch.tensor([2.0, 1.0]), "b": torch.tensor([20.0, 10.0])}
    score = objective(["a", "b"]).score(adv, clean)
    # sample 0: (1/2 + 10/20) / 2 = 0.5; sample 1: (0.5/1 - 5/10) / 2 = 0
    torch.testing.assert_close(score, torch.tensor([0.5, 0.0]))


def test_total_weights_the_task_losses():
    """TOTAL: ascend sum_t w_t L_t, unlisted tasks weigh 1 (method.md section 3)."""
    x = torch.zeros(2, 1, 1, 2, requires_grad=True)
    coeffs = {"a": [2.0, 1.0], "b": [10.0, -20.0]}
    losses = linear_losses(x, coeffs, {"a": [4.0, 1.0], "b": [40.0, 10.0]})
    total = TotalLoss(list(coeffs), weights={"a": 2.0})
    # 2 * (2, 1) + (10, -20) = (14, -18); scores 2 * 4 + 40 = 48 and 2 * 1 + 10 = 12
    expected = torch.tensor([14.0, -18.0]).expand(2, 1, 1, 2)
    torch.testing.assert_close(total.direction(losses, x), expected)
    torch.testing.assert_close(total.score(losses, losses), torch.tensor([48.0, 12.0]))


# --- MIM (method.md section 4) -----------------------------------------------------------------


def mim_two_steps(rule: MomentumSign) -> torch.Tensor:
    """Two MIM steps from 0.5 with eps 0.1 and step 0.01 (no projection) along given directions.
    Sample 0: d1 = (10, -1), d2 = (-0.85, 0.15); sample 1: d1 = (600, -400), d2 = (0.25, 0.25)."""
    clean = torch.full((2, 1, 1, 2), 0.5)
    d1 = torch.tensor([[10.0, -1.0], [600.0, -400.0]]).view(2, 1, 1, 2)
    d2 = torch.tensor([[-0.85, 0.15], [0.25, 0.25]]).view(2, 1, 1, 2)
    state = rule.init(clean, clean, 0.1, 0.01, 2)
    x = rule.update(state, clean, d1, torch.zeros(2), 0)
    return rule.update(state, x, d2, torch.zeros(2), 1)


def test_mim_normalizes_each_samples_direction_by_its_l1_norm_with_mu_1():
    """MIM: g <- mu g + d / ||d||_1 per sample, x <- x + alpha sign(g), mu = 1.0 (method.md
    section 4)."""
    assert MomentumSign().momentum == 1.0
    x = mim_two_steps(MomentumSign())
    # sample 0: g1 = (10, -1)/11 = (.909, -.091) -> x1 = (.51, .49); g2 = g1 + (-.85, .15)/1
    #   = (.059, .059) -> x2 = (.52, .50). Without the L1 division g2 = (9.15, -.85) -> .48;
    #   with a batch-wide L1 (1011, then 1.5) g2 = (-.557, .099) -> x2 = (.50, .50);
    #   with mu = 0.9 g2 = (-.032, .068) -> (.50, .50)
    # sample 1: g1 = (.6, -.4) -> (.51, .49); g2 = (.6, -.4) + (.5, .5) = (1.1, .1) -> (.52, .50)
    torch.testing.assert_close(x, torch.tensor([[0.52, 0.50], [0.52, 0.50]]).view(2, 1, 1, 2))


def test_mim_momentum_decay_mu():
    """MIM with mu = 0.5: the old direction counts half (method.md section 4)."""
    x = mim_two_steps(MomentumSign(momentum=0.5))
    # sample 0: g2 = .5 (.909, -.091) + (-.85, .15) = (-.395, .105) -> x2 = (.50, .50)
    # sample 1: g2 = .5 (.6, -.4) + (.5, .5) = (.8, .3) -> (.52, .50)
    torch.testing.assert_close(x, torch.tensor([[0.50, 0.50], [0.52, 0.50]]).view(2, 1, 1, 2))


# --- APGD (method.md section 4) ----------------------------------------------------------------

EPS = 8 / 255


def drive_apgd(scores: list[list[float]], steps: int, directions=None):
    """Feed APGD the score of each update (rows k, one column per sample); direction (1, -1).
    Returns the rule, its state, the last iterate and every iterate the rule was given."""
    scores = torch.tensor(scores)
    batch = scores.shape[1]
    clean = torch.full((batch, 1, 1, 2), 0.5)
    rule = AutoPGD()
    state = rule.init(clean, clean, EPS, None, steps)
    x, seen = clean, []
    for k in range(scores.shape[0]):
        seen.append(x)
        d = torch.tensor([1.0, -1.0]) if directions is None else directions[k]
        x = rule.update(state, x, d.expand(batch, 1, 1, 2), scores[k], k)
    return rule, state, x, seen


def test_apgd_first_step_has_no_momentum_then_a_is_075():
    """APGD: x_1 = P(x_0 + 2 eps sign(d)); then x_{k+1} = P(x_k + 0.75 (z - x_k) + 0.25 (x_k -
    x_{k-1})), z = P(x_k + eta sign(d)) (method.md section 4)."""
    dirs = [torch.tensor([1.0, -1.0]), torch.tensor([-1.0, -1.0])]
    _, _, x2, (x0, x1) = drive_apgd([[0.0], [1.0]], steps=10, directions=dirs)
    e = EPS
    # x1 = P(0.5 + 2e (1, -1)) = (0.5 + e, 0.5 - e) (momentum there would give 0.5 +- 0.75 e)
    torch.testing.assert_close(x1.flatten(), torch.tensor([0.5 + e, 0.5 - e]))
    # z = P(x1 - 2e) = (0.5 - e, 0.5 - e); x2 = x1 + .75 (z - x1) + .25 (x1 - x0)
    #   = (0.5 + e - 1.5 e + 0.25 e, 0.5 - e + 0 - 0.25 e -> projected 0.5 - e)
    torch.testing.assert_close(x2.flatten(), torch.tensor([0.5 - 0.25 * e, 0.5 - e]))


def up_up_up_down(groups: int, last_down: int = 1) -> list[float]:
    """0, then groups of (+1, +1, +1, -0.5); the last group ends with ``last_down`` falls."""
    values, v = [0.0], 0.0
    for g in range(groups):
        falls = last_down if g == groups - 1 else 1
        for i in range(4):
            v += -0.5 if i >= 4 - falls else 1.0
            values.append(v)
    return values


def test_apgd_step_size_halving_conditions_at_checkpoints():
    """APGD: at checkpoint w_j halve eta when (1) the score rose in fewer than rho = 0.75 of the
    steps since w_{j-1} (a tie is not a rise), or (2) eta was not halved at w_{j-1} and the best
    score has not improved since w_{j-1} (method.md section 4)."""
    assert checkpoints(200)[:3] == [0, 44, 82]  # first span 44: rho * 44 = 33 rises
    s0 = up_up_up_down(11)  # 33 rises out of 44, best 28 at k = 43: keeps eta
    s1 = up_up_up_down(11, last_down=2)  # 32 rises, best improved: condition (1) halves
    s2 = [0.0] + [1.0] * 44  # one rise then ties, best improved: condition (1) halves
    s3 = [100.0] + [k - 1.0 for k in range(1, 45)]  # 43 rises, best 100 never beaten: (2)
    first = list(zip(s0, s1, s2, s3))  # updates k = 0..44
    # k = 45..82 (span 38, rho * 38 = 28.5): s0 falls once then rises 37 times below its best
    # 28: (2) halves it; s1, s2 set a new best every step; s3 rises 38 times below 100 but was
    # halved at 44, so (2) does not apply
    second = [(-100.0 + k - 45, 1000.0 + k, 1000.0 + k, 44.0 + k - 45) for k in range(45, 83)]
    _, state, _, _ = drive_apgd([list(r) for r in first], steps=200)
    assert state["eta"].tolist() == pytest.approx([2 * EPS, EPS, EPS, EPS])
    assert state["halved_last"].tolist() == [False, True, True, True]
    _, state, _, _ = drive_apgd([list(r) for r in first + second], steps=200)
    assert state["eta"].tolist() == pytest.approx([EPS, EPS, EPS, EPS])
    assert state["halved_last"].tolist() == [True, False, False, False]


def test_apgd_best_point_is_strict_and_includes_the_last_iterate():
    """APGD keeps each sample's best point with a strict increase (a tie keeps the earlier
    point) and scores the last iterate too (method.md section 4)."""
    rule, state, x2, (x0, x1) = drive_apgd([[5.0, 5.0], [5.0, 3.0]], steps=10)
    assert not torch.equal(x1, x0) and not torch.equal(x2, x0)
    best, score = rule.finish(state, x2, torch.tensor([1.0, 9.0]))
    # sample 0: 5 at x0, a tie 5 at x1, 1 at x2 -> x0; sample 1: 5, 3, then 9 at x2 -> x2
    torch.testing.assert_close(best[0], x0[0])
    torch.testing.assert_close(best[1], x2[1])
    assert score.tolist() == [5.0, 9.0]


# --- the attack loop: random start and restarts (method.md sections 2 and 4) -------------------


class FlatDepth(nn.Module):
    """Predicts depth 1 whatever the image: the input gradient is zero, so sign steps stay."""

    def forward(self, x):
        return {"depth_zbuffer": x[:, :1] * 0.0 + 1.0}


class RoundedDepth(nn.Module):
    """Predicts each image's mean, rounded to 1e-4: a zero input gradient (sign steps stay),
    but a loss |pred - 1| that is higher the darker the starting point."""

    def forward(self, x):
        return {"depth_zbuffer": torch.round(x.mean(dim=(1, 2, 3), keepdim=True) * 1e4) / 1e4}


class RedDepth(nn.Module):
    """Predicts depth = the red channel: the loss |red - 1| rises as red falls."""

    def forward(self, x):
        return {"depth_zbuffer": x[:, :1]}


def test_fgsm_is_one_step_of_size_eps():
    """FGSM: one step of size eps along sign(direction); steps and step_size do not apply
    (method.md section 4)."""
    tasks = {"depth_zbuffer": Depth()}
    attack = build_attack("total", "fgsm", tasks, eps=8, steps=10, step_size=2)
    assert attack.steps == 1 and attack.step_size == pytest.approx(EPS)
    images = torch.full((2, 3, 2, 2), 0.5)
    adv = attack(RedDepth(), images, {"depth_zbuffer": torch.ones(2, 1, 2, 2)})
    # d/d red |red - 1| = -1 < 0: red moves down by eps; green and blue have zero gradient
    torch.testing.assert_close(adv[:, 0], torch.full((2, 2, 2), 0.5 - EPS))
    torch.testing.assert_close(adv[:, 1:], images[:, 1:])


def test_random_start_is_uniform_over_the_whole_eps_ball():
    """Random start: x_0 = x + U(-eps, eps) per pixel (method.md section 4)."""
    tasks = {"depth_zbuffer": Depth()}
    images = torch.full((4, 3, 8, 8), 0.5)
    targets = {"depth_zbuffer": torch.full((4, 1, 8, 8), 2.0)}
    attack = build_attack("total", "pgd", tasks, eps=8, steps=1, random_start=True, seed=3)
    delta = (attack(FlatDepth(), images, targets) - images) / EPS  # 768 draws in [-1, 1]
    assert delta.abs().max() <= 1 + 1e-5
    assert delta.min() < -0.9 and delta.max() > 0.9  # both ends of the ball are reached
    assert 0.4 < (delta.abs() < 0.5).float().mean() < 0.6  # half of U(-1, 1) lies in (-.5, .5)
    assert delta.mean().abs() < 0.1


def test_restarts_keep_each_samples_best_run():
    """Restarts: each sample keeps the run with the highest score, run by run (not the last run,
    not a batch-level choice); the first run starts at the clean image (method.md section 4)."""
    tasks = {"depth_zbuffer": Depth()}
    images = torch.full((8, 3, 2, 2), 0.5)
    targets = {"depth_zbuffer": torch.ones(8, 1, 2, 2)}
    attack = build_attack("total", "pgd", tasks, eps=8, steps=1, restarts=2, seed=0)
    model = RoundedDepth()
    adv = attack(model, images, targets)
    loss = tasks["depth_zbuffer"].loss
    with torch.no_grad():
        clean_loss = loss(model(images)["depth_zbuffer"], targets["depth_zbuffer"])
        adv_loss = loss(model(adv)["depth_zbuffer"], targets["depth_zbuffer"])
    moved = (adv != images).flatten(1).any(dim=1)
    # the random run replaced the clean run exactly where it scored higher; a kept-last or
    # batch-level choice would move every sample (some to a lower loss) or none
    assert (adv_loss[moved] > clean_loss[moved]).all()
    assert 0 < int(moved.sum()) < 8  # this seed: some samples gain from the restart, some not
