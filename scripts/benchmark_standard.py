"""How many APGD steps and Square queries the standard protocol needs on one model.

Trains (or reuses) the model of ``python run.py`` (extra Hydra overrides select another), then runs
``attack=standard``'s protocol, built from Python with the budgets under test, at every eps:

- the steps sweep (``--steps``, Square at the protocol's queries): each member's and the
  verdict's worst-task and average degradation: converged when more steps add little;
- the queries sweep (``--queries``, members at the protocol's steps): the verdict and the samples
  where Square beat every white-box member.

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

from mtl_attack.attacks import build_standard
from mtl_attack.evaluation import evaluate, evaluate_views, verdicts
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
    for axis, values in (("steps", args.steps), ("queries", args.queries)):
        for value in values:
            results[axis][value] = measure(job, clean, eps_list, {axis: value})
            (args.out / "standard_budgets.json").write_text(json.dumps(results, indent=1))
    text = tables(results)
    (args.out / "standard_budgets.md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
