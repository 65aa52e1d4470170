"""Contract of every (objective x step rule) registered in conf/attack/**: the result stays in
the eps-ball and [0, 1]; the model's parameters, .grad and mode are unchanged; the same seed
gives the same result; the objective's score at the result is above the clean score."""

from __future__ import annotations

import pytest
import torch
from hydra import compose, initialize_config_dir

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


def composed_attack(objective: str, step: str, tasks):
    overrides = [
        f"attack={objective}",
        f"attack/step={step}",
        f"attack.eps=[{EPS}]",
        "attack.task=depth_zbuffer",
        "attack.random_start=true",
    ]
    if step != "fgsm":  # FGSM is one step of size eps by definition
        overrides.append("attack.steps=5")
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    ((label, attack),) = build_attacks(cfg, tasks)
    assert label["objective"] == objective and label["eps"] == EPS
    return attack


def test_every_file_is_covered():
    assert OBJECTIVE_FILES == ["dgba", "signsum", "single", "total"]
    assert STEP_FILES == ["apgd", "fgsm", "mim", "pgd"]


@pytest.mark.parametrize("step", STEP_FILES)
@pytest.mark.parametrize("objective", OBJECTIVE_FILES)
def test_attack_contract(objective, step):
    tasks = tiny_tasks()
    model = tiny_model(tasks).train()  # the attack must switch to eval and back
    images, targets = tiny_batch()
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    params = [p.detach().clone() for p in model.parameters()]
    attack = composed_attack(objective, step, tasks)

    adv = attack(model, images, targets)
    again = composed_attack(objective, step, tasks)(model, images, targets)

    assert not adv.requires_grad and adv.shape == images.shape
    assert (adv - images).abs().max() <= EPS / 255 + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert model.training
    for p, before in zip(model.parameters(), params):
        assert (
            p.requires_grad
            and torch.equal(p, before)
            and torch.equal(p.grad, torch.full_like(p, 0.5))
        )
    assert torch.equal(adv, again)
    model.eval()
    with torch.no_grad():
        clean = attack.losses(model, images, targets)
        score_clean = attack.objective.score(clean, clean)
        score_adv = attack.objective.score(attack.losses(model, adv, targets), clean)
    assert score_adv.mean() > score_clean.mean()
    assert attack.stats.outside_budget == 0 and attack.stats.samples == images.shape[0]
