"""Every multi-task objective, the ensemble and the weight frontier on one trained model.

Runs ``run.py``'s pipeline in-process once per attack config (default: the default model, i.e.
``python run.py``'s tiny network on the synthetic benchmark, its 200 test images, PGD and APGD
at eps 2/4/8, 10 steps): single (every task), total, relative, dgba, signsum, cyclic, minmax
(loss and metric weights), every aggregator and the ensemble; then the frontier at
``--frontier-eps``. Each run writes ``<out>/<name>/results.json``; the report (with the frontier
figure) goes to ``<out>/report``; the Markdown tables and the plain statements (best attack per
aggregate; does any single attack beat every SINGLE attack on min_degradation?) go to
``<out>/tables.md`` and the screen. ``sec`` is the process CPU time of the attack and its
evaluation on one thread (``cpu_seconds`` of the entries; the machine may be shared).

Finished results are cached per model (``outputs/checkpoints/<key>/evaluations``): delete that
folder to measure again.

    python scripts/benchmark_objectives.py                              # ~1 h on one core
    python scripts/benchmark_objectives.py --rules pgd --eps 4 --attacks dgba minmax frontier
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from mtl_attack.report import load_runs, unique_results, write_report
from mtl_attack.runner import run

ROOT = Path(__file__).resolve().parents[1]
AGGREGATES = ("avg_degradation", "min_degradation", "avg_loss_increase", "cpu_seconds")
#: name -> overrides of attack=...
CONFIGS = {
    "single": ["attack=single", "attack.task=all"],
    "total": ["attack=total"],
    "relative": ["attack=relative"],
    "dgba": ["attack=dgba"],
    "signsum": ["attack=signsum"],
    "cyclic": ["attack=cyclic"],
    "minmax": ["attack=minmax"],
    "minmax_metric": ["attack=minmax", "attack.weights_from=metric"],
    **{
        a: ["attack=aggregate", f"attack.aggregator={a}"]
        for a in ("mgda", "linf_mgda", "pcgrad", "dbmtl", "imtl")
    },  # fmt: skip
    "ensemble": ["attack=ensemble"],
    "frontier": ["attack=frontier"],
}


def compose_run(name: str, rule: str, eps: list, out: Path, extra: list[str]):
    overrides = [
        *CONFIGS[name],
        f"attack/step={rule}",
        f"attack.eps=[{','.join(map(str, eps))}]",
        "logger=none",
        "progress=false",
        f"paths.run_dir={out / f'{name}_{rule}'}",
        *extra,
    ]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.hydra = None  # in-process: nothing may read hydra.*
    return cfg


def row_name(entry: dict) -> str:
    objective, detail = entry["objective"], entry.get("target_task") or entry.get("variant")
    if objective == "aggregate":
        return detail
    name = f"{objective}({detail})" if detail else objective
    return name + (" (lower bound, per-task images)" if detail == "per_task" else "")


def row_rank(entry: dict) -> tuple:
    """Rows in :data:`CONFIGS` order (single tasks in model order)."""
    objective, variant = entry["objective"], entry.get("variant")
    name = variant if objective == "aggregate" else objective
    name = "minmax_metric" if (objective, variant) == ("minmax", "metric") else name
    return (list(CONFIGS).index(name) if name in CONFIGS else len(CONFIGS),)


def tables(entries: list[dict]) -> tuple[list[str], dict]:
    """Markdown tables (rows = attacks, columns = rule x eps) with the best of each column in
    bold (``per_task`` and ``frontier`` rows excluded), and ``{aggregate: {column: best}}``."""
    columns = sorted({(e["step"], e["eps"]) for e in entries}, key=lambda c: (c[0] != "pgd", c))
    rows: dict[str, dict] = {}
    for e in sorted(entries, key=row_rank):  # stable: single tasks stay in model order
        if e["objective"] != "frontier":
            rows.setdefault(row_name(e), {})[e["step"], e["eps"]] = e
    lines, best = [], {}
    for key in AGGREGATES:
        contenders = {n: r for n, r in rows.items() if "per-task" not in n}
        best[key] = {
            c: max((r[c][key], n) for n, r in contenders.items() if c in r) for c in columns
        }
        lines += [f"**{key}**" + (" (CPU s, attack + evaluation)" if key == "cpu_seconds" else ""),
                  "", "| attack | " + " | ".join(f"{r} eps={e}" for r, e in columns) + " |",
                  "|---" * (len(columns) + 1) + "|"]  # fmt: skip
        for name, row in rows.items():
            cells = []
            for c in columns:
                value = row[c][key] if c in row else None
                text = "" if value is None else f"{value:.{1 if key == 'cpu_seconds' else 3}f}"
                bold = key != "cpu_seconds" and value is not None and best[key][c][1] == name
                cells.append(f"**{text}**" if bold else text)
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines, best


def statements(entries: list[dict], best: dict) -> list[str]:
    """Which attack is best on each aggregate; does a single attack beat every SINGLE one on
    min_degradation (the ensemble and the frontier do not count: they are many attacks)?"""
    lines = []
    for key in AGGREGATES[:3]:
        cells = ", ".join(f"{r} eps={e}: {n} ({v:.3f})" for (r, e), (v, n) in best[key].items())
        lines.append(f"- Best on `{key}`: {cells}.")
    for (rule, eps), _ in best["min_degradation"].items():
        col = [e for e in entries if (e["step"], e["eps"]) == (rule, eps)]
        singles = [e for e in col if e["objective"] == "single"]
        if not singles:
            continue
        top = max(singles, key=lambda e: e["min_degradation"])
        others = [e for e in col if e["objective"] not in ("single", "ensemble", "frontier")]
        beat = [e for e in others if e["min_degradation"] > top["min_degradation"]]
        verdict = ", ".join(f"{row_name(e)} {e['min_degradation']:.3f}" for e in beat) or "none"
        lines.append(
            f"- {rule} eps={eps}: best SINGLE on `min_degradation` is {row_name(top)} "
            f"({top['min_degradation']:.3f}); single attacks beating it: {verdict}."
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/benchmark_objectives"))
    parser.add_argument("--rules", nargs="+", default=["pgd", "apgd"])
    parser.add_argument("--eps", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--frontier-eps", nargs="+", type=int, default=[4])
    parser.add_argument("--attacks", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("overrides", nargs="*", help="extra config overrides (model, data...)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for rule in args.rules:
        for name in args.attacks:
            eps = args.frontier_eps if name == "frontier" else args.eps
            print(f"== {name} {rule} eps={eps}", flush=True)
            run(compose_run(name, rule, eps, args.out, args.overrides))
    runs = load_runs(sorted(args.out.glob("*/results.json")))
    entries = [r.entry for r in unique_results(runs)]
    report = write_report([args.out], args.out / "report")
    lines, best = tables(entries)
    lines += ["", *statements(entries, best), ""]
    figures = [str(f) for f in report["figures"] if f.name.startswith("frontier")]
    lines += [f"Frontier figure(s): {', '.join(figures)}"]
    (args.out / "tables.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
