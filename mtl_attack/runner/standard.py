"""``attack=standard`` in the runner: the fixed protocol's check, its attacks and its verdicts.

The protocol lives in ONE place, ``conf/attack/standard.yaml`` (with ``version``); this module
reads that file to refuse any change other than ``attack.eps`` and ``attack.budget`` (``smoke``,
for tests), builds one :class:`~mtl_attack.attacks.Standard` per eps, and turns the protocol's
result entries into one verdict per eps (:mod:`mtl_attack.evaluation.verdict`), logged as
``standard/eps<k>/...`` and the ``standard/verdicts`` table.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mtl_attack.attacks import Standard, build_standard
from mtl_attack.evaluation.keys import VERDICT_TABLE, verdict_record
from mtl_attack.evaluation.verdict import verdicts
from mtl_attack.loggers import Logger
from mtl_attack.runner.errors import ConfigError
from mtl_attack.runner.members import eps_budgets
from mtl_attack.tasks import Task

log = logging.getLogger("mtl_attack")
CONF = Path(__file__).resolve().parents[2] / "conf" / "attack"
#: the only keys a run may set
FREE = ("eps", "budget")


def fixed_protocol() -> dict[str, Any]:
    """``conf/attack/standard.yaml`` and its step rule, as the file defines them."""
    path = CONF / "standard.yaml"
    if not path.is_file():
        raise ConfigError(f"attack=standard: the protocol file {path} is missing; reinstall")
    spec = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    spec.pop("defaults", None)
    step = OmegaConf.to_container(OmegaConf.load(CONF / "step" / "apgd.yaml"), resolve=True)
    return spec | step


def first_difference(given: Any, expected: Any, path: str = "attack") -> str | None:
    """The first key path where ``given`` differs from ``expected`` (None when equal)."""
    if isinstance(given, dict) and isinstance(expected, dict):
        for key in [*expected, *(k for k in given if k not in expected)]:
            if key not in given or key not in expected:
                return f"{path}.{key}"
            found = first_difference(given[key], expected[key], f"{path}.{key}")
            if found:
                return found
        return None
    return None if given == expected else path


#: what :func:`~mtl_attack.attacks.build_standard` reads (a ``smoke`` budget replaces some)
PROTOCOL_KEYS = (
    "members", "loss", "square", "seed", "steps", "queries", "square_share", "eot_draws",
)  # fmt: skip


def protocol_of(acfg: DictConfig) -> dict[str, Any]:
    """The resolved protocol at its budget; any change beyond eps and budget is refused."""
    given = OmegaConf.to_container(acfg, resolve=True)
    expected = fixed_protocol()
    changed = first_difference(
        {k: v for k, v in given.items() if k not in FREE},
        {k: v for k, v in expected.items() if k not in FREE},
    )
    if changed:
        raise ConfigError(
            f"attack=standard is a fixed protocol (version {expected['version']}): {changed} "
            "cannot change, only attack.eps can (and attack.budget=smoke, for tests); for a "
            "custom evaluation use attack=ensemble"
        )
    if given["budget"] not in ("full", "smoke"):
        raise ConfigError(f"attack.budget must be full or smoke, got {given['budget']!r}")
    protocol = {k: given[k] for k in PROTOCOL_KEYS}
    return protocol | (given["smoke"] if given["budget"] == "smoke" else {})


def standard_attacks(acfg: DictConfig, tasks: dict[str, Task]) -> list[tuple[dict, Standard]]:
    """One :class:`~mtl_attack.attacks.Standard` per eps, labelled ``standard``."""
    protocol = protocol_of(acfg)
    attacks = []
    for eps in eps_budgets(acfg):
        label = {"objective": "standard", "step": "apgd", "eps": eps, "target_task": None}
        try:
            attacks.append((label, build_standard(tasks, eps, protocol)))
        except ValueError as err:
            raise ConfigError(f"attack=standard: {err}") from None
    return attacks


def standard_verdicts(cfg: DictConfig, entries: list[dict], context: dict, model) -> list[dict]:
    """The verdicts of a run's ``standard`` entries; the model's identity is ``context`` plus
    the imported weights' sha256 when known."""
    source = getattr(model, "source", None) or {}
    identity = dict(context) | (
        {"weights_sha256": source["sha256"]} if source.get("sha256") else {}
    )
    return verdicts(entries, int(cfg.attack.version), str(cfg.attack.budget), identity)


def log_verdicts(logger: Logger, found: list[dict]) -> None:
    """Scalars per eps (also in the run's summary), one table row per eps, and every flag's
    message as a warning (run.log)."""
    tasks = list(found[0]["tasks"]) if found else []
    columns = ["eps", "min_degradation", "avg_degradation", *tasks, "queries", "flags"]
    rows = []
    for v in found:
        record = verdict_record(v)
        logger.log(record)
        logger.summary(record)
        per_task = [v["tasks"][t]["degradation"] for t in tasks]
        flags = ", ".join(f["flag"] for f in v["flags"])
        for f in v["flags"]:
            log.warning("attack=standard eps=%g: %s: %s", v["eps"], f["flag"], f["message"])
        rows.append(
            [v["eps"], v["min_degradation"], v["avg_degradation"], *per_task, v["queries"], flags]
        )
    logger.table(VERDICT_TABLE, columns, rows)


def format_verdicts(found: list[dict]) -> str:
    """The printed verdict: one line per eps, then every flag's message."""
    lines = [f"standard protocol v{found[0]['version']} ({found[0]['budget']} budget): verdict"]
    for v in found:
        per_task = ", ".join(f"{t} {d['degradation']:.4f}" for t, d in v["tasks"].items())
        lines.append(
            f"eps {v['eps']:g}: worst task {v['min_degradation']:.4f}, average "
            f"{v['avg_degradation']:.4f} ({per_task}); {v['queries']} Square queries, "
            f"{v['seconds']:.1f}s; flags: {', '.join(f['flag'] for f in v['flags']) or 'none'}"
        )
        lines += [f"  {f['flag']}: {f['message']}" for f in v["flags"]]
    return "\n".join(lines)
