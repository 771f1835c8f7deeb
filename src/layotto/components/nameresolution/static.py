"""A fixed table app id -> sidecar address(es), from metadata `apps`."""

from __future__ import annotations

import json
from typing import Any

from layotto.components.base import ComponentContext, Metadata
from layotto.components.nameresolution.base import NameResolver
from layotto.errors import ConfigError


def _addresses(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.strip() for v in value if v.strip()]
    return None


class StaticResolver(NameResolver):
    """metadata: {"apps": {"app-b": "127.0.0.1:50001", "app-c": ["10.0.0.1:34904", "10.0.0.2:34904"]}}.
    `apps` may also be that object as a JSON string (for string-only metadata loaders)."""

    metadata_keys = ("apps",)

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        where = f"{metadata.where}.metadata.apps"
        raw = metadata["apps"] if "apps" in metadata else {}
        if isinstance(raw, str):
            try:
                raw = json.loads(raw) if raw.strip() else {}
            except json.JSONDecodeError as exc:
                raise ConfigError(f"'apps' is not a JSON object: {exc.msg}", where) from None
        if not isinstance(raw, dict):
            raise ConfigError("'apps' must map app ids to addresses", where)
        self._table: dict[str, list[str]] = {}
        for app_id, value in raw.items():
            addresses = _addresses(value)
            if not addresses:
                raise ConfigError(f"app '{app_id}' needs an address (\"host:port\" or a list of them)", where)
            self._table[str(app_id)] = addresses

    async def resolve(self, app_id: str) -> list[str]:
        return list(self._table.get(app_id, []))
