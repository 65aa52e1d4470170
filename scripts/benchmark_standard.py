"""How many APGD steps and Square queries the standard protocol needs on one model.

Trains (or reuses) the model of ``python run.py`` (extra Hydra overrides select another), then runs
``attack=standard``'s protocol, built from Python with the budgets under test, at every eps:

- the steps sweep (``--steps``, Square at the protocol's queries): each member's and the
  verdict's worst-task and average degradation: converged when more steps add little;
- the queries sweep (``--queries``, members at the protocol's steps): the verdict and the samples
  where Square beat every white-box member;
- ``--square-alone Q``: Square alone (the protocol's score, Q queries) on every test image:
  its per-task degradation and the largest perturbation it made (sweeps skipped).

Writes ``<out>/standard_budgets.json`` and ``<out>/standard_budgets.md`` (the tables of
docs/standard.md) and prints the tables.

    PYTHONPATH=. python scripts/benchmark_standard.py --steps 10 20 50 --queries 100 500 2000
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import open_dict

from mtl_attack.attacks import SquareAttack, build_objective, build_standard
from mtl_attack.evaluation import evaluate, evaluate_views, split_batch, summarize, verdicts
from mtl_attack.evaluation.evaluate import Totals
from mtl_attack.loggers import Logger
from mtl_attack.runner.main import setup
from mtl_attack.runner.standard import PROTOCOL_KEYS, fixed_protocol
from mtl_attack.runner.training import trained_model
from mtl_attack.utils.env import resolve_device

ROOT = Path(__file__).resolve().parents[1]


def composed(extra: list[str]):
    overrides = ["attack=none", "logger=none", "progress=false", *extra]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.hydra = None
        cfg.paths.run_dir = str(Path(cfg.paths.output_dir) / "benchmark_standard")
    return cfg


def protocol(**budget) -> dict:
    spec = fixed_protocol()
    return {k: spec[k] for k in PROTOCOL_KEYS} | budget


def measure(job, clean, eps_list, budget: dict) -> dict:
    """The protocol at ``budget``: per eps the verdict, every member and Square's wins."""
    rows = {}
    for eps in eps_list:
        attack = build_standard(job.tasks, eps, protocol(**budget))
        label = {"objective": "standard", "step": "apgd", "eps": eps, "target_task": None}
        start = time.time()
        entries = evaluate_views(
            job.model, job.tasks, job.test_loader, job.device, attack, clean, label, False
        )
        (found,) = verdicts(entries, 1, "sweep", {})
        members = {
            e["variant"][len("member/") :]: [e["min_degradation"], e["avg_degradation"]]
            for e in entries
            if e["variant"].startswith("member/")
        }
        wins = next(e for e in entries if e["variant"] == "min")["diagnostics"]["square_wins"]
        rows[eps] = {
            "verdict": [found["min_degradation"], found["avg_degradation"]],
            "tasks": {t: v["degradation"] for t, v in found["tasks"].items()},
            "members": members,
            "square_wins": wins,
            "flags": [f["flag"] for f in found["flags"]],
            "seconds": time.time() - start,
        }
        print(budget, eps, rows[eps]["verdict"], f"{rows[eps]['seconds']:.1f}s", flush=True)
    return rows


def square_alone(job, clean, eps_list, queries: int) -> dict:
    """Square alone on every test image: degradations, and the largest L-inf change made."""
    rows = {}
    objective = build_objective(fixed_protocol()["square"]["objective"], job.tasks)
    for eps in eps_list:
        attack = SquareAttack(objective, job.tasks, eps, queries=queries)
        totals, largest, start = Totals(job.tasks), 0.0, time.time()
        for batch in job.test_loader:
            images, targets = split_batch(batch, job.tasks, job.device)
            out = attack.run(job.model, images, targets)
            totals.update(out.preds, targets, out.losses)
            largest = max(largest, float((out.images - images).abs().max()) * 255)
        summary = summarize(job.tasks, clean, totals.result(job.device))
        rows[eps] = {
            "min_degradation": summary["min_degradation"],
            "avg_degradation": summary["avg_degradation"],
            "tasks": {t: v["degradation"] for t, v in summary["tasks"].items()},
            "largest_linf_levels": largest,
            "outside_budget": attack.stats.outside_budget,
            "seconds": time.time() - start,
        }
        print("square alone", eps, rows[eps], flush=True)
    return rows


def tables(results: dict) -> str:
    lines = ["**APGD steps** (min / avg degradation; Square at the protocol's queries)", ""]
    steps = results["steps"]
    first = next(iter(steps.values()))
    eps_list = list(first)
    names = ["verdict", *first[eps_list[0]]["members"]]
    head = "| member | " + " | ".join(f"{s} steps eps {e}" for s in steps for e in eps_list)
    lines += [head + " |", "|---" * (1 + len(steps) * len(eps_list)) + "|"]
    for name in names:
        cells = []
        for by_eps in steps.values():
            for row in by_eps.values():
                pair = row["verdict"] if name == "verdict" else row["members"][name]
                cells.append(f"{pair[0]:.3f} / {pair[1]:.3f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "**Square queries** (verdict min / avg degradation; Square's wins)", ""]
    lines += ["| queries | " + " | ".join(f"eps {e}" for e in eps_list) + " | seconds |"]
    lines += ["|---" * (2 + len(eps_list)) + "|"]
    for queries, by_eps in results["queries"].items():
        cells = [
            f"{r['verdict'][0]:.3f} / {r['verdict'][1]:.3f}; {r['square_wins']}"
            for r in by_eps.values()
        ]
        seconds = sum(r["seconds"] for r in by_eps.values())
        lines.append(f"| {queries} | " + " | ".join(cells) + f" | {seconds:.0f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 20, 50])
    parser.add_argument("--queries", type=int, nargs="+", default=[100, 500, 2000])
    parser.add_argument("--eps", type=float, nargs="+", default=[2, 4, 8])
    parser.add_argument("--out", type=Path, default=ROOT / "outputs" / "benchmark_standard")
    parser.add_argument("--square-alone", type=int, default=0, metavar="QUERIES")
    args, extra = parser.parse_known_args()
    cfg = composed(extra)
    device = resolve_device(cfg.device)
    job = setup(cfg, device)
    loaders = (job.train_loader, job.test_loader)
    trained_model(cfg, job.model, job.tasks, job.data, device, Logger(), *loaders)
    clean = evaluate(job.model, job.tasks, job.test_loader, device, progress=False)
    eps_list = [int(e) if e.is_integer() else e for e in args.eps]
    results = {"device": str(device), "threads": torch.get_num_threads(), "clean": clean}
    results |= {"steps": {}, "queries": {}}
    args.out.mkdir(parents=True, exist_ok=True)
    if args.square_alone:
        results["square_alone"] = square_alone(job, clean, eps_list, args.square_alone)
        (args.out / "square_alone.json").write_text(json.dumps(results, indent=1))
        return
    for axis, values in (("steps", args.steps), ("queries", args.queries)):
        for value in values:
            results[axis][value] = measure(job, clean, eps_list, {axis: value})
            (args.out / "standard_budgets.json").write_text(json.dumps(results, indent=1))
    text = tables(results)
    (args.out / "standard_budgets.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
