"""Typed runtime configuration and the loaders that build it (Layotto JSON, Dapr YAML)."""

from layotto.config.model import AppConfig, ComponentSpec, RuntimeConfig

__all__ = ["AppConfig", "ComponentSpec", "RuntimeConfig"]
