"""Atomic file writes: a reader never sees a half-written results file or checkpoint."""

from __future__ import annotations

import errno
import json
import logging
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path
from typing import Any

log = logging.getLogger("mtl_attack")


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path next to ``path``; rename it onto ``path`` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual file mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and move the result onto ``path`` atomically."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    def _write(tmp: Path) -> None:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False, default=_json_default)
            f.write("\n")

    return atomic_write(path, _write)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


#: errors that mean "this folder cannot be written" (a shared read-only cache)
READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)


@contextmanager
def file_lock(path: str | os.PathLike):
    """Hold an exclusive advisory lock on ``path`` (created if needed) while in the block.

    Parallel jobs of a sweep use it so a dataset is generated, a model trained and an
    evaluation computed only once. In a read-only folder (a shared, finished cache) no lock can
    be taken and none is needed for reading: the block runs unlocked.
    """
    import fcntl

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(path, "a")  # noqa: SIM115 - closed below
    except OSError as err:
        if err.errno not in READ_ONLY:
            raise
        log.debug("no lock at %s (%s): read-only folder, running unlocked", path, err)
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
