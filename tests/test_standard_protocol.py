"""The standard protocol (attack=standard) from Python: its verdict is never below any member run
alone with the same budget; on a model whose forward blocks gradients every white-box member does
nothing while Square degrades every task and the masking flag is raised; the configuration is
fixed (one line refuses any other knob than eps)."""

from __future__ import annotations

import pytest

from mtl_attack.attacks import AttackLoss, build_attack, single_targets
from mtl_attack.evaluation import evaluate_robustness, verdicts
from mtl_attack.runner import build_attacks
from tests.attack_setup import single_thread, tiny_tasks
from tests.conftest import compose_config
from tests.standard_setup import (
    InputLayer,
    RoundWithoutGradient,
    fitted_tiny_model,
    small_protocol,
    small_standard,
    tiny_loader,
)

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
EPS = 8
LABEL = {"objective": "standard", "step": "apgd", "eps": EPS, "target_task": None}


@pytest.fixture(scope="module")
def fitted():
    tasks, loader = tiny_tasks(), tiny_loader()
    return tasks, loader, fitted_tiny_model(tasks, loader)


def members_alone(tasks, protocol: dict) -> list:
    """Every member of the protocol as its own attack, with the protocol's budget."""
    attacks = []
    for name, spec in protocol["members"].items():
        options = {k: v for k, v in spec.items() if k not in ("objective", "loss")}
        loss = AttackLoss(spec.get("loss", "ce"), tasks, announce=False)
        single = spec["objective"] == "single"
        for target in single_targets(tasks, loss) if single else [None]:
            attack = build_attack(
                spec["objective"], "apgd", tasks, eps=EPS, steps=protocol["steps"],
                target_task=target, loss=loss, **options,
            )  # fmt: skip
            label = {"objective": name, "step": "apgd", "eps": EPS, "target_task": target}
            attacks.append((label, attack))
    return attacks


def test_verdict_is_never_below_any_member_run_alone(fitted):
    tasks, loader, model = fitted
    protocol = small_protocol(steps=4, queries=5)
    standard = small_standard(tasks, EPS, steps=4, queries=5)
    result = evaluate_robustness(model, tasks, loader, [(LABEL, standard)])
    (verdict,) = verdicts(result["attacks"], 1, "smoke", {})
    alone = evaluate_robustness(model, tasks, loader, members_alone(tasks, protocol))["attacks"]
    assert len(alone) == len(verdict["members"]) >= 6
    for entry in alone:
        assert verdict["min_degradation"] >= entry["min_degradation"], entry["objective"]
        assert verdict["avg_degradation"] >= entry["avg_degradation"], entry["objective"]
        for t in tasks:
            assert verdict["tasks"][t]["degradation"] >= entry["tasks"][t]["degradation"]
    worst = next(e for e in result["attacks"] if e["variant"] == "min")  # per-sample selection
    assert verdict["min_degradation"] >= worst["min_degradation"]
    assert verdict["min_degradation"] > 0 and verdict["queries"] > 0 and verdict["flags"] == []


def test_blocked_gradients_white_box_does_nothing_square_degrades_every_task(fitted):
    tasks, loader, fitted_model = fitted
    model = InputLayer(fitted_model, RoundWithoutGradient)  # 8-bit rounding, zero gradient
    attack = small_standard(tasks, EPS, square_share=1.0, queries=40)
    result = evaluate_robustness(model, tasks, loader, [(LABEL, attack)])
    (verdict,) = verdicts(result["attacks"], 1, "smoke", {})
    for entry in result["attacks"]:
        if entry["variant"].startswith("member/"):  # every white-box member: no change at all
            assert all(v["degradation"] == 0 for v in entry["tasks"].values())
            assert "zero_gradient" in entry["flags"]
    assert all(verdict["tasks"][t]["degradation"] > 0 for t in tasks)  # Square hurt every task
    flags = {f["flag"]: f["message"] for f in verdict["flags"]}
    assert "gradient_masking" in flags and "zero_gradient" in flags
    assert "of the 8 samples it attacked" in flags["gradient_masking"]
    batch = next(iter(loader))
    images, targets = batch["image"], {t: batch[t] for t in tasks}
    for out in attack.run_views(model, images, targets).values():
        for adv in (out.task_images or {"": out.images}).values():
            assert (adv - images).abs().max() <= EPS / 255 + 1e-6
            assert adv.min() >= 0 and adv.max() <= 1


@pytest.mark.parametrize(
    "override",
    ["attack.steps=50", "attack/step=pgd", "attack.square.p_init=0.5", "attack.version=2"],
)
def test_the_protocol_is_fixed(tmp_path, override):
    cfg = compose_config(tmp_path, ["attack=standard", override])
    with pytest.raises(ValueError, match="attack=standard is a fixed protocol.*attack=ensemble"):
        build_attacks(cfg, tiny_tasks())


def test_eps_and_the_smoke_budget_are_the_only_choices(tmp_path):
    cfg = compose_config(tmp_path, ["attack=standard", "attack.eps=[3,5]", "attack.budget=smoke"])
    built = build_attacks(cfg, tiny_tasks())
    assert [label["eps"] for label, _ in built] == [3, 5]
    members = built[0][1].members.values()
    assert {m.steps for m in members} == {2} and built[0][1].square.queries == 10
    full = build_attacks(compose_config(tmp_path, ["attack=standard"]), tiny_tasks())
    assert [label["eps"] for label, _ in full] == [2, 4, 8]
    assert {m.steps for m in full[0][1].members.values()} == {20}
    assert full[0][1].square.queries == 500 and full[0][1].square_share == 0.25
