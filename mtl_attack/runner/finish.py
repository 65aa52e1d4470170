"""Finishing a run's logger, then doing what the finished run asked for (the W&B workspace).

The logger only records a :class:`~mtl_attack.loggers.DashboardRequest`; the dashboard sits
above logging and reports, so it is called from here, never from ``loggers.py``.
"""

from __future__ import annotations

import logging

from mtl_attack.loggers import DashboardRequest, Logger
from mtl_attack.utils.formatting import one_line

log = logging.getLogger("mtl_attack")


def finish_logger(logger: Logger, exit_code: int = 0) -> None:
    """Close the run (``exit_code`` 0: success); with ``logger.dashboard=true`` and success,
    update the project's W&B workspace."""
    logger.finish(exit_code)
    if logger.dashboard_request is not None:
        update_dashboard(logger.dashboard_request)


def update_dashboard(request: DashboardRequest) -> None:
    """The project's workspace, or one line saying why not and how to build it by hand."""
    if request.mode == "disabled":
        log.info("W&B dashboard skipped (logger.mode=disabled: nothing was logged)")
        return
    if request.mode == "offline":
        log.info("W&B dashboard skipped (offline run); after `wandb sync`: %s", request.command())
        return
    from mtl_attack.dashboard import publish_workspace  # wandb_workspaces: only when online

    try:
        url = publish_workspace(request.entity, request.project, [request.results])
        log.info("W&B workspace updated: %s", url)
    except Exception as err:  # the run's results are safe; the workspace can wait
        log.warning(
            "W&B workspace not updated (%s); retry with: %s", one_line(err), request.command()
        )
