"""The trained-model cache: ``<checkpoints>/<hash of everything that changes the weights>/``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mtl_attack.utils.io import atomic_write, write_json

#: config keys that never change trained weights (paths, speed and presentation knobs)
NON_WEIGHT_KEYS = frozenset(
    {"root", "preload", "num_workers", "metrics", "progress", "checkpoint_every", "val_every"}
)


def _strip(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: _strip(v) for k, v in sorted(tree.items()) if k not in NON_WEIGHT_KEYS}
    if isinstance(tree, list):
        return [_strip(v) for v in tree]
    return tree


def cache_key(spec: dict[str, Any]) -> str:
    """Stable 16-hex-digit hash of a JSON-able spec (keys sorted, non-weight keys dropped)."""
    blob = json.dumps(_strip(spec), sort_keys=True, separators=(",", ":"))
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
