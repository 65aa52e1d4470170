"""The dashboard's panels as plain data, built from what the runs logged.

The runs' ``results.json`` files (the same files ``scripts/compare.py`` reads) say which attacks,
budgets, tasks, metrics and transfer matrices exist; every key is then named by
:mod:`mtl_attack.evaluation.keys`, the helper the runner logs through. No W&B import here:
:mod:`mtl_attack.dashboard.spec` turns these panels into ``wandb-workspaces`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtl_attack.evaluation.keys import (
    AGGREGATES,
    EPOCH,
    EPS,
    HEATMAP_IMAGE,
    attack_key,
    attack_name,
    clean_key,
    model_key,
    strongest_key,
    task_key,
    train_loss_key,
    transfer_key,
    val_key,
    vs_eps_key,
)
from mtl_attack.loggers import flat_config
from mtl_attack.report import HEADLINE, find_results, load_runs

SECTIONS = ("Attack strength", "Sharing trade-off", "Per task", "Transfer", "Training")
SHARING_DEGREE = model_key("sharing_degree")
#: parallel-coordinates axes read from the run config (flat keys, as WandbLogger logs them)
LAYOUT_INDEX, ATTACK = "sharing.index", "attack.name"


@dataclass(frozen=True)
class Line:
    """History keys ``ys`` against the history key ``x``."""

    title: str
    x: str
    ys: tuple[str, ...]


@dataclass(frozen=True)
class Scatter:
    """One point per run: summary key ``y`` against summary key ``x``."""

    title: str
    x: str
    y: str


@dataclass(frozen=True)
class Parallel:
    """Parallel coordinates, one line per run; columns ``(kind, key, label)``, kind
    ``config`` or ``summary``."""

    title: str
    columns: tuple[tuple[str, str, str], ...]


@dataclass(frozen=True)
class Media:
    """Logged images (history keys)."""

    title: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Note:
    """A markdown panel (no keys), e.g. why a section is empty."""

    text: str


@dataclass
class Section:
    name: str
    panels: list = field(default_factory=list)


@dataclass
class Attack:
    """One attack as the runs logged it: its label (no eps), budgets, tasks and metrics."""

    label: dict[str, Any]
    eps: list = field(default_factory=list)
    tasks: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class Catalog:
    """Everything some run logged, as the dashboard needs it."""

    attacks: dict[str, Attack] = field(default_factory=dict)
    clean: dict[str, list[str]] = field(default_factory=dict)
    transfer: list[tuple[str, Any]] = field(default_factory=list)
    trained: list[str] = field(default_factory=list)  # tasks with train/<task>/loss
    validated: dict[str, list[str]] = field(default_factory=dict)  # val/<task>/<metric>
    config: set[str] = field(default_factory=set)  # flat config keys

    @property
    def eps(self) -> list:
        return sorted({k for a in self.attacks.values() for k in a.eps})


def _add(names: list, new) -> None:
    names += [n for n in new if n not in names]


def _validates(config: dict) -> bool:
    """Whether training logged val/*: every ``train.val_every`` epochs (see runner.training)."""
    train = config.get("train", {})
    every = int(train.get("val_every", 1) or 0)
    return every > 0 and int(train.get("epochs", 0)) >= every


def catalog(runs: list[dict[str, Any]]) -> Catalog:
    """What the runs (loaded results.json files) logged."""
    cat = Catalog()
    for run in runs:
        for entry in run.get("attacks", []):
            keys = ("objective", "target_task", "variant", "loss", "step")
            label = {k: entry.get(k) for k in keys}
            attack = cat.attacks.setdefault(attack_name(label), Attack(label))
            _add(attack.eps, [entry["eps"]])
            for task, metrics in entry["tasks"].items():
                _add(attack.tasks.setdefault(task, []), metrics)
        for task, metrics in run.get("clean", {}).items():
            _add(cat.clean.setdefault(task, []), metrics)
        _add(cat.transfer, [(m["step"], m["eps"]) for m in run.get("transfer", [])])
        model = run.get("model", {})
        if not model.get("cache_hit", True) and not model.get("untrained"):  # it trained
            _add(cat.trained, run.get("clean", {}))
            if _validates(run.get("config", {})):
                for task, metrics in run.get("clean", {}).items():
                    _add(cat.validated.setdefault(task, []), metrics)
        cat.config |= set(flat_config(run.get("config", {})))
    return cat


def run_group(run: dict[str, Any]) -> str | None:
    """The W&B group of a run: ``logger.group``, else its sweep folder's name (multirun)."""
    group = run.get("config", {}).get("logger", {}).get("group")
    if group:
        return str(group)
    sweep = Path(run["_path"]).parent.parent
    return sweep.name if (sweep / "multirun.yaml").is_file() else None


def load_project_runs(paths: list, project: str, group: str | None = None) -> list[dict]:
    """The results.json runs under ``paths`` that logged to W&B ``project`` (and ``group``)."""
    runs = [
        r
        for r in load_runs(find_results(paths))
        if r.get("config", {}).get("logger", {}).get("project") == project
        and r["config"]["logger"].get("mode") != "disabled"
        and (group is None or run_group(r) == group)
    ]
    if not runs:
        where = f"project {project!r}" + (f", group {group!r}" if group else "")
        raise FileNotFoundError(
            f"no results.json under {[str(p) for p in paths]} logged to W&B {where}; "
            "pass the folder of those runs with --results (or --sweep)"
        )
    return runs


def attack_strength(cat: Catalog) -> Section:
    """Each aggregate against eps, one line per attack."""
    labels = [a.label for a in cat.attacks.values()]
    lines = [
        Line(f"{s} against eps", EPS, tuple(vs_eps_key(a, s) for a in labels)) for s in AGGREGATES
    ]
    return Section(SECTIONS[0], lines)


def sharing_tradeoff(cat: Catalog) -> Section:
    """Degradation (each attack at its largest eps) and clean headline metrics against the
    sharing degree, and parallel coordinates layout / degree / attack / eps -> degradation."""
    panels: list = []
    for name, a in cat.attacks.items():
        eps = max(a.eps)
        y = attack_key(a.label | {"eps": eps}, "avg_degradation")
        panels.append(Scatter(f"{name}: avg degradation at eps {eps}", SHARING_DEGREE, y))
    for task, metrics in cat.clean.items():
        if HEADLINE.get(task) in metrics:
            metric = HEADLINE[task]
            panels.append(
                Scatter(f"clean {task} {metric}", SHARING_DEGREE, clean_key(task, metric))
            )
    columns = [("config", LAYOUT_INDEX, "layout index")] if LAYOUT_INDEX in cat.config else []
    columns.append(("summary", SHARING_DEGREE, "sharing degree"))
    columns += [("config", ATTACK, "attack")] if ATTACK in cat.config else []
    columns += [("summary", strongest_key(k), f"degradation at eps {k}") for k in cat.eps]
    title = "layout index / sharing degree / attack / eps -> degradation (strongest attack)"
    panels.append(Parallel(title, tuple(columns)))
    return Section(SECTIONS[1], panels)


def per_task(cat: Catalog) -> Section:
    """Every metric of every attacked task against eps, one line per attack."""
    pairs: list[tuple[str, str]] = []
    for a in cat.attacks.values():
        _add(pairs, [(t, m) for t, metrics in a.tasks.items() for m in metrics])
    panels = []
    for task, metric in pairs:
        ys = tuple(
            task_key(vs_eps_key(a.label), task, metric)
            for a in cat.attacks.values()
            if metric in a.tasks.get(task, [])
        )
        panels.append(Line(f"{task} {metric} against eps", EPS, ys))
    return Section(SECTIONS[2], panels)


def transfer(cat: Catalog) -> Section:
    panels = [
        Media(f"transfer, single-task {step} eps={eps}", (transfer_key(step, eps, HEATMAP_IMAGE),))
        for step, eps in cat.transfer
    ]
    hint = "No transfer matrix logged yet: they come from `attack=single attack.task=all`."
    return Section(SECTIONS[3], panels or [Note(hint)])


def training(cat: Catalog) -> Section:
    panels: list = []
    if cat.trained:
        panels.append(Line("train loss", EPOCH, tuple(train_loss_key(t) for t in cat.trained)))
    for task, metrics in cat.validated.items():
        panels += [Line(f"val {task} {m}", EPOCH, (val_key(task, m),)) for m in metrics]
    hint = "No run here trained its model (all reused cached weights): no training curves."
    return Section(SECTIONS[4], panels or [Note(hint)])


def sections(cat: Catalog) -> list[Section]:
    """The dashboard: the five sections of :data:`SECTIONS`, in that order."""
    return [
        attack_strength(cat),
        sharing_tradeoff(cat),
        per_task(cat),
        transfer(cat),
        training(cat),
    ]
