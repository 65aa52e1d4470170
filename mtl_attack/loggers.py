"""Experiment loggers. The only module that imports wandb."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mtl_attack.evaluation.keys import EPS, HEATMAP_IMAGE, HEATMAP_TABLE, VS_EPS, metric_key
from mtl_attack.utils.formatting import flat_config


@dataclass(frozen=True)
class DashboardRequest:
    """What a finished run with ``logger.dashboard=true`` asks of the W&B workspace. The logger
    only records it; whoever finishes the run (the runner) hands it to the dashboard, so logging
    never imports the dashboards and reports built on top of it."""

    entity: str | None
    project: str
    mode: str  # offline | online | disabled
    results: str  # folder of results.json files the panels are built from

    def command(self) -> str:
        """The command that builds the workspace by hand (e.g. after ``wandb sync``)."""
        return (
            f"python scripts/wandb_dashboard.py --entity {self.entity or 'ENTITY'} "
            f"--project {self.project} --results {self.results}"
        )


class Logger:
    """No-op logger (``logger=none``) and the interface of every logger."""

    run_dir: str | None = None
    #: set by :meth:`finish` when the run asks for the W&B workspace to be updated
    dashboard_request: DashboardRequest | None = None

    def start(self, config: dict[str, Any], name: str | None = None) -> None: ...

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None: ...

    def summary(self, metrics: dict[str, Any]) -> None: ...

    def table(self, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """A table (e.g. every attack's per-task metrics, one row per value)."""

    def lines(
        self, key: str, xs: Sequence[float], ys: dict[str, Sequence[float]], xname: str
    ) -> None:
        """Several named curves over one x axis (e.g. a task's metric against eps)."""

    def heatmap(
        self,
        key: str,
        values: Sequence[Sequence[float]],
        rows: Sequence[str],
        columns: Sequence[str],
        title: str = "",
    ) -> None:
        """A matrix as a table and a colored image (e.g. the transfer matrix)."""

    def log_images(self, images: dict[str, str | os.PathLike]) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


class WandbLogger(Logger):
    """Weights & Biases. ``mode``: ``offline`` (default: writes a run folder that ``wandb sync``
    uploads later), ``online`` or ``disabled``. Runs go to ``<dir>/wandb/``.

    ``dashboard=True``: a run that finishes successfully leaves a :class:`DashboardRequest`,
    with which the runner creates or updates the project's saved workspace from the
    results.json files under ``dashboard_from`` (offline: it says how to build it after
    ``wandb sync``).
    """

    def __init__(
        self,
        project: str = "mtl-attack",
        mode: str = "offline",
        entity: str | None = None,
        dir: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        name: str | None = None,
        dashboard: bool = False,
        dashboard_from: str | None = None,
    ):
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"logger.mode must be offline, online or disabled, got {mode!r}")
        self.project, self.mode, self.entity = project, mode, entity
        self.dir, self.group, self.tags, self.name = dir, group, list(tags), name
        self.dashboard, self.dashboard_from = dashboard, dashboard_from
        self.run = None

    def start(self, config: dict[str, Any], name: str | None = None) -> None:
        import wandb

        if self.dir:
            os.makedirs(self.dir, exist_ok=True)
        self.run = wandb.init(
            project=self.project,
            entity=self.entity,
            mode=self.mode,
            dir=self.dir,
            group=self.group,
            tags=self.tags or None,
            name=self.name or name,
            config=flat_config(config),
            reinit="finish_previous",
            settings=wandb.Settings(console="off", silent=True),
        )
        self.run_dir = getattr(self.run, "dir", None)
        # attack results are also logged under vs_eps/... with the budget as their x-axis
        self.run.define_metric(EPS)
        self.run.define_metric(metric_key(VS_EPS, "*"), step_metric=EPS)

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            for key, value in metrics.items():
                self.run.summary[key] = value

    def table(self, key, columns, rows) -> None:
        if self.run is not None:
            import wandb

            self.run.log({key: wandb.Table(columns=list(columns), data=[list(r) for r in rows])})

    def lines(self, key, xs, ys, xname) -> None:
        if self.run is not None:
            import wandb

            plot = wandb.plot.line_series(
                xs=list(xs),
                ys=[list(v) for v in ys.values()],
                keys=list(ys),
                title=key,
                xname=xname,
            )
            self.run.log({key: plot})

    def heatmap(self, key, values, rows, columns, title="") -> None:
        if self.run is None:
            return
        import wandb

        cells = [[r, *v] for r, v in zip(rows, values)]
        table = wandb.Table(columns=["row", *columns], data=cells)
        self.run.log({metric_key(key, HEATMAP_TABLE): table})
        fig = render_heatmap(values, rows, columns, title)
        self.run.log({metric_key(key, HEATMAP_IMAGE): wandb.Image(fig)})
        import matplotlib.pyplot as plt

        plt.close(fig)

    def log_images(self, images: dict[str, str | os.PathLike]) -> None:
        """Log PNG files as W&B images under the given keys."""
        import wandb

        if self.run is not None:
            self.run.log({key: wandb.Image(str(path)) for key, path in images.items()})

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            entity = self.entity or (self.run.entity if self.dashboard else None) or None
            self.run.finish(exit_code=exit_code)
            self.run = None
            if self.dashboard and exit_code == 0:
                results = self.dashboard_from or "outputs"
                self.dashboard_request = DashboardRequest(entity, self.project, self.mode, results)


def render_heatmap(values, rows, columns, title: str = ""):
    """A matplotlib figure of a labeled matrix with its values written in the cells."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 2, 1.0 * len(rows) + 1.5))
    image = ax.imshow(values, cmap="magma")
    ax.set_xticks(range(len(columns)), labels=list(columns), rotation=30, ha="right")
    ax.set_yticks(range(len(rows)), labels=list(rows))
    ax.set_xlabel("measured task")
    ax.set_ylabel("attacked task")
    for i, row in enumerate(values):
        for j, value in enumerate(row):
            ax.text(j, i, f"{value:.3f}", ha="center", va="center", color="tab:cyan")
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig
