"""Markdown tables of the ``"attacks"`` and ``"transfer"`` entries of results.json files.

    python run.py -m attack=single,total,dgba,signsum attack/step=pgd,apgd \\
        hydra.sweep.dir=outputs/multirun/degradation
    python scripts/attack_table.py outputs/multirun/degradation
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

AGGREGATES = ("avg_degradation", "min_degradation", "avg_loss_increase")


def load_entries(root: Path) -> tuple[list[dict], list[dict]]:
    entries, transfer = [], []
    for path in sorted(root.rglob("results.json")):
        results = json.loads(path.read_text())
        entries += results.get("attacks", [])
        transfer += results.get("transfer", [])
    return entries, transfer


def attack_name(e: dict) -> str:
    return f"single({e['target_task']})" if e["objective"] == "single" else e["objective"]


def aggregate_table(entries: list[dict], key: str) -> list[str]:
    eps_list = sorted({e["eps"] for e in entries})
    rules = sorted({e["step"] for e in entries}, key=["fgsm", "pgd", "mim", "apgd"].index)
    head = "| attack | " + " | ".join(f"{r} eps={eps}" for r in rules for eps in eps_list) + " |"
    lines = [f"**{key}**", "", head, "|---" * (1 + len(rules) * len(eps_list)) + "|"]
    table: dict[str, dict] = {}
    for e in entries:
        table.setdefault(attack_name(e), {})[e["step"], e["eps"]] = e[key]
    best = {
        (r, eps): max(row.get((r, eps), float("-inf")) for row in table.values())
        for r in rules
        for eps in eps_list
    }
    for name, row in table.items():
        cells = []
        for r in rules:
            for eps in eps_list:
                v = row.get((r, eps))
                text = "" if v is None else f"{v:.3f}"
                cells.append(f"**{text}**" if v is not None and v == best[r, eps] else text)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return lines


def transfer_tables(transfer: list[dict]) -> list[str]:
    lines = []
    for m in transfer:
        cols = list(next(iter(m["matrix"].values())))
        lines += [
            "",
            f"**transfer matrix, single-task {m['step']} eps={m['eps']}** "
            "(row = attacked task, column = measured task, value = degradation)",
            "",
            "| attacked \\ measured | " + " | ".join(cols) + " |",
            "|---" * (1 + len(cols)) + "|",
        ]
        for row, values in m["matrix"].items():
            lines.append(f"| {row} | " + " | ".join(f"{values[c]:.3f}" for c in cols) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("root", type=Path, help="folder searched for results.json files")
    args = parser.parse_args()
    entries, transfer = load_entries(args.root)
    if not entries:
        raise SystemExit(f"no results.json with attacks under {args.root}; run the sweep first")
    for key in AGGREGATES:
        print("\n".join(aggregate_table(entries, key)) + "\n")
    print("\n".join(transfer_tables(transfer)))


if __name__ == "__main__":
    main()
