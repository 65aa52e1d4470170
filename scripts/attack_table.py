"""Markdown tables of the attack results and transfer matrices of results.json files.

    python run.py -m attack=single,total,dgba,signsum attack/step=pgd,apgd \\
        hydra.sweep.dir=outputs/multirun/degradation
    python scripts/attack_table.py outputs/multirun/degradation

Rows are attacks, columns (step rule, eps). Results are keyed on their complete identity, so a
sweep over anything else (steps, seed, random start, models, ...) gives one row per setting,
named by what tells the rows apart; identical results are reported as duplicates.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mtl_attack.report import (
    distinguish,
    find_results,
    load_runs,
    model_names,
    transfer_matrices,
    unique_results,
)
from mtl_attack.report.markdown import label_models
from mtl_attack.report.results import Result, duplicate_note

AGGREGATES = ("avg_degradation", "min_degradation", "avg_loss_increase")
RULE_ORDER = ["fgsm", "pgd", "mim", "apgd"]


def row_name(r: Result, several_models: bool) -> str:
    target = r.entry.get("target_task") or r.entry.get("variant")
    name = r.entry["objective"] + (f"({target})" if target else "")
    name += f"+{r.entry['loss']}" if r.entry.get("loss") else ""  # an attack loss besides ce
    name = (f"{r.model}: " if several_models else "") + name
    return name + (f" [{r.setting}]" if r.setting else "")


def aggregate_table(results: list[Result], key: str, several_models: bool) -> list[str]:
    eps_list = sorted({r.entry["eps"] for r in results})
    rules = sorted({r.entry["step"] for r in results}, key=_rule_rank)
    head = "| attack | " + " | ".join(f"{r} eps={eps}" for r in rules for eps in eps_list) + " |"
    lines = [f"**{key}**", "", head, "|---" * (1 + len(rules) * len(eps_list)) + "|"]
    table: dict[str, dict] = {}
    for r in results:
        table.setdefault(row_name(r, several_models), {})[r.entry["step"], r.entry["eps"]] = r
    best = {
        cell: max(row[cell].entry[key] for row in table.values() if cell in row)
        for cell in {c for row in table.values() for c in row}
    }
    for name, row in table.items():
        cells = []
        for rule in rules:
            for eps in eps_list:
                r = row.get((rule, eps))
                text = "" if r is None else f"{r.entry[key]:.3f}"
                is_best = r is not None and r.entry[key] == best[rule, eps]
                cells.append(f"**{text}**" if is_best else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def _rule_rank(rule: str) -> tuple:
    return (RULE_ORDER.index(rule) if rule in RULE_ORDER else len(RULE_ORDER), rule)


def transfer_tables(results: list[Result]) -> list[str]:
    lines = []
    for model in dict.fromkeys(r.model for r in results):
        own = [r for r in results if r.model == model]
        matrices = sorted(transfer_matrices(own).items(), key=str)
        for (step, eps, setting), (tasks, matrix) in matrices:
            what = f"{model}, " if len({r.model for r in results}) > 1 else ""
            lines += [
                "",
                f"**transfer matrix, {what}single-task {step} eps={eps}"
                + (f" [{setting}]" if setting else "")
                + "** (row = attacked task, column = measured task, value = degradation)",
                "",
                "| attacked \\ measured | " + " | ".join(tasks) + " |",
                "|---" * (1 + len(tasks)) + "|",
            ]
            for name, values in zip(tasks, matrix):
                lines.append(f"| {name} | " + " | ".join(f"{v:.3f}" for v in values) + " |")
    return lines


def tables(paths: list[Path]) -> str:
    """The whole Markdown output for results.json files under ``paths``."""
    runs = load_runs(find_results(paths))
    label_models(runs)
    results = unique_results(runs)
    if not results:
        raise SystemExit(f"no results.json with attacks under {paths}; run the sweep first")
    # results that would share a cell (same attack, rule, eps) are told apart by their identity
    cell = lambda r: (r.model, row_name(r, False), r.entry["step"], r.entry["eps"])  # noqa: E731
    distinguish(results, cell, model_names(runs))
    several = len({r.model for r in results}) > 1
    out = []
    for key in AGGREGATES:
        out += aggregate_table(results, key, several) + [""]
    out += transfer_tables(results)
    return "\n".join(duplicate_note(results) + out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("paths", type=Path, nargs="+", help="folders or results.json files")
    args = parser.parse_args()
    print(tables(args.paths))


if __name__ == "__main__":
    main()
