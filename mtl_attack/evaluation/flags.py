"""Sanity flags of an attack result: what the counters saw, and what to do about it.

After AutoAttack's ``checks.py`` (Croce & Hein 2020) and its ``flags_doc.md``. Every flag comes
from :class:`~mtl_attack.attacks.AttackStats` counters summed over the test split (stored as the
entry's ``diagnostics``), so a result's flags can be rebuilt from results.json alone. Each flag
is ``{"flag": name, "message": what it saw + what to do}``:

- ``zero_gradient``: all-zero input gradient at the first step (masked or saturated gradients);
- ``nonfinite_gradient``: a NaN or infinite input gradient at some step;
- ``objective_not_raised``: on average the attack did not raise its objective above clean;
- ``objective_falling``: the last iterate scored below the start on most samples (the direction
  does not ascend: a backward pass that does not match the forward);
- ``outside_budget``: a perturbation left the eps-ball or [0, 1] (a bug, always);
- ``gradient_masking``: the gradient-free attack beat every white-box attack on some samples
  (``attack=standard``);
- ``randomness``: two identical forward passes gave different outputs (``attack=standard``
  then averages over several draws, EOT).
"""

from __future__ import annotations

from collections.abc import Mapping

from mtl_attack.attacks import AttackStats

#: every flag: what it saw (formatted with the counters) and what to do
MESSAGES = {
    "zero_gradient": (
        "{zero_gradient} sample runs had an all-zero input gradient at the first step, so the "
        "white-box attack could not move them (masked, quantized or saturated gradients); trust "
        "only a gradient-free attack on this model (attack=standard runs Square) or make its "
        "forward differentiable (e.g. a straight-through estimator for rounding)"
    ),
    "nonfinite_gradient": (
        "{nonfinite_gradient} sample runs had a NaN or infinite input gradient, where the steps "
        "mean nothing: find the operation that overflows (torch.autograd.detect_anomaly) and "
        "clamp it, or rely on a gradient-free attack"
    ),
    "objective_not_raised": (
        "the attack did not raise its objective on average (score {adv:.4g} vs clean {clean:.4g} "
        "per sample): check the model's input range ([0, 1], normalization inside the model) "
        "and its gradients"
    ),
    "objective_falling": (
        "the objective fell across the steps on {falling} of {scored} samples (the last iterate "
        "scored below the start): the input gradient does not point uphill, e.g. a backward "
        "pass that does not match the forward; check it with torch.autograd.gradcheck and trust "
        "a gradient-free attack meanwhile"
    ),
    "outside_budget": (
        "{outside_budget} adversarial images left the eps-ball or [0, 1]: a bug in the attack; "
        "report it, the numbers are not valid"
    ),
    "gradient_masking": (
        "the gradient-free Square attack beat every white-box attack on the worst task on "
        "{square_wins} of the {square_samples} samples it attacked: possible gradient masking, "
        "so white-box numbers understate the damage; the verdict keeps Square's images; look "
        "for non-differentiable or randomized parts of the model"
    ),
    "randomness": (
        "the model's outputs changed between two identical forward passes on {randomized} "
        "batches: it is randomized, so attack=standard averaged the losses over several draws "
        "(EOT) and its numbers vary between runs; evaluate the deterministic model unless the "
        "randomness is part of the defense"
    ),
}
FLAGS = tuple(MESSAGES)


def stats_of(diagnostics: AttackStats | Mapping) -> AttackStats:
    """Counters from an entry's ``diagnostics`` (keys missing in older files count 0)."""
    if isinstance(diagnostics, AttackStats):
        return diagnostics
    known = AttackStats().as_dict()
    return AttackStats(**{k: v for k, v in diagnostics.items() if k in known})


def raised(s: AttackStats) -> dict[str, bool]:
    """Which flags the counters raise."""
    return {
        "zero_gradient": s.zero_gradient > 0,
        "nonfinite_gradient": s.nonfinite_gradient > 0,
        "objective_not_raised": s.scored > 0 and s.adv_score <= s.clean_score,
        "objective_falling": s.scored > 0 and s.falling * 2 > s.scored,
        "outside_budget": s.outside_budget > 0,
        "gradient_masking": s.square_wins > 0,
        "randomness": s.randomized > 0,
    }


def sanity_checks(diagnostics: AttackStats | Mapping) -> list[dict[str, str]]:
    """``[{"flag", "message"}]`` raised by one result's counters (module docstring)."""
    s = stats_of(diagnostics)
    per_sample = max(s.scored, 1)
    values = s.as_dict() | {"adv": s.adv_score / per_sample, "clean": s.clean_score / per_sample}
    return [
        {"flag": name, "message": MESSAGES[name].format(**values)}
        for name, on in raised(s).items()
        if on
    ]


def sanity_flags(diagnostics: AttackStats | Mapping) -> list[str]:
    """The names of :func:`sanity_checks` (an entry's ``flags``)."""
    return [c["flag"] for c in sanity_checks(diagnostics)]
