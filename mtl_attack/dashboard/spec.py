"""Plain panels -> ``wandb-workspaces`` objects (the saved workspace and a sweep's report),
the keys a built spec references, and saving to W&B.

``wandb_workspaces`` (the optional extra ``pip install -e ".[wandb]"``) is imported inside the
functions, so importing :mod:`mtl_attack` never needs it. Building a spec touches no network;
only :func:`save_workspace` and :func:`save_report` talk to the W&B server.
"""

from __future__ import annotations

import hashlib
import socket
from functools import cache
from typing import Any
from urllib.parse import urlparse

from mtl_attack.dashboard.panels import Line, Media, Note, Parallel, Scatter, Section

WORKSPACE_NAME = "mtl-attack dashboard"
GROUP = "Group"  # the W&B run attribute every job of a sweep shares (runner.main.make_logger)
EXTRA = "pip install -e '.[wandb]'"


def wandb_workspaces():
    """``(reports.v2, workspaces, expr)`` of wandb-workspaces, or a one-line ImportError."""
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
        from wandb_workspaces import expr
    except ImportError as err:
        raise ImportError(f"the W&B dashboard needs wandb-workspaces: {EXTRA}") from err
    return wr, ws, expr


@cache
def flat_config_column():
    """A parallel-coordinates column for a flat config key: WandbLogger logs ``sharing.index``
    as one key, stored as ``{"sharing.index": {"value": ...}}``, so its accessor is
    ``config:sharing.index.value`` (``wr.Config`` assumes a nested config and writes
    ``config:sharing.value.index``)."""
    wr, _, _ = wandb_workspaces()

    class FlatConfigColumn(wr.ParallelCoordinatesPlotColumn):
        def _to_model(self):
            model = super()._to_model()
            model.accessor = f"config:{self.metric.name}.value"
            return model

    return FlatConfigColumn


def wandb_panel(panel):
    """One plain panel as a ``wandb_workspaces`` panel."""
    wr, _, _ = wandb_workspaces()
    if isinstance(panel, Line):
        return wr.LinePlot(title=panel.title, x=panel.x, y=list(panel.ys), title_x=panel.x)
    if isinstance(panel, Scatter):
        x, y = wr.SummaryMetric(panel.x), wr.SummaryMetric(panel.y)
        return wr.ScatterPlot(title=panel.title, x=x, y=y)
    if isinstance(panel, Parallel):
        columns = [
            flat_config_column()(metric=wr.Config(key), display_name=label)
            if kind == "config"
            else wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(key), display_name=label)
            for kind, key, label in panel.columns
        ]
        return wr.ParallelCoordinatesPlot(title=panel.title, columns=columns)
    if isinstance(panel, Media):
        return wr.MediaBrowser(title=panel.title, media_keys=list(panel.keys), num_columns=1)
    if isinstance(panel, Note):
        return wr.MarkdownPanel(markdown=panel.text)
    raise TypeError(f"no W&B panel for {type(panel).__name__}")


def workspace(sections: list[Section], entity: str, project: str, name: str = WORKSPACE_NAME):
    """The project's saved workspace view: the sections, runs grouped by their sweep group."""
    wr, ws, expr = wandb_workspaces()
    return ws.Workspace(
        entity=entity,
        project=project,
        name=name,
        sections=[
            ws.Section(name=s.name, panels=[wandb_panel(p) for p in s.panels], is_open=True)
            for s in sections
        ],
        settings=ws.WorkspaceSettings(max_runs=100),
        runset_settings=ws.RunsetSettings(groupby=[expr.Metric(GROUP)]),
    )


def report(sections: list[Section], entity: str, project: str, group: str, texts: dict):
    """A report on one sweep: ``texts`` (heading -> markdown, e.g. the overrides and the
    compare.py tables), then every section as a panel grid showing only the group's runs.
    The run sets get their entity/project in :func:`save_report` (that needs the server)."""
    wr, _, expr = wandb_workspaces()
    blocks: list = [wr.P(text=f"W&B group `{group}`, built by scripts/wandb_dashboard.py.")]
    for heading, text in texts.items():
        blocks += [wr.H2(text=heading), wr.MarkdownBlock(text=text)]
    for s in sections:
        runset = wr.Runset(name=f"sweep {group}", filters=[expr.Metric(GROUP) == group])
        panels = [wandb_panel(p) for p in s.panels]
        blocks += [wr.H2(text=s.name), wr.PanelGrid(runsets=[runset], panels=panels)]
    title = f"mtl-attack sweep {group}"[:128]
    return wr.Report(project=project, entity=entity, title=title, blocks=blocks, width="fluid")


def to_json(obj) -> dict[str, Any]:
    """What W&B would receive for a workspace or report (no network)."""
    return obj._to_model().model_dump(mode="json", by_alias=True, exclude_none=True)


def _accessor(text: str) -> tuple[str, str]:
    """``summary:k`` -> (summary, k); ``config:k.value`` -> (config, k); ``run:k`` -> (run, k)."""
    kind, _, key = text.partition(":")
    return kind, key.removesuffix(".value") if kind == "config" else key


def panel_keys(panel: dict) -> list[tuple[str, str]]:
    """``(kind, key)`` a serialized panel reads; kind: history, summary, config, media."""
    kind, cfg = panel["viewType"], panel.get("config", {})
    if kind == "Run History Line Plot":
        keys = [cfg.get("xAxis"), *cfg.get("metrics", [])]
        return [("history", k) for k in keys if k and k != "_step"]
    if kind == "Scatter Plot":
        return [_accessor(cfg[a]) for a in ("xAxis", "yAxis", "zAxis") if cfg.get(a)]
    if kind == "Parallel Coordinates Plot":
        return [_accessor(c["accessor"]) for c in cfg.get("columns", [])]
    if kind == "Media Browser":
        return [("media", k) for k in cfg.get("mediaKeys", [])]
    if kind == "Markdown Panel":
        return []
    raise ValueError(f"panel type {kind!r} is unknown to panel_keys: teach it which keys it reads")


def referenced_keys(spec: Any) -> list[tuple[str, str]]:
    """Every ``(kind, key)`` any panel of a serialized workspace/report references."""
    found: list[tuple[str, str]] = []
    if isinstance(spec, dict):
        if "viewType" in spec:
            return panel_keys(spec)
        spec = list(spec.values())
    if isinstance(spec, list):
        for item in spec:
            found += [k for k in referenced_keys(item) if k not in found]
    return found


def missing_keys(spec: Any, logged: set[str], config: set[str]) -> list[tuple[str, str]]:
    """The referenced keys no run logged: ``logged`` = every history/summary key of the runs
    (a logged image shows up as ``<key>/...`` fields), ``config`` = their config keys."""

    def found(kind: str, key: str) -> bool:
        if kind == "config":
            return key in config
        if kind == "media":
            return key in logged or any(k.startswith(key + "/") for k in logged)
        return key in logged

    return [(kind, key) for kind, key in referenced_keys(spec) if not found(kind, key)]


def server_problem(timeout: float = 5.0) -> str | None:
    """Why the W&B server cannot be used now (unreachable, not logged in), else None."""
    import wandb
    from wandb.sdk import wandb_setup

    base = wandb_setup.singleton().settings.base_url
    url = urlparse(base)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as err:
        return f"cannot reach the W&B server {base} ({err.strerror or err})"
    try:
        wandb.Api()
    except wandb.errors.UsageError:
        return f"not logged in to W&B {base}: run `wandb login` (or set WANDB_API_KEY)"
    return None


def save_workspace(view) -> str:
    """Create the saved view, or update it in place (found by a name derived from its title)."""
    from wandb_workspaces.workspaces import internal

    short = hashlib.sha1(f"{view.project}/{view.name}".encode()).hexdigest()[:11]
    view._internal_name = internal._url_query_str_to_internal_name(short)
    try:
        view._internal_id = internal.get_view_dict(view.entity, view.project, short)["id"]
    except ValueError:  # not saved yet: upsert creates it under that name
        pass
    return view.save().url


def save_report(doc, entity: str, project: str) -> str:
    """Save the report (a new one each time); its run sets read ``entity/project``."""
    wr, _, _ = wandb_workspaces()
    for block in doc.blocks:
        if isinstance(block, wr.PanelGrid):
            for runset in block.runsets:
                runset.entity, runset.project = entity, project
    return doc.save().url
