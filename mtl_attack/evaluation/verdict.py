"""The verdict of ``attack=standard``: one record per eps, from the protocol's result entries.

The protocol's entries at one eps (label objective ``standard``) are its views: ``mean``,
``min`` (per-sample worst cases over the members and Square), ``per_task`` (each task on its own
worst images) and ``member/<label>`` (each white-box member alone, from the same run). Metrics
such as mIoU are not sums over samples, so a per-sample selection by loss changes need not
maximize a dataset-level degradation; the verdict therefore takes each number from the strongest
view that measures it, every view being a real set of adversarial images in the eps-ball:

- ``min_degradation`` (worst task) and ``avg_degradation``: the largest over the views with ONE
  image per sample (``mean``, ``min``, every member), so the verdict is never below any member
  run alone with the same budget;
- ``tasks[t]["degradation"]``: the largest over every view, ``per_task`` included (a per-task
  bound: tasks may be measured on different images).

``flags`` merges every view's sanity checks (:mod:`mtl_attack.evaluation.flags`), naming the
members that raised each. Layout (the interface ``scripts/leaderboard.py`` reads)::

    {"protocol": "standard", "version": int, "budget": "full", "eps": float,
     "min_degradation": float, "avg_degradation": float,
     "tasks": {task: {"degradation": float}}, "flags": [{"flag", "message"}],
     "queries": int, "seconds": float, "members": [label], "model": {identity},
     "sources": {"min_degradation": view, "avg_degradation": view, task: view}}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from mtl_attack.evaluation.flags import sanity_checks

PROTOCOL = "standard"
MEMBER = "member/"


def _best(entries: Sequence[Mapping], value) -> tuple[float, str | None]:
    """The largest finite ``value(entry)`` and the view it came from (NaN when none)."""
    best, source = -math.inf, None
    for e in entries:
        v = value(e)
        if v is not None and math.isfinite(v) and v > best:
            best, source = v, e.get("variant")
    return (best, source) if source is not None else (math.nan, None)


def merged_flags(entries: Sequence[Mapping]) -> list[dict[str, str]]:
    """Every view's checks, one per flag: the first message, plus who else raised it."""
    found: dict[str, tuple[str, list[str]]] = {}
    for e in entries:
        view = str(e.get("variant", ""))
        for check in sanity_checks(e.get("diagnostics", {})):
            message, views = found.setdefault(check["flag"], (check["message"], []))
            views.append(view.removeprefix(MEMBER))
    return [
        {"flag": flag, "message": f"{message} (seen in: {', '.join(views)})"}
        for flag, (message, views) in found.items()
    ]


def verdict(
    entries: Sequence[Mapping], version: int, budget: str, model: Mapping[str, Any]
) -> dict[str, Any]:
    """The verdict of the protocol's entries at ONE eps (module docstring)."""
    single = [e for e in entries if e.get("variant") != "per_task"]
    worst, worst_from = _best(single, lambda e: e["min_degradation"])
    average, average_from = _best(single, lambda e: e["avg_degradation"])
    tasks, sources = {}, {"min_degradation": worst_from, "avg_degradation": average_from}
    for task in entries[0]["tasks"]:
        value, sources[task] = _best(entries, lambda e, t=task: e["tasks"][t]["degradation"])
        tasks[task] = {"degradation": value}
    criterion = next(e for e in entries if e.get("variant") == "min")
    diagnostics = criterion.get("diagnostics", {})
    return {
        "protocol": PROTOCOL,
        "version": int(version),
        "budget": budget,
        "eps": float(entries[0]["eps"]),
        "min_degradation": worst,
        "avg_degradation": average,
        "tasks": tasks,
        "flags": merged_flags(entries),
        "queries": int(diagnostics.get("queries", 0)),
        "seconds": float(criterion["seconds"]),
        "members": [e["variant"][len(MEMBER) :] for e in entries if _is_member(e)],
        "model": dict(model),
        "sources": sources,
    }


def _is_member(entry: Mapping) -> bool:
    return str(entry.get("variant", "")).startswith(MEMBER)


def verdicts(
    entries: Sequence[Mapping], version: int, budget: str, model: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """One verdict per eps over the ``standard`` entries among ``entries`` (in eps order)."""
    by_eps: dict[float, list[Mapping]] = {}
    for e in entries:
        if e["objective"] == PROTOCOL:
            by_eps.setdefault(float(e["eps"]), []).append(e)
    return [verdict(group, version, budget, model) for _, group in sorted(by_eps.items())]
