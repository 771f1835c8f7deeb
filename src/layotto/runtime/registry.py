"""The component types a sidecar can make, per block: built-in, pluggable, and given.

Built-in types: each block package (`layotto.components.<block>`) declares `FACTORIES`, a dict
from type name to "module:Class". Imports are deferred until a component of that type is
configured, so a sidecar pays only for the client libraries it uses.

Pluggable types: component processes serving Dapr's `dapr.proto.components.v1` services (or
Layotto's `spec.proto.pluggable.v1`) on Unix sockets, found by `discover` in the socket folders
(`layotto.components.pluggable.discovery`); a socket's file name is the type. A pluggable type
takes the place of a built-in type of the same name, as in daprd.

Given types: factories handed to the registry by whoever builds it (tests, embedding code),
before any other of the same block and name.

One registry per sidecar, built by the assembly point (sidecar.py) and passed to the runtime.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence

from layotto.components.base import Component
from layotto.errors import ConfigError

Factory = Callable[[], Component]


def _block_table(block: str) -> dict[str, str]:
    try:
        module = importlib.import_module(f"layotto.components.{block}")
    except ModuleNotFoundError as exc:
        if exc.name == f"layotto.components.{block}":
            return {}
        raise
    table: dict[str, str] = getattr(module, "FACTORIES", {})
    return table


class ComponentRegistry:
    def __init__(
        self,
        factories: Mapping[tuple[str, str], Factory] | None = None,
        *,
        socket_folders: Sequence[str] | None = None,
    ) -> None:
        """`factories`: (block, type) -> factory, the given types. `socket_folders`: where
        `discover` looks for pluggable components (None: the folders daprd and Layotto use,
        from `DAPR_COMPONENTS_SOCKETS_FOLDER` and `LAYOTTO_COMPONENTS_SOCKETS_FOLDER`)."""
        self._given: dict[tuple[str, str], Factory] = dict(factories or {})
        self._pluggable: dict[tuple[str, str], Factory] = {}
        self._socket_folders = None if socket_folders is None else tuple(socket_folders)

    def register(self, block: str, type_name: str, factory: Factory) -> None:
        """Add a given type (before any other of that block and name)."""
        self._given[(block, type_name)] = factory

    async def discover(self) -> list[str]:
        """Ask every socket in the socket folders which component services it serves, and
        take each as a type of its block (replacing what an earlier call found). Returns the
        warnings: sockets that do not answer, types that hide a built-in one, ... A socket that
        does not answer is left out; the sidecar starts without it."""
        from layotto.components.pluggable import discovery

        folders = self._socket_folders if self._socket_folders is not None else discovery.default_folders()
        found = await discovery.discover(folders)
        self._pluggable = {(t.block, t.name): t.create for t in found.types}
        warnings = list(found.warnings)
        for t in found.types:
            if t.name in _block_table(t.block):
                warnings.append(
                    f"pluggable component socket {t.socket} takes the place of the built-in"
                    f" {t.block} component type '{t.name}'"
                )
        return warnings

    def _extra_types(self, block: str) -> set[str]:
        return {t for b, t in (*self._given, *self._pluggable) if b == block}

    def is_known_block(self, block: str) -> bool:
        return bool(_block_table(block)) or bool(self._extra_types(block))

    def types_of(self, block: str) -> list[str]:
        return sorted(set(_block_table(block)) | self._extra_types(block))

    def create(self, block: str, type_name: str, where: str = "") -> Component:
        factory = self._given.get((block, type_name)) or self._pluggable.get((block, type_name))
        if factory is not None:
            return factory()
        target = _block_table(block).get(type_name)
        if target is None:
            known = ", ".join(self.types_of(block)) or "none"
            raise ConfigError(f"unknown {block} component type '{type_name}' (known: {known})", where)
        module_name, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
        component: Component = cls()
        return component
