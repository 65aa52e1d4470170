"""Experiment loggers. The only module that imports wandb."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any


class Logger:
    """No-op logger (``logger=none``) and the interface of every logger."""

    run_dir: str | None = None

    def start(self, config: dict[str, Any], name: str | None = None) -> None: ...

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None: ...

    def summary(self, metrics: dict[str, Any]) -> None: ...

    def log_images(self, images: dict[str, str | os.PathLike]) -> None: ...

    def finish(self, exit_code: int = 0) -> None: ...


class WandbLogger(Logger):
    """Weights & Biases. ``mode``: ``offline`` (default: writes a run folder that ``wandb sync``
    uploads later), ``online`` or ``disabled``. Runs go to ``<dir>/wandb/``."""

    def __init__(
        self,
        project: str = "mtl-attack",
        mode: str = "offline",
        entity: str | None = None,
        dir: str | None = None,
        group: str | None = None,
        tags: Sequence[str] = (),
        name: str | None = None,
    ):
        if mode not in ("offline", "online", "disabled"):
            raise ValueError(f"logger.mode must be offline, online or disabled, got {mode!r}")
        self.project, self.mode, self.entity = project, mode, entity
        self.dir, self.group, self.tags, self.name = dir, group, list(tags), name
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
            config=config,
            reinit="finish_previous",
            settings=wandb.Settings(console="off", silent=True),
        )
        self.run_dir = getattr(self.run, "dir", None)

    def log(self, metrics: dict[str, Any], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(metrics, step=step)

    def summary(self, metrics: dict[str, Any]) -> None:
        if self.run is not None:
            for key, value in metrics.items():
                self.run.summary[key] = value

    def log_images(self, images: dict[str, str | os.PathLike]) -> None:
        """Log PNG files as W&B images under the given keys."""
        import wandb

        if self.run is not None:
            self.run.log({key: wandb.Image(str(path)) for key, path in images.items()})

    def finish(self, exit_code: int = 0) -> None:
        if self.run is not None:
            self.run.finish(exit_code=exit_code)
            self.run = None
