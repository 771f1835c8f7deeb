"""Component factories per block, keyed by upstream `type` names.

Each block package (`layotto.components.<block>`) declares `FACTORIES`, a dict from type
name to "module:Class". Imports are deferred until a component of that type is configured,
so a sidecar pays only for the client libraries it uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from layotto.components.base import Component
from layotto.errors import ConfigError

Factory = Callable[[], Component]

_extra: dict[tuple[str, str], Factory] = {}


def _block_table(block: str) -> dict[str, str]:
    try:
        module = importlib.import_module(f"layotto.components.{block}")
    except ModuleNotFoundError as exc:
        if exc.name == f"layotto.components.{block}":
            return {}
        raise
    table: dict[str, str] = getattr(module, "FACTORIES", {})
    return table


def register(block: str, type_name: str, factory: Factory) -> None:
    """Add a factory at run time (tests, plugins)."""
    _extra[(block, type_name)] = factory


def is_known_block(block: str) -> bool:
    return bool(_block_table(block)) or any(b == block for b, _ in _extra)


def types_of(block: str) -> list[str]:
    return sorted(set(_block_table(block)) | {t for b, t in _extra if b == block})


def create(block: str, type_name: str, where: str = "") -> Component:
    factory = _extra.get((block, type_name))
    if factory is not None:
        return factory()
    target = _block_table(block).get(type_name)
    if target is None:
        known = ", ".join(types_of(block)) or "none"
        raise ConfigError(f"unknown {block} component type '{type_name}' (known: {known})", where)
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    component: Component = cls()
    return component
