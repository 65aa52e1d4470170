"""Robust evaluation study (method.md section 8) on the synthetic benchmark.

Trains (or reuses from the checkpoint cache) a clean model and models adversarially trained with
TOTAL and with DGBA, attacks each with SINGLE (every task), TOTAL and DGBA at eps 2, 4, 8, and
writes a Markdown table, a JSON file and a plot:

    python scripts/robustness_study.py                       # ~10 min on 2 busy CPU cores
    python scripts/robustness_study.py --epochs 4 --num-train 200   # a quick look

Outputs: ``docs/robustness_study.md``, ``docs/robustness_study.png`` and
``<out>/study.json`` (every attack entry of every model).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import open_dict  # noqa: E402

from mtl_attack.runner import run  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODELS = {
    "clean": ["defense=none"],
    "adv-total": ["defense=adv_train", "defense.attack=total"],
    "adv-dgba": ["defense=adv_train", "defense.attack=dgba"],
}
ATTACKS = {"single": ["attack=single", "attack.task=all"], "total": ["attack=total"],
           "dgba": ["attack=dgba"]}  # fmt: skip
HEADLINE = {"segment_semantic": "miou", "normal": "angle_mean", "depth_zbuffer": "abs_err"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--num-train", type=int, default=800)
    p.add_argument("--num-test", type=int, default=200)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--train-steps", type=int, default=5, help="attack steps per training step")
    p.add_argument("--train-eps", type=float, default=8)
    p.add_argument("--eval-steps", type=int, default=10)
    p.add_argument("--eps", type=int, nargs="+", default=[2, 4, 8])
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on busy cores)"
    )
    p.add_argument("--out", default="outputs/robustness_study")
    p.add_argument("--docs", default="docs")
    p.add_argument("--from-json", default=None, help="redraw table and plot from a study.json")
    return p.parse_args()


def config(args, model: list[str], attack: list[str], run_name: str):
    out = Path(args.out)
    overrides = [
        "logger=none", "progress=false", "device=cpu",
        f"dataset.num_train={args.num_train}", f"dataset.num_test={args.num_test}",
        f"dataset.resolution={args.resolution}", f"train.epochs={args.epochs}",
        f"paths.output_dir={out}", f"paths.data_dir={ROOT / 'data'}",
        f"paths.run_dir={out / 'runs' / run_name}",
        *model, *attack,
        f"attack.eps=[{','.join(map(str, args.eps))}]", f"attack.steps={args.eval_steps}",
    ]  # fmt: skip
    if "defense=adv_train" in model:
        overrides += [f"defense.steps={args.train_steps}", f"defense.eps={args.train_eps}"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=overrides)
    with open_dict(cfg):
        cfg.hydra = None
    return cfg


def study(args) -> dict:
    """``{model: {"clean": metrics, "defense": ..., "train_seconds", "entries": [...]}}``."""
    results: dict = {}
    for name, model in MODELS.items():
        for attack, overrides in ATTACKS.items():
            t0 = time.time()
            res = run(config(args, model, overrides, f"{name}-{attack}"))
            print(f"{name:<10} attacked by {attack:<7} {time.time() - t0:7.1f}s", flush=True)
            record = results.setdefault(name, {"clean": res["clean"], "defense": res["defense"],
                                               "entries": []})  # fmt: skip
            if not res["model"]["cache_hit"]:
                spec = Path(res["model"]["checkpoint"]).parent / "spec.json"
                record["train_seconds"] = json.loads(spec.read_text())["train_seconds"]
            record["entries"] += res["attacks"]
    return results


def label(entry: dict) -> str:
    return (
        "single/" + entry["target_task"] if entry["objective"] == "single" else entry["objective"]
    )


def degradation_table(results: dict, eps: list[int]) -> list[str]:
    head = "| model | attack | " + " | ".join(f"eps {e}" for e in eps) + " |"
    lines = [head, "|---|---|" + "---:|" * len(eps)]
    for model, rec in results.items():
        by_label: dict[str, dict] = {}
        for e in rec["entries"]:
            by_label.setdefault(label(e), {})[e["eps"]] = e["avg_degradation"]
        for name, row in by_label.items():
            cells = " | ".join(f"{100 * row[e]:.1f}" for e in eps)
            lines.append(f"| {model} | {name} | {cells} |")
    return lines


def per_task_table(results: dict, eps: int) -> list[str]:
    tasks = list(HEADLINE)
    head = "| model | input | " + " | ".join(f"{t} {m}" for t, m in HEADLINE.items()) + " |"
    lines = [head, "|---|---|" + "---:|" * len(tasks)]
    for model, rec in results.items():
        cells = " | ".join(f"{rec['clean'][t][HEADLINE[t]]:.3f}" for t in tasks)
        lines.append(f"| {model} | clean | {cells} |")
        for e in rec["entries"]:
            if e["eps"] == eps:
                cells = " | ".join(f"{e['tasks'][t][HEADLINE[t]]:.3f}" for t in tasks)
                lines.append(f"| {model} | {label(e)} eps {eps} | {cells} |")
    return lines


def strongest(rec: dict, eps: int) -> tuple[str, float]:
    entries = [e for e in rec["entries"] if e["eps"] == eps]
    best = max(entries, key=lambda e: e["avg_degradation"])
    return label(best), best["avg_degradation"]


def verdicts(results: dict, eps: list[int]) -> list[str]:
    """Plain statements: did adversarial training lower degradation; is DGBA strongest."""
    lines = []
    clean = results["clean"]
    for model in [m for m in results if m != "clean"]:
        lower = []
        for e in eps:
            for attack in ("total", "dgba"):
                a = _avg(clean, attack, e)
                b = _avg(results[model], attack, e)
                lower.append(b < a)
        lines.append(
            f"- {model}: lower average degradation than the clean model in "
            f"{sum(lower)}/{len(lower)} (attack, eps) cells (total and dgba attacks)."
        )
    for model, rec in results.items():
        wins = [(e, *strongest(rec, e)) for e in eps]
        txt = ", ".join(f"eps {e}: {name} ({100 * v:.1f}%)" for e, name, v in wins)
        lines.append(f"- strongest attack on {model}: {txt}.")
    return lines


def _avg(rec: dict, objective: str, eps: int) -> float:
    for e in rec["entries"]:
        if e["objective"] == objective and e["eps"] == eps:
            return e["avg_degradation"]
    return math.nan


def plot(results: dict, eps: list[int], path: Path) -> None:
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), sharey=False)
    for ax, (model, rec) in zip(axes, results.items()):
        curves: dict[str, list[float]] = {}
        for e in sorted(rec["entries"], key=lambda e: e["eps"]):
            curves.setdefault(label(e), []).append(100 * e["avg_degradation"])
        for name, ys in curves.items():
            style = "--" if name.startswith("single") else "-"
            ax.plot(
                eps, ys, style, marker="o", label=name, linewidth=2.2 if name == "dgba" else 1.2
            )
        ax.set_title(f"{model} model")
        ax.set_xlabel("eps (pixel levels /255)")
        ax.set_xticks(eps)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("average degradation over tasks (%)")
    axes[-1].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    out, docs = Path(args.out), Path(args.docs)
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        args, results = argparse.Namespace(**saved["args"]), saved["results"]
        t0 -= saved.get("seconds", 0.0)
    else:
        results = study(args)
        out.mkdir(parents=True, exist_ok=True)
        blob = {"args": vars(args), "results": results, "seconds": time.time() - t0}
        (out / "study.json").write_text(json.dumps(blob, indent=1))
    plot(results, args.eps, docs / "robustness_study.png")
    settings = (f"{args.num_train} train / {args.num_test} test images at {args.resolution} px, "
                f"{args.epochs} epochs; adversarial training eps {args.train_eps:g} with "
                f"{args.train_steps} PGD steps; evaluation attacks PGD {args.eval_steps} steps; "
                f"total {time.time() - t0:.0f}s")  # fmt: skip
    train_s = {m: f"{r.get('train_seconds', float('nan')):.0f}s" for m, r in results.items()}
    md = ["# Robustness study", "", settings, f"training time: {train_s}", "",
          "Average degradation over tasks (%, higher = stronger attack):", "",
          *degradation_table(results, args.eps), "",
          f"Per-task headline metrics, clean and at eps {max(args.eps)}:", "",
          *per_task_table(results, max(args.eps)), "",
          *verdicts(results, args.eps), ""]  # fmt: skip
    (docs / "robustness_study.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
