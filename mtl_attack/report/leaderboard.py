"""The leaderboard of the standard protocol: one row per model from ``attack=standard`` runs.

A run with ``attack=standard`` writes, besides its attack entries, one *verdict* per eps in
``results.json["verdicts"]`` (protocol name and version, worst-task and average degradation,
per-task degradation, flags, queries, the attacked model's identity). This module collects the
verdicts of many runs into a :class:`Board`: one :class:`Model` per model identity (several runs
of the same model are merged, and repeated (model, eps) verdicts are reported as duplicates),
all of one protocol version and one benchmark. Results of another version or benchmark are
refused with a one-line error, never mixed. A board round-trips through JSON
(:func:`board_to_json`, :func:`board_from_json`), so a later leaderboard can be compared with it
(:mod:`mtl_attack.report.leaderboard_views`).

    board = collect(["outputs/leaderboard"], version=1)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mtl_attack.evaluation.identity import short_name
from mtl_attack.report.results import find_results, load_runs

PROTOCOL = "standard"
#: dataset config keys that say where the data lives, not what it is
LOCATION_KEYS = ("root", "preload")


class LeaderboardError(ValueError):
    """Inputs that cannot form one leaderboard; the message says what to do."""


@dataclass
class Model:
    """One leaderboard row: a model's identity, clean metrics and verdict per eps."""

    name: str
    identity: dict[str, Any]
    clean: dict[str, dict[str, float]]
    verdicts: dict[float, dict[str, Any]] = field(default_factory=dict)
    sources: list[str] = field(default_factory=list)  # results.json files it came from
    duplicates: list[str] = field(default_factory=list)  # "eps 4: path" of repeated verdicts

    @property
    def flags(self) -> list[tuple[float, dict[str, str]]]:
        """``(eps, flag)`` of every verdict, in eps order."""
        return [(eps, f) for eps, v in sorted(self.verdicts.items()) for f in v["flags"]]


@dataclass
class Board:
    """Every model of one protocol version on one benchmark, most robust first."""

    version: int
    benchmark: dict[str, Any]
    models: list[Model]
    skipped: list[str] = field(default_factory=list)  # results.json without verdicts
    budget: str = "full"  # the protocol's own; "smoke" boards are for tests only

    @property
    def eps(self) -> list[float]:
        return sorted({eps for m in self.models for eps in m.verdicts})


def current_version(standard_yaml: str | Path) -> int:
    """The protocol version ``conf/attack/standard.yaml`` declares today."""
    path = Path(standard_yaml)
    if not path.is_file():
        raise LeaderboardError(f"{path} not found: pass the protocol version with --version N")
    return int(yaml.safe_load(path.read_text())["version"])


def trained_config(run: dict[str, Any]) -> dict[str, Any]:
    """What made a model trained here: backbone, sharing, defense, training, seed."""
    cfg = run.get("config", {})
    sharing = cfg.get("sharing", {})
    defense = run.get("defense") or {"name": cfg.get("defense", {}).get("name", "none")}
    train = cfg.get("train", {})
    return {
        "backbone": short_name(cfg.get("backbone", {}).get("trunk", {}).get("_target_", "?")),
        "sharing": {"preset": short_name(sharing.get("_target_", "?"))}
        | {k: v for k, v in sharing.items() if not k.startswith("_") and v is not None},
        "defense": defense,
        "epochs": train.get("epochs"),
        "lr": train.get("optimizer", {}).get("lr"),
        "seed": cfg.get("seed"),
    }


def model_identity(run: dict[str, Any], verdict: dict[str, Any]) -> dict[str, Any]:
    """The attacked model: its weights' cache key and, for a model trained here, the config
    that trained it; for imported weights, their sha256 and file."""
    context = verdict.get("model", {})
    kind = run.get("config", {}).get("model", {}).get("name", "tree")
    identity = {"kind": kind, "key": context.get("model") or run.get("model", {}).get("key")}
    if kind == "tree":
        return identity | {"config": trained_config(run)}
    imported = run.get("model", {}).get("imported", {})
    sha = context.get("weights_sha256") or imported.get("sha256")
    checkpoint = imported.get("checkpoint") or run.get("config", {}).get("model", {})
    file = Path(str(checkpoint.get("checkpoint") if isinstance(checkpoint, dict) else checkpoint))
    defense = run.get("defense") or {"name": context.get("defense", "none")}
    return identity | {"weights_sha256": sha, "file": file.name, "defense": defense}


def benchmark(run: dict[str, Any], verdict: dict[str, Any]) -> dict[str, Any]:
    """What the model was evaluated on: data, tasks, metric convention, evaluation settings."""
    context = verdict.get("model", {})
    data = run.get("config", {}).get("dataset", {})
    return {
        "dataset": context.get("dataset"),
        "data": {k: v for k, v in data.items() if k not in LOCATION_KEYS},
        "tasks": context.get("tasks"),
        "metrics": context.get("metrics"),
        "eval": context.get("eval"),
    }


def model_name(run: dict[str, Any], identity: dict[str, Any]) -> str:
    """``tiny/all_shared``, ``tiny/branch(branch_at=3)/adv_train``, ``external:my.pt``."""
    if identity["kind"] == "tree":
        cfg = identity["config"]
        sharing = {k: v for k, v in cfg["sharing"].items() if k != "preset"}
        args = ",".join(f"{k}={v}" for k, v in sharing.items())
        name = f"{cfg['backbone']}/{cfg['sharing']['preset']}" + (f"({args})" if args else "")
    else:
        name = f"{identity['kind']}:{identity['file']}"
    defense = identity.get("defense") or identity.get("config", {}).get("defense", {})
    return name + ("" if defense.get("name", "none") == "none" else f"/{defense['name']}")


def _key(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def check_version(path: str, verdict: dict[str, Any], version: int, budget: str) -> None:
    """Refuse a verdict of another protocol, version or budget (numbers never mixed)."""
    found = (verdict.get("protocol"), verdict.get("version"))
    if found != (PROTOCOL, version):
        raise LeaderboardError(
            f"{path} was evaluated with protocol {found[0]} version {found[1]}, this "
            f"leaderboard is {PROTOCOL} version {version}: re-run that model with "
            f"attack=standard, or build a version-{found[1]} leaderboard from its runs alone "
            f"with --version {found[1]}"
        )
    if verdict.get("budget", "full") != budget:
        raise LeaderboardError(
            f"{path} was evaluated with attack.budget={verdict.get('budget')}, this leaderboard "
            f"is budget {budget}: re-run that model without attack.budget (the protocol's own "
            "budget is full; smoke is for tests)"
        )


def _add_verdicts(model: Model, run: dict[str, Any], verdicts: list[dict[str, Any]]) -> None:
    for verdict in verdicts:
        eps = float(verdict["eps"])
        if eps in model.verdicts:
            kept = model.verdicts[eps]
            same = _key(kept_numbers(kept)) == _key(kept_numbers(verdict))
            note = "same numbers" if same else "different numbers, the first is kept"
            model.duplicates.append(f"eps {eps:g}: {run['_path']} ({note})")
            continue
        model.verdicts[eps] = verdict
    if run["_path"] not in model.sources:
        model.sources.append(run["_path"])


def kept_numbers(verdict: dict[str, Any]) -> dict[str, Any]:
    """The numbers a verdict reports (what two runs of one model should agree on)."""
    keep = ("min_degradation", "avg_degradation", "tasks")
    return {k: verdict.get(k) for k in keep}


def merge_runs(runs: list[dict], version: int, budget: str) -> tuple[list[Model], dict, list]:
    """Runs -> (models by identity, the common benchmark, paths of runs without verdicts)."""
    models: dict[str, Model] = {}
    skipped, benchmarks = [], {}
    for run in runs:
        verdicts = run.get("verdicts") or []
        if not verdicts:
            skipped.append(run["_path"])
            continue
        for verdict in verdicts:
            check_version(run["_path"], verdict, version, budget)
        identity = model_identity(run, verdicts[0])
        benchmarks.setdefault(_key(benchmark(run, verdicts[0])), []).append(run["_path"])
        model = models.setdefault(
            _key(identity), Model(model_name(run, identity), identity, run["clean"])
        )
        _add_verdicts(model, run, verdicts)
    if len(benchmarks) > 1:
        groups = "; ".join(f"{p[0]} and {len(p) - 1} more" for p in benchmarks.values())
        raise LeaderboardError(
            f"the results are on {len(benchmarks)} different benchmarks (data, tasks, metrics "
            f"or evaluation settings differ: {groups}); build one leaderboard per benchmark"
        )
    bench = json.loads(next(iter(benchmarks))) if benchmarks else {}
    return list(models.values()), bench, skipped


def rank_key(model: Model, eps: float | None) -> tuple:
    """Most robust first: lowest worst-task degradation at ``eps``, then lowest average;
    models without a verdict at ``eps`` last."""
    verdict = model.verdicts.get(eps) if eps is not None else None
    if verdict is None:
        return (1, 0.0, 0.0, model.name)
    return (0, verdict["min_degradation"], verdict["avg_degradation"], model.name)


def unique_names(models: list[Model]) -> None:
    """Models that share a name get the start of their weights' key appended."""
    counts: dict[str, int] = {}
    for m in models:
        counts[m.name] = counts.get(m.name, 0) + 1
    for m in models:
        if counts[m.name] > 1:
            m.name += f"#{str(m.identity.get('key'))[:6]}"


def collect(paths: list[str | Path], version: int, budget: str = "full") -> Board:
    """The leaderboard of every ``attack=standard`` verdict under ``paths`` (run folders,
    multirun folders or results.json files), refusing other protocol versions and mixed
    benchmarks. Ranked by worst-task degradation at the largest eps every model has."""
    runs = load_runs(find_results(paths))
    models, bench, skipped = merge_runs(runs, version, budget)
    if not models:
        raise LeaderboardError(
            f"none of the {len(runs)} results.json under {[str(p) for p in paths]} has an "
            "attack=standard verdict: evaluate models with python run.py attack=standard"
        )
    unique_names(models)
    board = Board(version, bench, models, skipped, budget)
    eps = ranking_eps(board)
    board.models.sort(key=lambda m: rank_key(m, eps))
    return board


def ranking_eps(board: Board) -> float | None:
    """The eps the board is ranked at: the largest one every model has a verdict for."""
    common = set.intersection(*(set(m.verdicts) for m in board.models)) if board.models else ()
    return max(common) if common else None


def board_to_json(board: Board) -> dict[str, Any]:
    """The board as JSON data (verdicts as a list in eps order: JSON keys are strings)."""
    models = []
    for m in board.models:
        data = asdict(m)
        data["verdicts"] = [m.verdicts[eps] | {"eps": eps} for eps in sorted(m.verdicts)]
        models.append(data)
    return {
        "protocol": PROTOCOL,
        "version": board.version,
        "budget": board.budget,
        "eps": board.eps,
        "ranked_at_eps": ranking_eps(board),
        "benchmark": board.benchmark,
        "models": models,
        "skipped": board.skipped,
    }


def board_from_json(path: str | Path) -> Board:
    """A board written by :func:`board_to_json` (a leaderboard.json)."""
    data = json.loads(Path(path).read_text())
    if data.get("protocol") != PROTOCOL or "models" not in data:
        raise LeaderboardError(f"{path} is not a leaderboard.json written by leaderboard.py")
    models = []
    for m in data["models"]:
        verdicts = {float(v["eps"]): v for v in m.pop("verdicts")}
        models.append(Model(**m, verdicts=verdicts))
    skipped, budget = data.get("skipped", []), data.get("budget", "full")
    return Board(int(data["version"]), data["benchmark"], models, skipped, budget)
