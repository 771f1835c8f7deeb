"""The Secrets block: store lookup and calls to the secret store."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from layotto.components.secretstores.base import SecretStore
from layotto.core.problems import Problem
from layotto.errors import ComponentError

__all__ = ["SecretsCore", "SecretsProblem"]


class SecretsProblem(Enum):
    NO_STORES = "no secret store is configured"
    STORE_NOT_FOUND = "secret store not found"  # facts: store
    GET_FAILED = "get secret failed"  # facts: store, key
    BULK_GET_FAILED = "bulk get secret failed"  # facts: store


class SecretsCore:
    def __init__(self, stores: Mapping[str, SecretStore]) -> None:
        self._stores = stores

    def _store(self, name: str) -> SecretStore:
        found = self._stores.get(name)
        if found is None:
            raise Problem(SecretsProblem.STORE_NOT_FOUND if self._stores else SecretsProblem.NO_STORES, store=name)
        return found

    async def get(self, store_name: str, key: str, metadata: dict[str, str]) -> dict[str, str]:
        store = self._store(store_name)
        try:
            return await store.get_secret(key, metadata)
        except ComponentError as exc:
            raise Problem(SecretsProblem.GET_FAILED, exc, store=store_name, key=key) from exc

    async def bulk_get(self, store_name: str, metadata: dict[str, str]) -> dict[str, dict[str, str]]:
        store = self._store(store_name)
        try:
            return await store.bulk_get_secret(metadata)
        except ComponentError as exc:
            raise Problem(SecretsProblem.BULK_GET_FAILED, exc, store=store_name) from exc
