"""Attack wiring: every configured attack on the test split, logged, cached per result."""

from __future__ import annotations

from omegaconf import OmegaConf

from mtl_attack.evaluation import evaluate_attack, transfer_matrices
from mtl_attack.evaluation.keys import (
    ATTACK_TABLE,
    EPS,
    attack_key,
    attack_name,
    attack_record,
    curve_key,
    transfer_key,
    vs_eps_key,
)
from mtl_attack.loggers import Logger
from mtl_attack.runner.build import build_attacks, log
from mtl_attack.utils.distributed import from_main, is_main


def log_attacks(logger: Logger, entries: list[dict], transfer: list[dict]) -> None:
    """Scalars per attack, per-task metrics against eps as curves, transfer matrices."""
    for e in entries:
        logger.log(attack_record(e, attack_key(e)))
        # the same numbers on an eps x-axis (W&B define_metric: vs_eps/* against eps)
        logger.log({EPS: e["eps"]} | attack_record(e, vs_eps_key(e)))
    rows = [
        [e["objective"], e["step"], e["eps"], e["target_task"] or "", t, m, v]
        for e in entries
        for t, ms in e["tasks"].items()
        for m, v in ms.items()
    ]
    logger.table(
        ATTACK_TABLE, ["objective", "step", "eps", "target", "task", "metric", "value"], rows
    )
    for task, metric in {(r[4], r[5]) for r in rows}:
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


def format_attacks(entries: list[dict]) -> str:
    lines = [
        f"{'attack':<34} {'eps':>4} {'avg_degr':>9} {'min_degr':>9} {'avg_loss+':>9}"
        f" {'sec':>6}  flags"
    ]
    for e in entries:
        name = attack_name(e)
        lines.append(
            f"{name:<34} {e['eps']:>4} {e['avg_degradation']:>9.4f} "
            f"{e['min_degradation']:>9.4f} {e['avg_loss_increase']:>9.4f} "
            f"{e['seconds']:>6.1f}  {','.join(e['flags'])}"
        )
    return "\n".join(lines)


def attack_item(cfg, label: dict) -> dict:
    """What identifies one attack result (besides the model and the test data)."""
    attack = OmegaConf.to_container(cfg.attack, resolve=True)
    rest = {k: v for k, v in attack.items() if k not in ("eps", "task")}
    return {"label": label, "attack": rest}


def attack_model(cfg, model, tasks, test_loader, device, clean, logger, results=None) -> dict:
    """Every configured attack on the test split: ``{"attacks": [...], "transfer": [...]}``.

    ``results`` (a :class:`~mtl_attack.cache.ResultCache`) supplies finished (attack, eps)
    results and stores new ones, so an interrupted sweep recomputes only what is missing.
    """
    entries = []
    for label, attack in build_attacks(cfg, tasks):
        item = attack_item(cfg, label)
        entry = from_main(results.get(item) if results is not None and is_main() else None)
        if entry is not None:
            log.info("attack %s: reusing the finished result", label)
        else:
            entry = evaluate_attack(
                model, tasks, test_loader, device, attack, clean, label, progress=cfg.progress
            )
            if results is not None and is_main():
                results.put(item, entry)
        log.info(
            "attack %s: avg_degradation=%.4f min=%.4f avg_loss_increase=%.4f (%.1fs)",
            label,
            entry["avg_degradation"],
            entry["min_degradation"],
            entry["avg_loss_increase"],
            entry["seconds"],
        )
        entries.append(entry)
    transfer = transfer_matrices(entries)
    log_attacks(logger, entries, transfer)
    if is_main():
        print(format_attacks(entries))
    return {"attacks": entries, "transfer": transfer}
