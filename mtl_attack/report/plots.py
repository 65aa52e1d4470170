"""The report's figures: degradation against eps, the sharing trade-off, transfer matrices."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from mtl_attack.report.results import Result  # noqa: E402

#: the metric shown for a task's clean accuracy in tables and trade-off plots
HEADLINE = {
    "segment_semantic": "miou",
    "normal": "angle_mean",
    "depth_zbuffer": "abs_err",
    "keypoints2d": "key_err",
    "edge_texture": "edge_err",
}


def headline(task: str, clean: dict[str, float]) -> str:
    """The task's headline metric (the first metric for a task the table does not know)."""
    return HEADLINE.get(task) or next(k for k in clean if k != "loss")


def transfer_matrices(results: list[Result]) -> dict[tuple, tuple[list[str], list[list]]]:
    """(step, eps, setting) -> (tasks, matrix) from single-task attacks on every task of one
    model: row = attacked task, column = measured task, value = degradation."""
    by_key: dict[tuple, dict[str, dict]] = defaultdict(dict)
    for r in results:
        e = r.entry
        if e["objective"] == "single" and e.get("target_task"):
            by_key[(e["step"], e["eps"], r.setting)][e["target_task"]] = e["tasks"]
    out = {}
    for key, rows in by_key.items():
        tasks = list(next(iter(rows.values())))
        if set(rows) == set(tasks):
            out[key] = (tasks, [[rows[a][m]["degradation"] for m in tasks] for a in tasks])
    return out


def plot_degradation_vs_eps(results: list[Result], title: str, path: Path) -> Path:
    """One model: average and per-task degradation against eps, one line per attack."""
    tasks = list(results[0].entry["tasks"]) if results else []
    panels = ["average", *tasks]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.2), squeeze=False)
    series: dict[str, list[tuple]] = defaultdict(list)
    for r in results:
        e = r.entry
        values = [e["avg_degradation"], *[e["tasks"][t]["degradation"] for t in tasks]]
        series[r.attack].append((e["eps"], values))
    for label, points in sorted(series.items()):
        points.sort(key=lambda p: p[0])
        eps = [p[0] for p in points]
        for i, ax in enumerate(axes[0]):
            ax.plot(eps, [p[1][i] for p in points], marker="o", label=label)
    for ax, name in zip(axes[0], panels):
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("eps (/255)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("relative degradation")
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=9)
    return save(fig, path)


def plot_sharing_tradeoff(models: list[dict], results: list[Result], path: Path) -> Path | None:
    """Left: average degradation vs sharing_degree per attack (largest common eps).
    Right: clean headline metric per task vs sharing_degree. ``models``: one run per model."""
    with_degree = [m for m in models if "sharing_degree" in m.get("model", {})]
    if not with_degree:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.4))
    degree = {m["_model_key"]: m["model"]["sharing_degree"] for m in with_degree}
    eps_sets = [
        {r.entry["eps"] for r in results if r.identity.get("model") == key} for key in degree
    ]
    common = set.intersection(*eps_sets) if eps_sets else set()
    eps = max(common) if common else None
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in results:
        key = r.identity.get("model")
        if key in degree and r.entry["eps"] == eps:
            series[r.attack].append((degree[key], r.entry["avg_degradation"]))
    for label, pts in sorted(series.items()):
        pts.sort()
        left.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    left.set_title(f"avg degradation at eps={eps}", fontsize=9)
    left.set_xlabel("sharing degree")
    left.legend(fontsize=7)
    tasks = {t: headline(t, c) for m in with_degree for t, c in m.get("clean", {}).items()}
    for task, metric in tasks.items():
        pts = sorted(
            (m["model"]["sharing_degree"], m["clean"][task][metric])
            for m in with_degree
            if task in m.get("clean", {})
        )
        right.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=f"{task} {metric}")
    right.set_title("clean metrics", fontsize=9)
    right.set_xlabel("sharing degree")
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    return save(fig, path)


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
    return save(fig, path)


def save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
