"""The attack-loss axis: every objective x attack loss on the default benchmark, eps 4.

Runs ``python run.py`` (the default model: the tiny network on the synthetic benchmark, its 200
test images) once per (step rule, objective, loss): PGD-10 and APGD-20 at eps 4; objectives
single on each task, dgba, minmax (loss and metric weights) and linf_mgda; losses ce,
segpgd, cospgd, mask_ce, mask_ce_bal and jsd (docs/dense_losses.md). SINGLE on normals runs with
ce and cospgd, on depth with ce only (no other loss is defined there: it would repeat ce). The
first job runs alone (it trains the model, or finds it cached), the others ``--jobs`` at a time,
each on one thread. Writes ``<out>/<rule>/<objective>__<loss>/results.json`` and the tables and
statements to ``<out>/tables.md`` and the screen.

    PYTHONPATH=. python scripts/benchmark_losses.py --jobs 16    # ~6 min on 16 idle cores
    PYTHONPATH=. python scripts/benchmark_losses.py --rules pgd --losses ce segpgd --jobs 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("segment_semantic", "normal", "depth_zbuffer")
LOSSES = ("ce", "segpgd", "cospgd", "mask_ce", "mask_ce_bal", "jsd")
OBJECTIVES = {
    **{f"single({t})": ["attack=single", f"attack.task={t}"] for t in TASKS},
    "dgba": ["attack=dgba"],
    "minmax": ["attack=minmax"],
    "minmax(metric)": ["attack=minmax", "attack.weights_from=metric"],
    "linf_mgda": ["attack=aggregate", "attack.aggregator=linf_mgda"],
}
#: the losses SINGLE on a task other than segmentation can differ under
ONLY = {"single(normal)": ("ce", "cospgd"), "single(depth_zbuffer)": ("ce",)}
STEPS = {"pgd": 10, "apgd": 20}


def job_dir(out: Path, rule: str, objective: str, loss: str) -> Path:
    name = objective.replace("(", "_").replace(")", "")
    return out / rule / f"{name}__{loss}"


def command(rule: str, objective: str, loss: str, where: Path, extra: list[str]) -> list[str]:
    overrides = [
        *OBJECTIVES[objective],
        f"attack/step={rule}",
        f"attack.steps={STEPS[rule]}",
        "attack.eps=[4]",
        f"attack.loss={loss}",
        "logger=none",
        "progress=false",
        f"hydra.run.dir={where}",
        *extra,
    ]
    return [sys.executable, str(ROOT / "run.py"), *overrides]


def run_job(job, out: Path, extra: list[str]) -> float:
    """Run one job in its own process on one thread (skipped when its results exist)."""
    where = job_dir(out, *job)
    if (where / "results.json").exists():
        return 0.0
    env = os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "WANDB_MODE": "offline"}
    start = time.monotonic()
    proc = subprocess.run(
        command(*job, where, extra), env=env, capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{job} failed:\n{proc.stderr[-2000:]}")
    return time.monotonic() - start


def entry_of(out: Path, job) -> dict | None:
    path = job_dir(out, *job) / "results.json"
    return json.loads(path.read_text())["attacks"][0] if path.exists() else None


def long_table(out: Path, rule: str, losses) -> list[str]:
    """One row per (objective, loss): min, avg and per-task degradation, mIoU, CPU seconds."""
    lines = [
        f"**{rule.upper()}-{STEPS[rule]}, eps 4**",
        "",
        "| objective | loss | min_degradation | avg_degradation | "
        + " | ".join(f"deg {t}" for t in TASKS)
        + " | mIoU | CPU s |",
        "|---" * (6 + len(TASKS)) + "|",
    ]
    for objective in OBJECTIVES:
        for loss in losses:
            e = entry_of(out, (rule, objective, loss))
            if e is None:
                continue
            degs = " | ".join(f"{e['tasks'][t]['degradation']:.3f}" for t in TASKS)
            miou = e["tasks"]["segment_semantic"].get("miou", float("nan"))
            lines.append(
                f"| {objective} | {loss} | {e['min_degradation']:.3f} | "
                f"{e['avg_degradation']:.3f} | {degs} | {miou:.4f} | {e['cpu_seconds']:.0f} |"
            )
    return lines + [""]


def statements(out: Path, rule: str, losses) -> list[str]:
    """SINGLE(segmentation)'s mIoU under each loss, and per loss the best multi-task
    objective's min_degradation against the best single-task attack's with the same loss."""
    lines = [f"**{rule.upper()}-{STEPS[rule]}**", ""]
    seg = {x: entry_of(out, (rule, "single(segment_semantic)", x)) for x in losses}
    seg = {x: e for x, e in seg.items() if e}
    if "ce" in seg:
        miou = {x: e["tasks"]["segment_semantic"]["miou"] for x, e in seg.items()}
        best = min(miou, key=miou.get)
        lines.append(
            "- SINGLE(segment_semantic) mIoU: "
            + ", ".join(f"{x} {v:.4f}" for x, v in miou.items())
            + f"; the lowest is {best} ({miou[best]:.4f} against ce's {miou['ce']:.4f})."
        )
    for loss in losses:
        rows = {o: entry_of(out, (rule, o, loss if loss in ONLY.get(o, losses) else "ce"))
                for o in OBJECTIVES}  # fmt: skip
        rows = {o: e for o, e in rows.items() if e}
        singles = {o: e["min_degradation"] for o, e in rows.items() if o.startswith("single")}
        multis = {o: e["min_degradation"] for o, e in rows.items() if o not in singles}
        if not singles or not multis:
            continue
        s, m = max(singles, key=singles.get), max(multis, key=multis.get)
        lines.append(
            f"- {loss}: best multi-task {m} {multis[m]:.3f} vs best single-task {s} "
            f"{singles[s]:.3f}" + (f": {multis[m] / singles[s]:.0%}." if singles[s] > 0 else ".")
        )
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmark_losses"))
    parser.add_argument("--rules", nargs="+", default=list(STEPS), choices=list(STEPS))
    parser.add_argument("--losses", nargs="+", default=list(LOSSES), choices=list(LOSSES))
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES))
    parser.add_argument("--jobs", type=int, default=1, help="processes at once (one thread each)")
    parser.add_argument("--no-run", action="store_true", help="only the tables of what exists")
    parser.add_argument("overrides", nargs="*", help="extra config overrides (model, data...)")
    args = parser.parse_args()
    args.out = args.out.resolve()
    jobs = [
        (rule, o, x)
        for rule in args.rules
        for o in args.objectives
        for x in args.losses
        if x in ONLY.get(o, args.losses)
    ]
    start = time.monotonic()
    if not args.no_run:
        run_job(jobs[0], args.out, args.overrides)  # trains the model (or finds it cached)
        rest = sorted(jobs[1:], key=lambda j: (j[0] != "apgd", j[1] != "linf_mgda"))
        with ThreadPoolExecutor(args.jobs) as pool:  # the longest first: they pack better
            list(pool.map(lambda j: run_job(j, args.out, args.overrides), rest))
    lines = [f"{len(jobs)} runs in {time.monotonic() - start:.0f} s with {args.jobs} jobs", ""]
    for rule in args.rules:
        lines += long_table(args.out, rule, args.losses)
    for rule in args.rules:
        lines += statements(args.out, rule, args.losses)
    (args.out / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
