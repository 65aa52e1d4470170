"""Contract of every (objective x step rule) registered in conf/attack/**: the result stays in
the eps-ball and [0, 1]; the model's parameters, .grad and mode are unchanged; the same seed
gives the same result; the objective's score at the result is above the clean score. Files with
variants (every aggregator, minmax on metric weights) are checked in every variant; attacks
with several results (ensemble criteria, frontier points) in every result. Every attack loss
(``attack.loss``) keeps the contract under PGD and APGD."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

from mtl_attack.attacks import AGGREGATORS, LOSSES, IterativeAttack
from mtl_attack.runner import build_attacks
from tests.attack_setup import (
    CONF,
    OBJECTIVE_FILES,
    STEP_FILES,
    single_thread,
    tiny_batch,
    tiny_model,
    tiny_tasks,
)

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)

EPS = 4
# conf/attack files whose objective has variants the contract must also hold for
VARIANTS = {
    "aggregate": [f"attack.aggregator={a}" for a in AGGREGATORS],
    "minmax": ["attack.weights_from=loss", "attack.weights_from=metric"],
    "frontier": ["attack.resolution=2"],  # 6 points: the contract, not the frontier's shape
}
# attack=standard is a fixed protocol (no steps, step rule or task to set): its own case below
CASES = [
    pytest.param(name, variant, id=f"{name}[{variant.split('=')[-1]}]" if variant else name)
    for name in OBJECTIVE_FILES
    if name != "standard"
    for variant in VARIANTS.get(name, [None])
]


def composed_attack(
    objective: str, step: str, tasks, variant: str | None = None, loss: str = "ce"
):
    overrides = [f"attack={objective}", f"attack.eps=[{EPS}]"]
    if objective == "standard":  # fixed: only its test budget may be chosen
        overrides.append("attack.budget=smoke")
    else:
        overrides += [
            f"attack/step={step}",
            "attack.task=depth_zbuffer",
            "attack.random_start=true",
            f"attack.loss={loss}",
        ]
    overrides += [variant] if variant else []
    if step != "fgsm" and objective != "standard":  # FGSM is one step of size eps
        overrides.append("attack.steps=5")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    ((label, attack),) = build_attacks(cfg, tasks)
    assert label["objective"] == objective and label["eps"] == EPS
    return attack


def test_every_file_is_covered():
    assert OBJECTIVE_FILES == [
        "aggregate",
        "cyclic",
        "dgba",
        "ensemble",
        "frontier",
        "minmax",
        "relative",
        "signsum",
        "single",
        "standard",
        "total",
    ]
    assert STEP_FILES == ["apgd", "fgsm", "mim", "pgd"]


@pytest.mark.parametrize("step", STEP_FILES)
@pytest.mark.parametrize("objective,variant", CASES)
def test_attack_contract(objective, variant, step):
    check_contract(objective, variant, step)


def test_standard_protocol_contract():
    check_contract("standard", None, "apgd")


@pytest.mark.parametrize("loss", LOSSES[1:])
@pytest.mark.parametrize("step", ["pgd", "apgd"])
@pytest.mark.parametrize("objective,variant", CASES)
def test_attack_contract_with_each_loss(objective, variant, step, loss):
    check_contract(objective, variant, step, loss)


def check_contract(objective, variant, step, loss="ce"):
    tasks = tiny_tasks()
    model = tiny_model(tasks).train()  # the attack must switch to eval and back
    images, targets = tiny_batch()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    params = [p.detach().clone() for p in model.parameters()]
    attack = composed_attack(objective, step, tasks, variant, loss)

    views = attack.run_views(model, images, targets)
    again = composed_attack(objective, step, tasks, variant, loss)
    again = again.run_views(model, images, targets)

    assert model.training
    for p, before in zip(model.parameters(), params):
        assert (
            p.requires_grad
            and torch.equal(p, before)
            and torch.equal(p.grad, torch.full_like(p, 0.5))
        )
    for view, out in views.items():
        for name, adv in (out.task_images or {"": out.images}).items():
            assert not adv.requires_grad and adv.shape == images.shape
            assert (adv - images).abs().max() <= EPS / 255 + 1e-6
            assert adv.min() >= 0 and adv.max() <= 1
            assert torch.equal(adv, (again[view].task_images or {"": again[view].images})[name])
        stats = attack.view_stats()[view]
        assert stats.outside_budget == 0 and stats.samples == stats.scored == images.shape[0]
        assert stats.adv_score > stats.clean_score, view  # the objective rose (on average)
    if isinstance(attack, IterativeAttack):  # the score again, from the model itself
        model.eval()
        with torch.no_grad():
            clean = attack.losses(model, images, targets)
            score_clean = attack.objective.score(clean, clean)
            score_adv = attack.objective.score(
                attack.losses(model, views[""].images, targets), clean
            )
        assert score_adv.mean() > score_clean.mean()
        assert torch.equal(attack(model, images, targets), views[""].images)
