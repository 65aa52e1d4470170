"""Resumable training state: model, optimizer, scheduler, progress and every RNG, in one file.

The file lives in the model's cache directory (``<checkpoints>/<spec hash>/train_state.pt``),
so a different config never even looks at it; the spec stored inside is compared as well, so a
hand-copied or hash-colliding file is refused rather than resumed. Everything is stored as
tensors, numbers, strings, lists and dicts, so ``torch.load(..., weights_only=True)`` reads it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mtl_attack.utils.io import atomic_write

FORMAT_VERSION = 1


class ForeignCheckpointError(RuntimeError):
    """A training checkpoint was written by a different config."""


def rng_state() -> dict[str, Any]:
    """Python, NumPy, torch CPU (and CUDA, if present) generator states, weights_only-safe."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`rng_state`."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))
    nps = state["numpy"]
    keys = nps["keys"].numpy().astype(np.uint32)
    np.random.set_state((nps["kind"], keys, nps["pos"], nps["has_gauss"], nps["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _canonical(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


class TrainCheckpoint:
    """Reads and atomically writes ``train_state.pt`` for one weight spec.

    Args:
        path: the checkpoint file (in the model's cache directory).
        spec: the JSON-able weight spec that produced the model (``CheckpointCache.spec``).
        write: whether :meth:`save` writes (under torchrun only rank 0 writes; every rank
            reads the same file on resume, so resume restores rank 0's RNG states everywhere).
    """

    def __init__(self, path: str | Path, spec: dict[str, Any], write: bool = True):
        self.path = Path(path)
        self.spec = _canonical(spec)
        self.write = write
        self.extra: dict[str, Any] = {}  # what the last restored state carried beside weights

    def exists(self) -> bool:
        return self.path.is_file()

    def save(self, model, optimizer, scheduler, step: int, extra: dict | None = None) -> Path:
        """Write the state after ``step`` optimizer steps (a kill mid-write keeps the old file)."""
        if not self.write:
            return self.path
        state = {
            "format": FORMAT_VERSION,
            "spec": self.spec,
            "step": int(step),
            "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "rng": rng_state(),
            "extra": extra or {},
        }
        return atomic_write(self.path, lambda tmp: torch.save(state, tmp))

    def read(self, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
        """The stored state, or None when there is none; refuses another config's file."""
        if not self.exists():
            return None
        try:
            state = torch.load(self.path, map_location=map_location, weights_only=True)
        except Exception as err:  # truncated or not a torch file
            raise RuntimeError(
                f"training checkpoint {self.path} cannot be read ({err}); delete it to restart "
                "training from scratch"
            ) from err
        if state.get("spec") != self.spec or state.get("format") != FORMAT_VERSION:
            raise ForeignCheckpointError(
                f"training checkpoint {self.path} was written by a different config (or format); "
                "delete it to retrain this config from scratch"
            )
        return state

    def restore(self, model, optimizer, scheduler, map_location="cpu") -> int:
        """Load a stored state into the given objects and the RNGs; return the step (0 if none)."""
        state = self.read(map_location)
        if state is None:
            return 0
        self.extra = dict(state.get("extra") or {})
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None and state["scheduler"] is not None:
            scheduler.load_state_dict(state["scheduler"])
        set_rng_state(state["rng"])
        return int(state["step"])

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)
