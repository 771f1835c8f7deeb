"""Loader for Dapr component YAML (`--resources-path`). Being built (Dapr compatibility issue)."""

from __future__ import annotations

from layotto.config.model import RuntimeConfig
from layotto.errors import ConfigError


def load_into(cfg: RuntimeConfig, resources_path: str) -> None:
    raise ConfigError("Dapr component YAML is not supported yet", resources_path)
