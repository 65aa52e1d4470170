"""Plain-data helpers that logging, reports and dashboards all use: a nested config as flat
keys, an exception as one line. Nothing here imports from the rest of the package."""

from __future__ import annotations

from typing import Any


def flat_config(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"sharing": {"index": 3}}`` -> ``{"sharing.index": 3}``: every leaf is its own W&B config
    column, so runs can be grouped and compared (parallel coordinates) by any key."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, dict) and value:
            out.update(flat_config(value, name))
        else:
            out[name] = value
    return out


def one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (W&B errors can span screens)."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
