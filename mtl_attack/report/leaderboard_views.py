"""What a leaderboard :class:`~mtl_attack.report.leaderboard.Board` looks like: the Markdown
table, the plot (clean quality against worst-task degradation, one labelled point per model),
and what moved since an earlier leaderboard.json (:func:`compare`)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mtl_attack.report.leaderboard import (
    PROTOCOL,
    Board,
    LeaderboardError,
    Model,
    _key,
    board_from_json,
    board_to_json,
    collect,
    ranking_eps,
)
from mtl_attack.report.markdown import markdown_table
from mtl_attack.report.plots import headline, plt, save
from mtl_attack.utils.io import write_json

#: what moves less than this (absolute, in degradation or metric units) did not move
TOLERANCE = 1e-4


def headlines(board: Board) -> dict[str, str]:
    """Task -> the metric its clean column shows."""
    tasks = board.benchmark.get("tasks") or list(board.models[0].clean)
    first = {t: next(m.clean[t] for m in board.models if t in m.clean) for t in tasks}
    return {t: headline(t, first[t]) for t in tasks}


def identity_text(model: Model) -> str:
    """The identity column: sha256 of imported weights, the training config otherwise."""
    ident = model.identity
    if ident["kind"] != "tree":
        return f"`sha256 {str(ident.get('weights_sha256'))[:12]}` ({ident['file']})"
    cfg = ident["config"]
    defense = cfg["defense"]
    trained = (
        f"{defense['name']} {defense.get('attack')}/{defense.get('step')} "
        f"eps {defense.get('eps'):g} x{defense.get('steps')}"
        if defense.get("adversarial")
        else "clean training"
    )
    return f"{trained}, {cfg['epochs']} epochs, seed {cfg['seed']}, key `{str(ident['key'])[:8]}`"


def flag_text(model: Model) -> str:
    names: dict[str, list[str]] = {}
    for eps, flag in model.flags:
        names.setdefault(flag["flag"], []).append(f"{eps:g}")
    return ", ".join(f"{n} (eps {'/'.join(e)})" for n, e in names.items()) or "-"


def _cell(verdict: dict | None, key: str) -> Any:
    return "-" if verdict is None else verdict[key]


def leaderboard_rows(board: Board) -> tuple[list[str], list[list[Any]]]:
    metrics = headlines(board)
    header = ["rank", "model", "identity", *[f"{t} {m}" for t, m in metrics.items()]]
    for eps in board.eps:
        header += [f"worst-task eps {eps:g}", f"avg eps {eps:g}"]
    rows = []
    for rank, m in enumerate(board.models, 1):
        row = [rank, m.name, identity_text(m)]
        row += [m.clean.get(t, {}).get(metric, "-") for t, metric in metrics.items()]
        for eps in board.eps:
            verdict = m.verdicts.get(eps)
            row += [_cell(verdict, "min_degradation"), _cell(verdict, "avg_degradation")]
        seconds = sum(v.get("seconds", 0.0) for v in m.verdicts.values())
        rows.append(row + [f"{seconds:.0f}", flag_text(m)])
    return header + ["protocol s", "flags"], rows


def intro(board: Board) -> list[str]:
    bench, eps = board.benchmark, ranking_eps(board)
    data = bench.get("data", {})
    images = f", {data['num_test']} test images" if "num_test" in data else ""
    budgets = ", ".join(f"{e:g}" for e in board.eps)
    tasks = ", ".join(bench.get("tasks", []))
    count = f"{len(board.models)} model" + "s" * (len(board.models) != 1)
    return [
        f"# mtl-attack leaderboard: protocol {PROTOCOL} version {board.version}",
        "",
        f"{count} on {bench.get('dataset')} ({tasks}"
        f"{images}; metrics: {bench.get('metrics')}), each attacked by `attack=standard` "
        f"version {board.version} at eps {budgets} (pixel levels, /255, L-infinity)"
        + (
            "."
            if board.budget == "full"
            else f", at the {board.budget} budget: NOT the protocol's numbers (tests only)."
        ),
        "",
        f"Ranked by worst-task degradation at eps {eps:g}, lowest first (most robust); ties by "
        "the average. Degradation is the relative change of a task's metrics under attack, "
        "positive = worse than clean; worst-task = the least-degraded task (every task lost at "
        "least this much), avg = the mean over tasks. Clean columns: each task's headline "
        "metric on the clean test images. protocol s: the protocol's seconds, all eps together.",
        "",
    ]


def details(board: Board) -> list[str]:
    lines: list[str] = []
    flagged = [(m, eps, f) for m in board.models for eps, f in m.flags]
    if flagged:
        lines += ["## Flags", ""]
        lines += [
            f"- **{m.name}**, eps {eps:g}, `{f['flag']}`: {f['message']}" for m, eps, f in flagged
        ]
        lines += [""]
    lines += ["## Model identities", ""]
    for m in board.models:
        lines.append(f"- **{m.name}**: `{json.dumps(m.identity, sort_keys=True)}`")
        lines += [f"  - from `{s}`" for s in m.sources]
    dups = [(m, d) for m in board.models for d in m.duplicates]
    if dups:
        lines += [
            "",
            f"## Duplicates ({len(dups)})",
            "",
            "The same model and eps evaluated again:",
            "",
        ]
        lines += [f"- **{m.name}** {d}" for m, d in dups]
    if board.skipped:
        lines += [
            "",
            f"## Skipped ({len(board.skipped)} runs without an attack=standard verdict)",
            "",
        ]
        lines += [f"- `{p}`" for p in board.skipped]
    return lines


def markdown(board: Board, plot: str | None = None) -> str:
    """The leaderboard page: intro, table, plot, flags, identities, duplicates, skipped."""
    header, rows = leaderboard_rows(board)
    lines = intro(board) + markdown_table(header, rows) + [""]
    if plot:
        lines += [f"![clean quality against worst-task degradation]({plot})", ""]
    return "\n".join(lines + details(board)) + "\n"


def plot(board: Board, path: Path) -> Path:
    """One panel per task: its clean headline metric (x) against the worst-task degradation
    at the ranking eps (y), one labelled point per model."""
    eps, metrics = ranking_eps(board), headlines(board)
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.8), squeeze=False)
    for ax, (task, metric) in zip(axes[0], metrics.items()):
        for m in board.models:
            verdict = m.verdicts.get(eps)
            x = m.clean.get(task, {}).get(metric, math.nan)
            if verdict is None or not math.isfinite(x):
                continue
            ax.scatter([x], [verdict["min_degradation"]], s=30)
            ax.annotate(m.name, (x, verdict["min_degradation"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
        ax.set_xlabel(f"clean {task} {metric}")
        ax.ticklabel_format(axis="x", useOffset=False)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"worst-task degradation, eps {eps:g}")
    fig.suptitle(
        f"leaderboard ({PROTOCOL} v{board.version}): clean quality against robustness "
        "(lower = more robust)",
        fontsize=9,
    )
    return save(fig, path)


def _moved(old: float, new: float) -> bool:
    if math.isnan(old) or math.isnan(new):
        return math.isnan(old) != math.isnan(new)
    return abs(new - old) > TOLERANCE


def model_changes(old: Model, new: Model, metrics: dict[str, str]) -> list[str]:
    """What moved for one model: robust numbers per eps, clean headline metrics, flags."""
    changes = []
    for eps in sorted(set(old.verdicts) | set(new.verdicts)):
        a, b = old.verdicts.get(eps), new.verdicts.get(eps)
        if a is None or b is None:
            changes.append(f"eps {eps:g} {'added' if a is None else 'removed'}")
            continue
        for key, what in (("min_degradation", "worst-task"), ("avg_degradation", "avg")):
            if _moved(a[key], b[key]):
                changes.append(f"{what} eps {eps:g}: {a[key]:.4f} -> {b[key]:.4f}")
    for task, metric in metrics.items():
        x, y = old.clean.get(task, {}).get(metric), new.clean.get(task, {}).get(metric)
        if x is not None and y is not None and _moved(x, y):
            changes.append(f"clean {task} {metric}: {x:.4f} -> {y:.4f}")
    flags_old = {(e, f["flag"]) for e, f in old.flags}
    flags_new = {(e, f["flag"]) for e, f in new.flags}
    changes += [f"flag {n} at eps {e:g} raised" for e, n in sorted(flags_new - flags_old)]
    changes += [f"flag {n} at eps {e:g} gone" for e, n in sorted(flags_old - flags_new)]
    return changes


def compare(old: Board, new: Board) -> list[str]:
    """What moved from ``old`` to ``new`` (Markdown lines), models matched by identity.
    Boards of another protocol version or benchmark are refused: their numbers differ by
    construction."""
    if old.version != new.version:
        raise LeaderboardError(
            f"the old leaderboard is {PROTOCOL} version {old.version}, the new one version "
            f"{new.version}: compare leaderboards of one version (rebuild the old one with "
            f"--version {old.version}, or re-run its models under version {new.version})"
        )
    if old.budget != new.budget:
        raise LeaderboardError(f"budgets {old.budget} and {new.budget} differ: not comparable")
    if _key(old.benchmark) != _key(new.benchmark):
        raise LeaderboardError("the two leaderboards are on different benchmarks: not comparable")
    before = {_key(m.identity): (rank, m) for rank, m in enumerate(old.models, 1)}
    after = {_key(m.identity): (rank, m) for rank, m in enumerate(new.models, 1)}
    lines = [f"- added: **{m.name}** (rank {r})" for k, (r, m) in after.items() if k not in before]
    lines += [f"- removed: **{m.name}**" for k, (_, m) in before.items() if k not in after]
    metrics = headlines(new)
    for k in after.keys() & before.keys():
        (r0, m0), (r1, m1) = before[k], after[k]
        moved = ([f"rank {r0} -> {r1}"] if r0 != r1 else []) + model_changes(m0, m1, metrics)
        if moved:
            lines.append(f"- **{m1.name}**: " + "; ".join(moved))
    head = [f"## Changes since the earlier leaderboard (tolerance {TOLERANCE:g})", ""]
    return head + (sorted(lines) or [f"- nothing moved ({len(after)} models)"])


def write_leaderboard(
    paths: list[str | Path],
    out: str | Path | None,
    version: int,
    compare_with: str | Path | None = None,
    budget: str = "full",
) -> dict[str, Any]:
    """Collect the verdicts under ``paths`` and write leaderboard.md, .json and .png into
    ``out`` (default: the first folder given); with ``compare_with`` (an earlier
    leaderboard.json) the changes are appended to the page. Returns the board, the page's
    text, the folder, the files written and the change lines."""
    board = collect(paths, version, budget)
    first = Path(paths[0])
    folder = Path(out) if out is not None else (first if first.is_dir() else first.parent)
    folder.mkdir(parents=True, exist_ok=True)
    changes = compare(board_from_json(compare_with), board) if compare_with else []
    figure = plot(board, folder / "leaderboard.png")
    text = markdown(board, figure.name)
    if changes:
        text += "\n" + "\n".join(changes) + "\n"
    page = folder / "leaderboard.md"
    page.write_text(text)
    data = write_json(folder / "leaderboard.json", board_to_json(board))
    return {
        "board": board,
        "text": text,
        "folder": folder,
        "files": [page, data, figure],
        "changes": changes,
    }
