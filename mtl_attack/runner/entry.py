"""What ``run.py`` needs around ``run(cfg)``: one-line user errors and unique run folders.

User-facing errors: mistakes a user can fix (a bad config value, a missing or foreign file, a
diverged training) are reported as ``error: <message>``, logged through the job's logger (so the
line is the last one on screen and in ``run.log``), then the job exits with status 1 (in a
multirun the job is marked failed and Hydra prints the message again when the sweep ends).
``HYDRA_FULL_ERROR=1`` shows the full traceback instead. Anything else (a bug) keeps Hydra's
traceback.

Run folders: ``${run_stamp:}`` names them ``<date>_<time>_<6 hex>``, so two runs started in the
same second never share a folder (run.log, results.json and W&B runs stay apart).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import secrets
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.errors import CompactHydraException, InstantiationException
from hydra.types import RunMode
from omegaconf import OmegaConf

from mtl_attack.data.schema import DatasetFileError
from mtl_attack.defense import ForeignCheckpointError, NonFiniteLossError, TrainingDivergedError

log = logging.getLogger("mtl_attack")

#: errors whose message tells the user what to change
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    DatasetFileError,
    ForeignCheckpointError,
    NonFiniteLossError,
    TrainingDivergedError,
)


class JobFailed(CompactHydraException):
    """A multirun job stopped with a user error (Hydra prints only the message)."""


def user_message(err: BaseException) -> str | None:
    """The one-line message of a user error, looking through Hydra's instantiation wrapper;
    ``None`` when the root cause is not a user error."""
    while isinstance(err, InstantiationException) and err.__cause__ is not None:
        err = err.__cause__
    if not isinstance(err, USER_ERRORS):
        return None
    return re.sub(r"\s*\n\s*", " ", str(err)).strip() or type(err).__name__


@contextmanager
def one_line_errors():
    """Wrap a Hydra job: user errors become one logged line and exit status 1."""
    try:
        yield
    except (*USER_ERRORS, InstantiationException) as err:
        message = user_message(err)
        if message is None or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        log.error("error: %s", message)
        if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
            raise JobFailed(f"error: {message}") from None
        sys.exit(1)


def _launch_time() -> float:
    """When this process started, or (under torchrun) when its launcher did: every local rank
    then agrees on the run folder's timestamp."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        try:  # Linux: the agent's start, in clock ticks after boot
            ticks = int(
                Path(f"/proc/{os.getppid()}/stat").read_text().rsplit(")", 1)[1].split()[19]
            )
            boot = next(
                float(line.split()[1])
                for line in Path("/proc/stat").read_text().splitlines()
                if line.startswith("btime")
            )
            return boot + ticks / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError, StopIteration):
            pass
    return time.time()


def _run_stamp() -> str:
    """``<date>_<time>_<6 hex>``: random per process; under torchrun the suffix comes from the
    launch's id, so that every rank names the same run folder."""
    stamp = time.strftime("%Y-%m-%d_%H-%M-%S", time.localtime(_launch_time()))
    launch = os.environ.get("TORCHELASTIC_RUN_ID")
    if launch and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return f"{stamp}_{hashlib.sha256(launch.encode()).hexdigest()[:6]}"
    return f"{stamp}_{secrets.token_hex(3)}"


#: the run (or sweep) folder name: jobs started in the same second never share a folder
RUN_STAMP = _run_stamp()


def register_resolvers() -> None:
    """``${run_stamp:}``: :data:`RUN_STAMP` (cached per config, and Hydra copies the cache
    into every job of a sweep, so a sweep folder is named once)."""
    if not OmegaConf.has_resolver("run_stamp"):
        OmegaConf.register_new_resolver("run_stamp", lambda: RUN_STAMP, use_cache=True)
