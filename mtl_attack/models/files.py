"""Reading weights files users bring: ``weights_only`` loads, content hashes, state dicts."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

#: keys under which training scripts commonly nest the state dict
WRAPPER_KEYS = ("state_dict", "model", "model_state_dict", "net")


def read_checkpoint(path: str | Path, key: str, allowed: Sequence[Any] = ()) -> tuple[Any, str]:
    """Load a local torch checkpoint with ``weights_only=True``; return (object, sha256).

    The hash is of the file's content (a file changed while it is read is an error), so a cache
    keyed by it never serves results of another file. Zip-format files are memory-mapped, so a
    1.5 GB training checkpoint (weights + Adam state) need not fit in memory twice.
    ``allowed`` lists extra safe globals, e.g. ``[(StandIn, "some.module.Class")]`` to map one
    known class to a harmless stand-in; any other pickled object is refused (nothing is
    imported or executed). ``key`` names the config
    key in error messages (e.g. ``model.checkpoint``).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{key}={path}: no such file; give the path of a local weights file (.pt/.pth/.model)"
        )
    before = _stamp(path)
    digest = file_sha256(path)
    try:
        with torch.serialization.safe_globals(list(allowed)):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=_is_zip(path))
    except Exception as err:  # UnpicklingError, a truncated zip, a file of another kind
        raise ValueError(
            f"{key}={path} cannot be loaded safely with torch.load(weights_only=True): "
            f"{refusal_reason(err)}; give a file that holds only tensors and plain values "
            "(e.g. torch.save(model.state_dict(), path))"
        ) from None
    if _stamp(path) != before:
        raise RuntimeError(f"{key}={path} changed while it was being read; run again")
    return obj, digest


def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


def _is_zip(path: Path) -> bool:
    """torch.save's zip format can be memory-mapped (tensors are not copied into memory); the
    legacy format of torch < 1.6 cannot."""
    with open(path, "rb") as f:
        return f.read(4) == b"PK\x03\x04"


def refusal_reason(err: Exception) -> str:
    """One line out of torch's multi-line ``weights_only`` error."""
    text = str(err)
    found = re.search(r"GLOBAL (\S+)", text)
    if found:
        return f"it pickles the Python object {found[1]}, which is refused (never imported)"
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip()
        and not line.startswith(("Weights only load failed", "Please file", "Check the doc"))
    ]
    return " ".join(lines)[:300] or type(err).__name__


def file_sha256(path: str | Path) -> str:
    """sha256 hex digest of a file's content (read in chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def unwrap_state_dict(obj: Any, path: str | Path, key: str) -> dict[str, torch.Tensor]:
    """The tensor dict inside a checkpoint: the object itself or the first of
    :data:`WRAPPER_KEYS` holding one; a ``module.`` prefix (DataParallel/DDP) is stripped."""
    if isinstance(obj, Mapping):
        for wrapper in WRAPPER_KEYS:
            if isinstance(obj.get(wrapper), Mapping):
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not obj:
        raise ValueError(
            f"{key}={path} holds a {type(obj).__name__}, not a state dict; save the weights with "
            "torch.save(model.state_dict(), path)"
        )
    tensors = {str(k).removeprefix("module."): v for k, v in obj.items()}
    other = [k for k, v in tensors.items() if not isinstance(v, torch.Tensor)]
    if other:
        raise ValueError(
            f"{key}={path}: entries {other[:3]} are not tensors (top-level keys "
            f"{list(obj)[:5]}); give a state dict, or a dict with it under one of "
            f"{list(WRAPPER_KEYS)}"
        )
    return tensors


def preview(keys: Sequence[str], limit: int = 3) -> str:
    """``[a, b, c] (+5 more)``: a short list for one-line messages."""
    keys = list(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return f"{keys[:limit]}{more}"
