"""Attack wiring: every configured attack on the test split, logged, cached, locked."""

from __future__ import annotations

from contextlib import nullcontext

from omegaconf import OmegaConf

from mtl_attack.evaluation import evaluate_views, transfer_matrices
from mtl_attack.evaluation.identity import result_identity
from mtl_attack.evaluation.keys import (
    ATTACK_TABLE,
    EPS,
    attack_key,
    attack_name,
    attack_record,
    curve_key,
    flatten,
    transfer_key,
    vs_eps_key,
)
from mtl_attack.loggers import Logger
from mtl_attack.runner.build import log
from mtl_attack.runner.standard import format_verdicts, log_verdicts, standard_verdicts
from mtl_attack.utils.distributed import from_main, is_main, world

#: identity fields shown as columns of the W&B attack table (beside the label)
SETTING_COLUMNS = ("steps", "step_size", "random_start", "restarts", "seed")


def log_attacks(logger: Logger, entries: list[dict], transfer: list[dict]) -> None:
    """Scalars per attack, per-task metrics against eps as curves, transfer matrices."""
    for e in entries:
        logger.log(attack_record(e, attack_key(e)))
        if "wins" in e:  # ensemble: samples each member won
            logger.log(flatten(e["wins"], attack_key(e, "wins")))
        # the same numbers on an eps x-axis (W&B define_metric: vs_eps/* against eps)
        logger.log({EPS: e["eps"]} | attack_record(e, vs_eps_key(e)))
    columns = ["objective", "step", "eps", "target", "variant", "loss", *SETTING_COLUMNS]
    columns += ["task", "metric", "value"]
    rows = [
        [e["objective"], e["step"], e["eps"], e["target_task"] or "", e.get("variant") or ""]
        + [e.get("loss") or "ce"]
        + [e["identity"].get(k) for k in SETTING_COLUMNS]
        + [t, m, v]
        for e in entries
        for t, ms in e["tasks"].items()
        for m, v in ms.items()
    ]
    logger.table(ATTACK_TABLE, columns, rows)
    for task, metric in {(r[-3], r[-2]) for r in rows}:
        curves: dict[str, list[float]] = {}
        for e in entries:
            curves.setdefault(attack_name(e), []).append(e["tasks"][task][metric])
        xs = sorted({e["eps"] for e in entries})
        if len(xs) > 1 and all(len(c) == len(xs) for c in curves.values()):
            logger.lines(curve_key(task, metric), xs, curves, EPS)
    for m in transfer:
        names = list(m["matrix"])
        cols = list(next(iter(m["matrix"].values())))
        logger.heatmap(
            transfer_key(m["step"], m["eps"]),
            [[m["matrix"][r][c] for c in cols] for r in names],
            names,
            cols,
            f"degradation, single-task {m['step']} eps={m['eps']}",
        )


def format_attacks(entries: list[dict], transfer: list[dict]) -> str:
    """The printed summary: aggregates and each task's degradation per attack, then the
    transfer matrices (row = attacked task, column = measured task)."""
    tasks = list(entries[0]["tasks"]) if entries else []
    width = max([len(t) for t in tasks] + [9])
    head = f"{'attack':<34} {'eps':>4} {'avg_degr':>9} {'min_degr':>9} {'avg_loss+':>9}"
    lines = [head + "".join(f" {t[:width]:>{width}}" for t in tasks) + f" {'sec':>6}  flags"]
    for e in entries:
        name = attack_name(e)
        per_task = "".join(f" {e['tasks'][t]['degradation']:>{width}.4f}" for t in tasks)
        lines.append(
            f"{name:<34} {e['eps']:>4} {e['avg_degradation']:>9.4f} "
            f"{e['min_degradation']:>9.4f} {e['avg_loss_increase']:>9.4f}{per_task} "
            f"{e['seconds']:>6.1f}  {','.join(e['flags'])}"
        )
    lines += ensemble_notes(entries)
    for m in transfer:
        cols = list(next(iter(m["matrix"].values())))
        lines += ["", f"transfer, single-task {m['step']} eps={m['eps']} (row = attacked task)"]
        lines.append(f"{'':<{width}}" + "".join(f" {c[:width]:>{width}}" for c in cols))
        for row, values in m["matrix"].items():
            cells = "".join(f" {values[c]:>{width}.4f}" for c in cols)
            lines.append(f"{row[:width]:<{width}}{cells}")
    return "\n".join(lines)


def ensemble_notes(entries: list[dict]) -> list[str]:
    """Who won each ensemble result, and what ``per_task`` means."""
    lines = []
    for e in entries:
        if "wins" not in e:
            continue
        wins = e["wins"]
        tallies = wins.items() if e.get("variant") == "per_task" else [("", wins)]
        for task, tally in tallies:
            counts = ", ".join(f"{m} {n}" for m, n in tally.items() if n)
            lines.append(
                f"{attack_name(e)} eps={e['eps']}{' ' + task if task else ''}: won by {counts}"
            )
    if any(e.get("objective") == "ensemble" and e.get("variant") == "per_task" for e in entries):
        lines.append(
            "per_task: each task is measured on its own worst member's images (a "
            "per-task lower bound from different images, not one perturbation)"
        )
    return [""] + lines if lines else []


def attack_item(cfg, label: dict) -> dict:
    """What identifies one attack result in the model's evaluation cache (the cache's context
    adds the test data, the tasks and the evaluation settings). The attack loss is in the
    label (absent for ``ce``, so default keys are unchanged)."""
    attack = OmegaConf.to_container(cfg.attack, resolve=True)
    rest = {k: v for k, v in attack.items() if k not in ("eps", "task", "loss")}
    return {"label": label, "attack": rest}


def entry_label(entry: dict) -> dict:
    """The label part of an entry: objective, step, eps, target_task (and variant and loss, if
    any)."""
    label = {k: entry[k] for k in ("objective", "step", "eps", "target_task")}
    return label | {k: entry[k] for k in ("variant", "loss") if entry.get(k) is not None}


def cached_or_computed(results, item: dict, compute, what: str) -> dict:
    """A finished result from ``results`` (a :class:`~mtl_attack.cache.ResultCache`), or
    ``compute()`` stored there. In one process the item is locked meanwhile, so a concurrent
    identical job waits and then reuses the result instead of computing it again."""
    if results is None:
        return compute()
    alone = world()[1] == 1
    with results.locked(item) if alone else nullcontext():
        value = from_main(results.get(item) if is_main() else None)
        if value is not None:
            log.info("%s: reusing the finished result", what)
            return value
        value = compute()
        if is_main():
            results.put(item, value)
        return value


def attack_model(cfg, job, clean: dict, logger: Logger, context: dict, results=None) -> dict:
    """Every attack of ``job.attacks`` (from :func:`build_attacks`) on the test split:
    ``{"attacks": [...], "transfer": [...]}``. Each entry carries its complete ``identity``
    (the label, every attack setting, and ``context``: the model, defense and evaluation data).
    ``results`` (a ResultCache) supplies finished results and stores new ones.
    """
    model, tasks, loader, device = job.model, job.tasks, job.test_loader, job.device
    attack_cfg = OmegaConf.to_container(cfg.attack, resolve=True)
    entries = []
    for label, attack in job.attacks:

        def compute(label=label, attack=attack):
            views = evaluate_views(
                model, tasks, loader, device, attack, clean, label, progress=cfg.progress
            )
            return views if len(attack.view_stats()) > 1 else views[0]  # cached as before

        value = cached_or_computed(results, attack_item(cfg, label), compute, f"attack {label}")
        for entry in value if isinstance(value, list) else [value]:
            entry["identity"] = result_identity(entry_label(entry), attack_cfg, context)
            log.info(
                "attack %s eps=%s: avg_degradation=%.4f min=%.4f avg_loss_increase=%.4f (%.1fs)",
                attack_name(entry),
                entry["eps"],
                entry["avg_degradation"],
                entry["min_degradation"],
                entry["avg_loss_increase"],
                entry["seconds"],
            )
            entries.append(entry)
    transfer = transfer_matrices(entries)
    log_attacks(logger, entries, transfer)
    if is_main():
        print(format_attacks(entries, transfer))
    found = {"attacks": entries, "transfer": transfer}
    if cfg.attack.name == "standard":
        found["verdicts"] = standard_verdicts(cfg, entries, context, model)
        log_verdicts(logger, found["verdicts"])
        if is_main():
            print(format_verdicts(found["verdicts"]))
    return found
