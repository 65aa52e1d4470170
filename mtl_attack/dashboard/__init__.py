"""W&B dashboards: a saved workspace view for a project and a report for one sweep.

Stands to the side of the pipeline, like :mod:`mtl_attack.loggers` and :mod:`mtl_attack.report`:
it reads only what runs wrote (their ``results.json``), names every key through
:mod:`mtl_attack.evaluation.keys` (the helper the runner logs through), and is the only place
besides ``loggers.py`` that talks to W&B, importing ``wandb_workspaces`` lazily in
:mod:`~mtl_attack.dashboard.spec`.

- :mod:`~mtl_attack.dashboard.panels`: which panels, as plain data (no W&B);
- :mod:`~mtl_attack.dashboard.sweep`: a sweep's overrides and compare.py's tables as text;
- :mod:`~mtl_attack.dashboard.spec`: W&B objects, the keys they reference, saving.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mtl_attack.dashboard.panels import (
    SECTIONS,
    catalog,
    load_project_runs,
    run_group,
    sections,
)
from mtl_attack.dashboard.spec import (
    missing_keys,
    referenced_keys,
    report,
    save_report,
    save_workspace,
    server_problem,
    to_json,
    workspace,
)
from mtl_attack.dashboard.sweep import compare_markdown, overrides_markdown

__all__ = [
    "SECTIONS",
    "Dashboard",
    "build",
    "missing_keys",
    "publish",
    "publish_workspace",
    "referenced_keys",
    "server_problem",
]


@dataclass
class Dashboard:
    """The workspace for the project and, for one sweep, its report (``wandb_workspaces``)."""

    workspace: Any
    report: Any | None = None
    group: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The spec W&B would receive (``--dry-run``); no network."""
        return {
            "workspace": to_json(self.workspace),
            "report": to_json(self.report) if self.report is not None else None,
        }


def the_group(runs: list[dict[str, Any]], where: str) -> str:
    groups = sorted({str(run_group(r)) for r in runs})
    if len(groups) != 1 or groups == ["None"]:
        raise ValueError(
            f"the runs under {where} belong to W&B groups {groups}, not one: "
            "name the sweep with --group G (its runs are looked up under --results)"
        )
    return groups[0]


def build(
    entity: str,
    project: str,
    results: list[str | Path] = (),
    group: str | None = None,
    sweep: str | Path | None = None,
) -> Dashboard:
    """The workspace from every run of ``project`` under ``results`` (and ``sweep``), and with
    ``group`` or ``sweep`` the report on that sweep's runs."""
    paths = [*results, *([sweep] if sweep else [])]
    runs = load_project_runs(paths, project)
    board = Dashboard(workspace(sections(catalog(runs)), entity, project))
    if sweep is None and group is None:
        return board
    chosen = load_project_runs([sweep] if sweep else paths, project, group)
    board.group = group or the_group(chosen, str(sweep))
    texts = {
        "Config overrides": overrides_markdown(chosen),
        "Tables (scripts/compare.py)": compare_markdown(chosen),
    }
    board.report = report(sections(catalog(chosen)), entity, project, board.group, texts)
    return board


def publish(board: Dashboard) -> list[str]:
    """Save the workspace (created or updated) and the report (new); their URLs."""
    urls = [save_workspace(board.workspace)]
    if board.report is not None:
        urls.append(save_report(board.report, board.workspace.entity, board.workspace.project))
    return urls


def publish_workspace(entity: str, project: str, results: list[str | Path]) -> str:
    """``logger.dashboard=true``: the project's workspace from the runs under ``results``."""
    return save_workspace(build(entity, project, results).workspace)
