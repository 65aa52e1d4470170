"""Every sanity flag of issue 20, raised by a model that has the problem and not by the same
model without it; each flag's message says what it saw (counts) and what to do."""

from __future__ import annotations

import pytest

from mtl_attack.attacks import build_attack
from mtl_attack.evaluation import evaluate_robustness, sanity_checks, verdicts
from tests.attack_setup import single_thread, tiny_tasks
from tests.standard_setup import (
    InputLayer,
    NaNGradient,
    NoisyInput,
    ReverseGradient,
    RoundWithoutGradient,
    fitted_tiny_model,
    small_standard,
    tiny_loader,
)

one_thread = pytest.fixture(autouse=True, scope="module")(single_thread)
LABEL = {"objective": "standard", "step": "apgd", "eps": 8, "target_task": None}


@pytest.fixture(scope="module")
def fitted():
    tasks, loader = tiny_tasks(), tiny_loader()
    return tasks, loader, fitted_tiny_model(tasks, loader)


def checks_of(model, tasks, loader, objective="total") -> dict[str, str]:
    """The flags of one white-box attack (APGD, 5 steps, eps 8) over the loader."""
    attack = build_attack(objective, "apgd", tasks, eps=8, steps=5)
    (entry,) = evaluate_robustness(model, tasks, loader, [attack])["attacks"]
    assert entry["flags"] == [c["flag"] for c in sanity_checks(entry["diagnostics"])]
    return {c["flag"]: c["message"] for c in sanity_checks(entry["diagnostics"])}


def standard_flags(model, tasks, loader, **budget) -> tuple[dict[str, str], object]:
    attack = small_standard(tasks, 8, **budget)
    result = evaluate_robustness(model, tasks, loader, [(LABEL, attack)])
    (verdict,) = verdicts(result["attacks"], 1, "smoke", {})
    return {f["flag"]: f["message"] for f in verdict["flags"]}, attack


@pytest.mark.parametrize(
    "layer,flag,saw",
    [
        (RoundWithoutGradient, "zero_gradient", "8 sample runs had an all-zero input gradient"),
        (NaNGradient, "nonfinite_gradient", "8 sample runs had a NaN or infinite"),
        (ReverseGradient, "objective_falling", "fell across the steps on 8 of 8 samples"),
    ],
)
def test_gradient_flags(fitted, layer, flag, saw):
    tasks, loader, model = fitted
    raised = checks_of(InputLayer(model, layer), tasks, loader)
    assert flag in raised and saw in raised[flag]
    assert flag not in checks_of(model, tasks, loader)  # the same model, gradients intact


def test_gradient_masking_flag(fitted):
    tasks, loader, model = fitted
    raised, _ = standard_flags(InputLayer(model, RoundWithoutGradient), tasks, loader)
    assert (
        "gradient_masking" in raised and "possible gradient masking" in raised["gradient_masking"]
    )
    clean, _ = standard_flags(model, tasks, loader, steps=5, queries=5)
    assert "gradient_masking" not in clean


def test_randomness_flag_and_eot(fitted):
    tasks, loader, model = fitted
    raised, attack = standard_flags(NoisyInput(model), tasks, loader)
    assert "randomness" in raised and "on 2 batches" in raised["randomness"]
    assert "(EOT)" in raised["randomness"]
    assert {m.draws for m in attack.members.values()} == {attack.eot_draws} == {2}
    clean, attack = standard_flags(model, tasks, loader)
    assert "randomness" not in clean and {m.draws for m in attack.members.values()} == {1}
