"""The gradient-free Square attack: within eps and [0, 1], deterministic, scored by any
objective from the model's outputs only, one forward pass per query, the paper's schedule, and a
real attack on a model whose forward pass blocks every gradient."""

from __future__ import annotations

import pytest
import torch

from mtl_attack.attacks import SquareAttack, build_attack, build_objective
from mtl_attack.attacks.square import square_fraction, square_side
from tests.attack_setup import single_thread, tiny_batch, tiny_model, tiny_tasks
from tests.standard_setup import InputLayer, RoundWithoutGradient

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)


def test_schedule_halves_p_at_the_papers_points():
    # 10,000 queries: p_init until query 10, halved after 10, 50, 200, ..., 8000
    assert square_fraction(0.8, 10, 10000) == 0.8
    assert square_fraction(0.8, 11, 10000) == 0.4
    assert square_fraction(0.8, 51, 10000) == 0.2
    assert square_fraction(0.8, 8001, 10000) == pytest.approx(0.8 / 512)
    # rescaled: query 5 of 100 is query 500 of 10,000 (3 halvings passed: 10, 50, 200)
    assert square_fraction(0.8, 5, 100) == pytest.approx(0.1)
    # side = round(sqrt(p H W)), at least 1 and at most H - 1
    assert square_side(0.8, 64, 64) == 57  # sqrt(3276.8) = 57.24
    assert square_side(1e-4, 64, 64) == 1
    assert square_side(1.0, 8, 8) == 7


@pytest.mark.parametrize("objective", ["total", "dgba", "minmax", "single"])
def test_square_stays_in_the_ball_and_raises_any_objectives_score_from_its_start(objective):
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch(batch=4)
    target = "normal" if objective == "single" else None
    score = build_objective(objective, tasks, target)
    attack = SquareAttack(score, tasks, eps=8, queries=30, seed=1)
    out = attack.run(model, images, targets)
    assert (out.images - images).abs().max() <= 8 / 255 + 1e-6
    assert out.images.min() >= 0 and out.images.max() <= 1
    with torch.no_grad():  # the score and losses are the model's at the returned images
        preds = model(out.images)
        losses = {t: task.loss(preds[t], targets[t]) for t, task in tasks.items()}
        clean = {t: tasks[t].loss(p, targets[t]) for t, p in model(images).items()}
    torch.testing.assert_close(out.score, score.score(losses, clean), rtol=1e-5, atol=1e-6)
    # it only accepts improvements over its start (the stripes, drawn first from the seed)
    start = SquareAttack(score, tasks, eps=8, queries=1, seed=1).run(model, images, targets)
    assert (out.score >= start.score).all() and out.score.mean() > start.score.mean()
    again = SquareAttack(score, tasks, eps=8, queries=30, seed=1).run(model, images, targets)
    assert torch.equal(again.images, out.images)
    assert attack.stats.queries == 30 * 4 and attack.stats.outside_budget == 0


def test_square_costs_one_forward_pass_per_query():
    tasks = tiny_tasks()
    model, (images, targets) = tiny_model(tasks).eval(), tiny_batch(batch=3)
    calls = []
    model.register_forward_hook(lambda *_: calls.append(1))
    attack = SquareAttack(build_objective("total", tasks), tasks, eps=4, queries=12)
    attack.run(model, images, targets)
    assert len(calls) == 12 + 1  # the queries (the stripes are the first) + the clean pass


def test_square_attacks_a_model_whose_forward_blocks_gradients():
    tasks = tiny_tasks()
    model = InputLayer(tiny_model(tasks), RoundWithoutGradient).eval()
    images, targets = tiny_batch(batch=4)
    with torch.no_grad():
        clean = {t: tasks[t].loss(p, targets[t]) for t, p in model(images).items()}
    white = build_attack("total", "apgd", tasks, eps=8, steps=5)
    assert torch.equal(white(model, images, targets), images)  # the gradient is zero: no move
    assert white.stats.zero_gradient == 4
    square = SquareAttack(build_objective("minmax", tasks), tasks, eps=8, queries=40)
    out = square.run(model, images, targets)
    assert (out.images - images).abs().max() <= 8 / 255 + 1e-6
    for t in tasks:  # every task's loss rose on average
        assert out.losses[t].mean() > clean[t].mean(), t
