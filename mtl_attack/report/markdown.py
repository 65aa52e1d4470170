"""``report.md``: the models, every attack result (one row per identity), plots."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mtl_attack.report.plots import (
    headline,
    plot_degradation_vs_eps,
    plot_sharing_tradeoff,
    plot_transfer,
    transfer_matrices,
)
from mtl_attack.report.results import (
    Result,
    distinguish,
    duplicate_note,
    find_results,
    load_runs,
    model_names,
    unique_results,
)

AGGREGATES = ("avg_degradation", "min_degradation", "avg_loss_increase")


def model_key(run: dict[str, Any]) -> str:
    """The trained weights a run used: its cache key (older files: the checkpoint's folder)."""
    model = run.get("model", {})
    if model.get("key"):
        return str(model["key"])
    checkpoint = model.get("checkpoint")
    return Path(checkpoint).parent.name if checkpoint else run["_path"]


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


def models_section(models: list[dict], runs: list[dict]) -> list[str]:
    tasks = list(dict.fromkeys(t for m in models for t in m.get("clean", {})))
    metrics = {
        t: headline(t, next(m["clean"][t] for m in models if t in m["clean"])) for t in tasks
    }
    rows = [
        [
            m["_label"],
            m.get("model", {}).get("sharing_degree", "-"),
            m.get("model", {}).get("params_total", "-"),
            *[m["clean"].get(t, {}).get(metrics[t], "-") for t in tasks],
        ]
        for m in models
    ]
    header = ["model", "sharing degree", "params", *[f"{t} {metrics[t]}" for t in tasks]]
    lines = [
        "## Models",
        "",
        f"{len(models)} trained models (runs of the same weights merged).",
        "",
    ]
    lines += markdown_table(header, rows) + [""]
    return lines + ["Result files:", ""] + [f"- `{r['_path']}`" for r in runs] + [""]


def attacks_section(results: list[Result]) -> list[str]:
    settings = any(r.setting for r in results)
    lines = ["## Attacks", "", "Relative degradation: positive = worse than clean."]
    if settings:
        lines += [
            "Rows whose model, attack and eps agree differ in the setting in brackets "
            "(from each result's identity)."
        ]
    lines += [""]
    rows = [
        [r.model, r.attack, r.entry["eps"], *[r.entry[k] for k in AGGREGATES]] for r in results
    ]
    lines += markdown_table(["model", "attack", "eps", *AGGREGATES], rows) + [""]
    return lines + duplicate_note(results)


def plot_sections(models: list[dict], results: list[Result], out: Path) -> tuple[list, list]:
    lines, figures = [], []
    by_model = {
        m["_model_key"]: [r for r in results if r.identity.get("model") == m["_model_key"]]
        for m in models
    }
    eps_lines = []
    for i, m in enumerate(models):
        if by_model[m["_model_key"]]:
            fig = plot_degradation_vs_eps(
                by_model[m["_model_key"]], m["_label"], out / f"degradation_vs_eps_{i}.png"
            )
            figures.append(fig)
            eps_lines += [f"![{m['_label']}]({fig.name})", ""]
    if eps_lines:
        lines += ["## Degradation against eps", "", *eps_lines]
    tradeoff = plot_sharing_tradeoff(models, results, out / "sharing_tradeoff.png")
    if tradeoff is not None:
        figures.append(tradeoff)
        lines += ["## Sharing trade-off", "", f"![sharing trade-off]({tradeoff.name})", ""]
    transfer = []
    for i, m in enumerate(models):
        matrices = transfer_matrices(by_model[m["_model_key"]])
        for (step, eps, setting), (names, matrix) in sorted(matrices.items(), key=str):
            title = f"{m['_label']} {step} eps={eps}" + (f" [{setting}]" if setting else "")
            name = f"transfer_{i}_{_slug(step)}_eps{eps}" + (f"_{_slug(setting)}" * bool(setting))
            fig = plot_transfer(names, matrix, title, out / f"{name}.png")
            figures.append(fig)
            transfer += [f"![transfer {title}]({fig.name})", ""]
    if transfer:
        lines += ["## Transfer matrices", "", "Row = attacked task, column = measured task.", ""]
        lines += transfer
    return lines, figures


def label_models(runs: list[dict]) -> dict[str, dict]:
    """Model key -> its first run; runs get ``_model_key`` and a ``_label`` unique per model
    (two models with the same short name, e.g. two seeds, get their key's start appended)."""
    models: dict[str, dict] = {}
    for run in runs:
        run["_model_key"] = model_key(run)
        models.setdefault(run["_model_key"], run)
    keys_per_label: dict[str, set] = {}
    for run in runs:
        keys_per_label.setdefault(run["_label"], set()).add(run["_model_key"])
    for run in runs:
        if len(keys_per_label[run["_label"]]) > 1:
            run["_label"] += f"#{run['_model_key'][:6]}"
    return models


def write_report(paths: list[str | Path], out: str | Path | None = None) -> dict[str, Any]:
    """Write ``report.md`` and its PNG plots into ``out`` (default: the first folder given).

    Returns ``{"report": path, "figures": [paths], "runs": n, "results": [Result, ...]}``.
    """
    runs = load_runs(find_results(paths))
    first = Path(paths[0])
    out = Path(out) if out is not None else (first if first.is_dir() else first.parent)
    out.mkdir(parents=True, exist_ok=True)
    models = label_models(runs)
    ordered = sorted(models.values(), key=lambda m: -m.get("model", {}).get("sharing_degree", 0))
    results = unique_results(runs)
    distinguish(results, lambda r: (r.model, r.attack, r.entry["eps"]), model_names(runs))
    lines = [f"# mtl-attack report ({len(runs)} runs)", ""]
    lines += models_section(ordered, runs)
    figures: list[Path] = []
    if results:
        lines += attacks_section(results)
        plot_lines, figures = plot_sections(ordered, results, out)
        lines += plot_lines
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    return {"report": report, "figures": figures, "runs": len(runs), "results": results}
