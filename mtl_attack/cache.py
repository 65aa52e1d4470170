"""The trained-model cache: ``<checkpoints>/<hash of everything that changes the weights>/``."""

from __future__ import annotations

import hashlib
import json
import logging
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtl_attack.utils.io import READ_ONLY, atomic_write, file_lock, write_json

log = logging.getLogger("mtl_attack")

#: config keys that never change trained weights (paths, speed, presentation and health knobs)
NON_WEIGHT_KEYS = frozenset(
    {
        "root",
        "preload",
        "num_workers",
        "metrics",
        "progress",
        "checkpoint_every",
        "val_every",
        "divergence_factor",
    }
)


#: config keys that never change an evaluation's numbers
NON_RESULT_KEYS = frozenset({"root", "preload", "num_workers", "progress"})


def _strip(tree: Any, ignore: frozenset[str] = NON_WEIGHT_KEYS) -> Any:
    if isinstance(tree, dict):
        return {k: _strip(v, ignore) for k, v in sorted(tree.items()) if k not in ignore}
    if isinstance(tree, list):
        return [_strip(v, ignore) for v in tree]
    return tree


def cache_key(spec: dict[str, Any], ignore: frozenset[str] = NON_WEIGHT_KEYS) -> str:
    """Stable 16-hex-digit hash of a JSON-able spec (keys sorted, ``ignore`` keys dropped)."""
    blob = json.dumps(_strip(spec, ignore), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class CheckpointCache:
    """Stores ``model.pt`` (weights only) and ``spec.json`` (what produced them) per key."""

    def __init__(self, root: str | Path, spec: dict[str, Any]):
        self.spec = _strip(spec)
        self.key = cache_key(spec)
        self.dir = Path(root) / self.key
        self.weights = self.dir / "model.pt"

    def exists(self) -> bool:
        return self.weights.is_file()

    def load(self, model: nn.Module, map_location: str | torch.device = "cpu") -> None:
        try:
            state = torch.load(self.weights, map_location=map_location, weights_only=True)
        except Exception as err:  # a truncated or foreign file
            raise RuntimeError(
                f"cached checkpoint {self.weights} cannot be read ({err}); delete {self.dir} "
                f"to retrain"
            ) from err
        model.load_state_dict(state["model"])

    def save(self, model: nn.Module, extra: dict[str, Any] | None = None) -> Path:
        state = {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
        atomic_write(self.weights, lambda tmp: torch.save(state, tmp))
        write_json(self.dir / "spec.json", {"spec": self.spec, **(extra or {})})
        return self.weights


class ResultCache:
    """Finished evaluations of one cached model: ``<model dir>/evaluations/<key>.json``.

    A key hashes the evaluation context (test data, tasks, metric convention, batch size) and
    the item (clean, or one attack at one eps), so re-running a sweep recomputes only what is
    missing. Files are written atomically: an interrupted job leaves no half result.
    """

    def __init__(self, model_dir: str | Path, context: dict[str, Any]):
        self.dir = Path(model_dir) / "evaluations"
        self.context = context

    def path(self, item: dict[str, Any]) -> Path:
        key = cache_key({"context": self.context, "item": item}, NON_RESULT_KEYS)
        return self.dir / f"{key}.json"

    def get(self, item: dict[str, Any]) -> dict[str, Any] | None:
        path = self.path(item)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())["value"]
        except (json.JSONDecodeError, KeyError):  # foreign or damaged: recompute
            return None

    def locked(self, item: dict[str, Any]) -> AbstractContextManager:
        """Hold the item's lock: a concurrent job computing the same evaluation waits, then
        finds the stored result instead of computing it again."""
        path = self.path(item)
        return file_lock(path.with_suffix(".lock"))

    def put(self, item: dict[str, Any], value: dict[str, Any]) -> None:
        try:
            write_json(self.path(item), {"item": item, "value": value})
        except OSError as err:
            if err.errno not in READ_ONLY:
                raise
            log.warning("evaluation cache %s is read-only; the result is not stored", self.dir)
