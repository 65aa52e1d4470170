"""Attack results keyed on their complete identity: every row shown, look-alikes told apart.

A report row's short name (model, attack, step rule, eps) does not say everything that changed
its numbers: a sweep over ``attack.steps``, the seed or the random start gives rows with equal
short names. Every result therefore carries its identity (:mod:`mtl_attack.evaluation.identity`);
:func:`distinguish` finds, among results whose short names collide, the identity fields whose
values differ, so the report can show them (``dgba/pgd [steps=20]``). Results with equal
identities are duplicates of one experiment: shown once and counted.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl_attack.evaluation.identity import identity_from_run, short_name
from mtl_attack.loggers import flat_config


@dataclass
class Result:
    """One attack entry of one results.json, with its run and complete identity."""

    run: dict[str, Any]
    entry: dict[str, Any]
    identity: dict[str, Any]
    setting: str = ""  # what tells it apart from look-alike rows, e.g. "steps=20"
    duplicates: list[str] = field(default_factory=list)  # paths of identical results

    @property
    def model(self) -> str:
        return self.run["_label"]

    @property
    def attack(self) -> str:
        """``objective[target or variant]/step`` plus the distinguishing setting, if any; an
        attack loss other than ``ce`` follows the objective (``single[normal]+cospgd``)."""
        target = self.entry.get("target_task") or self.entry.get("variant")
        name = self.entry["objective"] + (f"[{target}]" if target else "")
        name += f"+{self.entry['loss']}" if self.entry.get("loss") else ""
        return f"{name}/{self.entry['step']}" + (f" [{self.setting}]" if self.setting else "")


def find_results(paths: list[str | Path]) -> list[Path]:
    """results.json files: given directly, or found recursively under given folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(p.rglob("results.json"))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} is neither a results.json file nor a folder")
    found.sort(key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))])
    if not found:
        raise FileNotFoundError(f"no results.json under {[str(p) for p in paths]}")
    return found


def run_label(run: dict[str, Any]) -> str:
    """Short name of the trained model: backbone, sharing, defense."""
    cfg = run.get("config", {})
    sharing = cfg.get("sharing", {})
    kind = short_name(sharing.get("_target_", "?"))
    extra = [f"{k}={v}" for k, v in sharing.items() if not k.startswith("_") and v is not None]
    defense = cfg.get("defense", {}).get("name", "none")
    backbone = short_name(cfg.get("backbone", {}).get("trunk", {}).get("_target_", "?"))
    label = f"{backbone}/{kind}" + (f"({','.join(extra)})" if extra else "")
    return label + ("" if defense == "none" else f"/{defense}")


def load_runs(files: list[Path]) -> list[dict[str, Any]]:
    runs = []
    for f in files:
        data = json.loads(f.read_text())
        data["_path"] = str(f)
        data["_label"] = run_label(data)
        runs.append(data)
    return runs


def _flat(tree: dict[str, Any]) -> dict[str, Any]:
    """``{"eval": {"batch_size": 8}}`` -> ``{"eval.batch_size": 8}``, lists as JSON text."""
    flat = flat_config(tree)
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in flat.items()}


def identity_key(identity: dict[str, Any]) -> str:
    return json.dumps(identity, sort_keys=True, default=str)


def unique_results(runs: list[dict[str, Any]]) -> list[Result]:
    """Every attack result of ``runs`` once: identical identities are merged into the first
    (its ``duplicates`` lists where the others came from)."""
    seen: dict[str, Result] = {}
    for run in runs:
        for entry in run.get("attacks", []):
            result = Result(run, entry, identity_from_run(run, entry))
            key = identity_key(result.identity)
            if key in seen:
                seen[key].duplicates.append(run["_path"])
            else:
                seen[key] = result
    return list(seen.values())


def distinguish(
    results: list[Result], short: Callable[[Result], Hashable], model_names: dict[str, str]
) -> None:
    """Set ``result.setting`` to the identity fields (``key=value``) that differ among results
    with equal ``short(result)``; the model's cache key is shown by its run label."""
    groups: dict[Hashable, list[Result]] = defaultdict(list)
    for r in results:
        groups[short(r)].append(r)
    for group in groups.values():
        if len(group) < 2:
            continue
        flats = [_flat(r.identity) for r in group]
        keys = sorted({k for f in flats for k in f})
        differing = [k for k in keys if len({str(f.get(k)) for f in flats}) > 1]
        for r, f in zip(group, flats):
            parts = [f"{k}={model_names.get(str(f.get(k)), f.get(k))}" for k in differing]
            r.setting = ", ".join(parts)


def model_names(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Model cache key -> run label (a readable name for the ``model`` identity field)."""
    names = {}
    for run in runs:
        for entry in run.get("attacks", []):
            names[str(identity_from_run(run, entry).get("model"))] = run["_label"]
    return names


def duplicate_note(results: list[Result]) -> list[str]:
    """Report lines about duplicates (empty when there are none)."""
    dup = [r for r in results if r.duplicates]
    if not dup:
        return []
    count = sum(len(r.duplicates) for r in dup)
    lines = [
        f"**Found {count} duplicate result(s)**: identical in every identity field (the same "
        "experiment run more than once); each is shown once:",
        "",
    ]
    for r in dup:
        where = ", ".join(f"`{p}`" for p in r.duplicates)
        lines.append(f"- {r.model} {r.attack} eps={r.entry['eps']} (`{r.run['_path']}`): {where}")
    return lines + [""]
