"""The one helper that names logged metrics, e.g. ``attack/dgba/eps4/depth_zbuffer/abs_err``."""

from __future__ import annotations

from typing import Any


def metric_key(*parts: Any) -> str:
    return "/".join(str(p) for p in parts if p is not None and p != "")


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dicts -> ``{"a/b/c": value}`` using :func:`metric_key`."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = metric_key(prefix, key)
        if isinstance(value, dict):
            out.update(flatten(value, name))
        else:
            out[name] = value
    return out
