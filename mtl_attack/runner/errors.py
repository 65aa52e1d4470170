"""The runner's one error type for config values it cannot use."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value the runner cannot use; the message names the key and what to do."""
