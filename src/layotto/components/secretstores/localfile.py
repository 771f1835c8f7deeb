"""`local.file` (Dapr): secrets from a JSON file, for development and simple deployments.

Metadata: `secretsFile` (required), `nestedSeparator` (":"), `multiValued` (false).
- single-valued: nested objects are flattened (`{"a": {"b": "x"}}` -> secret `a:b` = "x") and
  each secret is `{name: value}`;
- multiValued: each top-level key is a secret whose values are its (flattened) children.

Unlike Dapr, the file is re-read when it changes (checked by stat at each call), so secrets
can be rotated without restarting the sidecar.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from typing import Any

from layotto.components.base import ComponentContext, Metadata
from layotto.components.secretstores.base import SecretStore, SecretStoreFeature
from layotto.errors import ComponentError, ConfigError, NotFoundError


def _scalar(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return ""
    return json.dumps(value)


def flatten(value: Any, separator: str, prefix: str = "") -> dict[str, str]:
    """JSON -> {path: text}; arrays index as path elements, as Dapr does."""
    out: dict[str, str] = {}
    children: list[tuple[str, Any]]
    if isinstance(value, dict):
        children = [(str(k), v) for k, v in value.items()]
    elif isinstance(value, list):
        children = [(str(i), v) for i, v in enumerate(value)]
    else:
        out[prefix] = _scalar(value)
        return out
    for name, child in children:
        out.update(flatten(child, separator, f"{prefix}{separator}{name}" if prefix else name))
    return out


class LocalFileSecretStore(SecretStore):
    metadata_keys = ("secretsFile", "nestedSeparator", "multiValued")

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        path = metadata.get_str("secretsFile")
        if not path:
            raise ConfigError("missing local secrets file in metadata", f"{metadata.where}.metadata.secretsFile")
        self._path = path
        self._separator = metadata.get_str("nestedSeparator", ":") or ":"
        self._multi = metadata.get_bool("multiValued", False)
        if self._multi:
            self.features = frozenset({SecretStoreFeature.MULTIPLE_KEY_VALUES_PER_SECRET})
        self._version: tuple[int, int, int] | None = None
        self._secrets: dict[str, dict[str, str]] = {}
        try:
            await self._refresh()
        except ComponentError as exc:
            raise ConfigError(str(exc), f"{metadata.where}.metadata.secretsFile") from None

    def _load(self) -> tuple[tuple[int, int, int], dict[str, dict[str, str]]] | None:
        try:
            st = os.stat(self._path)
            # mtime alone can miss a rewrite within one clock tick; size and inode (an atomic
            # rename) catch most of those.
            version = (st.st_mtime_ns, st.st_size, st.st_ino)
            if version == self._version:
                return None
            with open(self._path, encoding="utf-8") as f:
                doc = json.load(f)
        except OSError as exc:
            raise ComponentError(f"cannot read secrets file {self._path}: {exc.strerror}") from None
        except ValueError as exc:
            raise ComponentError(f"secrets file {self._path} is not valid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise ComponentError(f"secrets file {self._path} must hold a JSON object")
        secrets: dict[str, dict[str, str]] = {}
        if self._multi:
            for name, value in doc.items():
                secrets[str(name)] = flatten(value, self._separator, "" if isinstance(value, (dict, list)) else name)
        else:
            secrets = {k: {k: v} for k, v in flatten(doc, self._separator).items()}
        return version, secrets

    async def _refresh(self) -> None:
        loaded = await asyncio.to_thread(self._load)
        if loaded is not None:
            self._version, self._secrets = loaded

    async def get_secret(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        await self._refresh()
        found = self._secrets.get(key)
        if found is None:
            raise NotFoundError(f"secret {key} not found")
        return dict(found)

    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        await self._refresh()
        return {k: dict(v) for k, v in self._secrets.items()}
