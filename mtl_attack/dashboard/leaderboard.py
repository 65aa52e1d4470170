"""The leaderboard as a W&B report: its Markdown table, then one scatter per task and eps of
clean quality (``clean/<task>/<metric>``) against the worst-task degradation the standard
protocol logged, over the leaderboard's runs (filtered by their W&B groups).
The y axis is the verdict's summary key ``standard/eps<k>/min_degradation``.

Built offline like the sweep reports (:mod:`mtl_attack.dashboard.spec`): the spec is written to
``wandb_report.json``; only :func:`publish_report` talks to the server.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mtl_attack.dashboard.panels import Scatter, run_group
from mtl_attack.dashboard.spec import (
    GROUP,
    save_report,
    server_problem,
    to_json,
    wandb_panel,
    wandb_workspaces,
)
from mtl_attack.dashboard.sweep import IMAGE_LINE
from mtl_attack.evaluation.keys import clean_key, verdict_key
from mtl_attack.report.leaderboard import PROTOCOL, Board
from mtl_attack.report.leaderboard_views import headlines
from mtl_attack.utils.io import write_json


def _runs(board: Board) -> list[dict[str, Any]]:
    runs = []
    for path in dict.fromkeys(s for m in board.models for s in m.sources):
        run = json.loads(Path(path).read_text())
        runs.append(run | {"_path": path})
    return runs


def scatters(board: Board) -> list[Scatter]:
    """Clean headline metric of each task against the worst-task degradation, per eps (the
    verdict's summary key ``standard/eps<k>/min_degradation``)."""
    return [
        Scatter(
            f"clean {task} {metric} vs worst-task degradation, eps {eps:g}",
            clean_key(task, metric),
            verdict_key(eps, "min_degradation"),
        )
        for eps in board.eps
        for task, metric in headlines(board).items()
    ]


def without_images(text: str) -> str:
    """The page's image lines point to the scatters below (the PNG is not uploaded)."""
    note = r"*(leaderboard.py draws \2 here; the scatter panels below show the same numbers)*"
    return "\n".join(IMAGE_LINE.sub(note, line) for line in text.splitlines()) + "\n"


def leaderboard_report(board: Board, text: str, entity: str, project: str):
    """The report (``wandb_workspaces`` object): the page's Markdown, then the scatters over
    the leaderboard's runs, one run set per W&B group they logged under."""
    wr, _, expr = wandb_workspaces()
    runs = _runs(board)
    groups = sorted({str(g) for g in map(run_group, runs) if g is not None})
    runsets = [wr.Runset(name=f"group {g}", filters=[expr.Metric(GROUP) == g]) for g in groups]
    panels = [wandb_panel(p) for p in scatters(board)]
    blocks: list = [
        wr.P(text="Built by scripts/leaderboard.py from the runs' results.json files."),
        wr.MarkdownBlock(text=without_images(text)),
        wr.H2(text="Clean quality against worst-task degradation"),
        wr.PanelGrid(runsets=runsets or [wr.Runset(name="all runs")], panels=panels),
    ]
    title = f"mtl-attack leaderboard ({PROTOCOL} v{board.version})"
    return wr.Report(project=project, entity=entity, title=title, blocks=blocks, width="fluid")


def write_report_spec(board: Board, text: str, entity: str, project: str, folder: Path) -> Path:
    """``wandb_report.json``: what W&B would receive (no network)."""
    spec = to_json(leaderboard_report(board, text, entity, project))
    return write_json(Path(folder) / "wandb_report.json", spec)


def publish_report(board: Board, text: str, entity: str, project: str) -> str:
    """Save the report to W&B (a new one each time); its URL. One line when it cannot."""
    problem = server_problem()
    if problem:
        raise OSError(f"{problem}; the spec is in wandb_report.json")
    return save_report(leaderboard_report(board, text, entity, project), entity, project)
