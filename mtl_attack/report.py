"""Offline reports comparing runs: Markdown with PNG plots, built from results.json files.

Stands to the side of the pipeline like logging: it reads only what runs wrote.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

#: the metric shown for a task's clean accuracy in tables and trade-off plots
HEADLINE = {
    "segment_semantic": "miou",
    "normal": "angle_mean",
    "depth_zbuffer": "abs_err",
    "keypoints2d": "key_err",
    "edge_texture": "edge_err",
}


def find_results(paths: list[str | Path]) -> list[Path]:
    """results.json files: given directly, or found recursively under given folders."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += sorted(p.rglob("results.json"))
        elif p.is_file():
            found.append(p)
        else:
            raise FileNotFoundError(f"{p} is neither a results.json file nor a folder")
    found.sort(key=lambda p: [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))])
    if not found:
        raise FileNotFoundError(f"no results.json under {[str(p) for p in paths]}")
    return found


def load_runs(files: list[Path]) -> list[dict[str, Any]]:
    runs = []
    for f in files:
        data = json.loads(f.read_text())
        data["_path"] = str(f)
        data["_label"] = run_label(data)
        runs.append(data)
    return runs


def merge_by_model(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per trained model (same checkpoint): the jobs of a sweep that attacked the
    same model with different attacks are combined, each (attack, eps) once."""
    merged: dict[str, dict[str, Any]] = {}
    for run in runs:
        key = run.get("model", {}).get("checkpoint") or run["_path"]
        if key not in merged:
            merged[key] = {**run, "attacks": [], "_seen": set()}
        target = merged[key]
        for entry in run.get("attacks", []):
            ident = (attack_label(entry), entry["eps"])
            if ident not in target["_seen"]:
                target["_seen"].add(ident)
                target["attacks"].append(entry)
    return list(merged.values())


def run_label(run: dict[str, Any]) -> str:
    """Short name of the trained model: backbone, sharing, defense."""
    cfg = run.get("config", {})
    sharing = cfg.get("sharing", {})
    kind = str(sharing.get("_target_", "?")).rsplit(".", 1)[-1]
    extra = [f"{k}={v}" for k, v in sharing.items() if not k.startswith("_") and v is not None]
    defense = cfg.get("defense", {}).get("name", "none")
    backbone = str(cfg.get("backbone", {}).get("trunk", {}).get("_target_", "?")).rsplit(".", 1)[
        -1
    ]
    label = f"{backbone}/{kind}" + (f"({','.join(extra)})" if extra else "")
    return label + ("" if defense == "none" else f"/{defense}")


def attack_label(entry: dict[str, Any]) -> str:
    target = entry.get("target_task")
    name = entry["objective"] + (f"[{target}]" if target else "")
    return f"{name}/{entry['step']}"


def attack_rows(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (run, attack entry)."""
    rows = []
    for run in runs:
        for entry in run.get("attacks", []):
            rows.append(
                {
                    "run": run["_label"],
                    "attack": attack_label(entry),
                    "eps": entry["eps"],
                    "avg_degradation": entry["avg_degradation"],
                    "min_degradation": entry["min_degradation"],
                    "avg_loss_increase": entry["avg_loss_increase"],
                    "tasks": {t: v.get("degradation") for t, v in entry["tasks"].items()},
                }
            )
    return rows


def transfer_matrices(run: dict[str, Any]) -> dict[tuple[str, Any], tuple[list[str], list[list]]]:
    """(step, eps) -> (tasks, matrix) from the run's single-task attacks on every task:
    row = attacked task, column = measured task, value = degradation."""
    by_key: dict[tuple[str, Any], dict[str, dict]] = defaultdict(dict)
    for entry in run.get("attacks", []):
        if entry["objective"] == "single" and entry.get("target_task"):
            by_key[(entry["step"], entry["eps"])][entry["target_task"]] = entry["tasks"]
    out = {}
    for key, rows in by_key.items():
        tasks = list(next(iter(rows.values())))
        if set(rows) == set(tasks):
            out[key] = (tasks, [[rows[a][m]["degradation"] for m in tasks] for a in tasks])
    return out


def plot_degradation_vs_eps(run: dict[str, Any], path: Path) -> Path:
    entries = run.get("attacks", [])
    tasks = list(entries[0]["tasks"]) if entries else []
    panels = ["average", *tasks]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    series: dict[str, list[tuple]] = defaultdict(list)
    for e in entries:
        values = [e["avg_degradation"], *[e["tasks"][t]["degradation"] for t in tasks]]
        series[attack_label(e)].append((e["eps"], values))
    for label, points in sorted(series.items()):
        points.sort()
        eps = [p[0] for p in points]
        for i, ax in enumerate(axes[0]):
            ax.plot(eps, [p[1][i] for p in points], marker="o", label=label)
    for ax, name in zip(axes[0], panels):
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("eps (/255)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("relative degradation")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(run["_label"], fontsize=9)
    return _save(fig, path)


def plot_sharing_tradeoff(runs: list[dict[str, Any]], path: Path) -> Path | None:
    """Left: average degradation vs sharing_degree per attack (largest common eps).
    Right: clean headline metric per task vs sharing_degree."""
    with_degree = [r for r in runs if "sharing_degree" in r.get("model", {})]
    if not with_degree:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    eps_sets = [{e["eps"] for e in r.get("attacks", [])} for r in with_degree]
    common = set.intersection(*eps_sets) if eps_sets else set()
    eps = max(common) if common else None
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in with_degree:
        for e in r.get("attacks", []):
            if e["eps"] == eps:
                series[attack_label(e)].append(
                    (r["model"]["sharing_degree"], e["avg_degradation"])
                )
    for label, pts in sorted(series.items()):
        pts.sort()
        left.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    left.set_title(f"avg degradation at eps={eps}", fontsize=9)
    left.set_xlabel("sharing degree")
    left.legend(fontsize=7)
    for task, metric in HEADLINE.items():
        pts = sorted(
            (r["model"]["sharing_degree"], r["clean"][task][metric])
            for r in with_degree
            if task in r.get("clean", {})
        )
        if pts:
            right.plot(
                [p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{task} {metric}"
            )
    right.set_title("clean metrics", fontsize=9)
    right.set_xlabel("sharing degree")
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_transfer(tasks: list[str], matrix: list[list[float]], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(1.2 * len(tasks) + 2.5, 1.0 * len(tasks) + 1.5))
    im = ax.imshow(matrix, cmap="magma")
    ax.set_xticks(range(len(tasks)), tasks, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(tasks)), tasks, fontsize=8)
    ax.set_xlabel("measured task")
    ax.set_ylabel("attacked task")
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="cyan", fontsize=8)
    fig.colorbar(im, ax=ax, label="degradation")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.4f}"
    return str(value)


def markdown_table(header: list[str], rows: list[list[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return lines


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in text).strip("_")


def write_report(paths: list[str | Path], out: str | Path | None = None) -> dict[str, Any]:
    """Write ``report.md`` and its PNG plots into ``out`` (default: the first folder given).

    Returns ``{"report": path, "figures": [paths], "runs": n}``.
    """
    files = find_results(paths)
    runs = load_runs(files)
    first = Path(paths[0])
    out = Path(out) if out is not None else (first if first.is_dir() else first.parent)
    out.mkdir(parents=True, exist_ok=True)
    figures: list[Path] = []
    lines = [f"# mtl-attack report ({len(runs)} runs)", ""]

    models = sorted(
        merge_by_model(runs), key=lambda m: -m.get("model", {}).get("sharing_degree", 0)
    )
    lines += [
        "## Models",
        "",
        f"{len(models)} trained models (runs attacking the same weights are merged).",
        "",
    ]
    tasks = sorted({t for r in runs for t in r.get("clean", {})}, key=list(HEADLINE).index)
    header = ["model", "sharing degree", "params", *[f"{t} {HEADLINE[t]}" for t in tasks]]
    rows = [
        [
            m["_label"],
            m.get("model", {}).get("sharing_degree", "-"),
            m.get("model", {}).get("params_total", "-"),
            *[m["clean"].get(t, {}).get(HEADLINE[t], "-") for t in tasks],
        ]
        for m in models
    ]
    lines += markdown_table(header, rows) + [""]
    lines += ["Result files:", ""] + [f"- `{r['_path']}`" for r in runs] + [""]

    rows_att = attack_rows(models)
    if rows_att:
        lines += ["## Attacks", "", "Relative degradation: positive = worse than clean.", ""]
        lines += markdown_table(
            ["model", "attack", "eps", "avg_degradation", "min_degradation", "avg_loss_increase"],
            [
                [
                    a["run"],
                    a["attack"],
                    a["eps"],
                    a["avg_degradation"],
                    a["min_degradation"],
                    a["avg_loss_increase"],
                ]
                for a in rows_att
            ],
        ) + [""]
        lines += ["## Degradation against eps", ""]
        for i, model in enumerate(models):
            if model["attacks"]:
                fig = plot_degradation_vs_eps(model, out / f"degradation_vs_eps_{i}.png")
                figures.append(fig)
                lines += [f"![{model['_label']}]({fig.name})", ""]

    tradeoff = plot_sharing_tradeoff(models, out / "sharing_tradeoff.png")
    if tradeoff is not None:
        figures.append(tradeoff)
        lines += ["## Sharing trade-off", "", f"![sharing trade-off]({tradeoff.name})", ""]

    transfer_lines = []
    for i, model in enumerate(models):
        for (step, eps), (names, matrix) in sorted(transfer_matrices(model).items()):
            title = f"{model['_label']} {step} eps={eps}"
            fig = plot_transfer(
                names, matrix, title, out / f"transfer_{i}_{_slug(step)}_eps{eps}.png"
            )
            figures.append(fig)
            transfer_lines += [f"![transfer {title}]({fig.name})", ""]
    if transfer_lines:
        lines += ["## Transfer matrices", "", "Row = attacked task, column = measured task.", ""]
        lines += transfer_lines

    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return {"report": report, "figures": figures, "runs": len(runs)}
