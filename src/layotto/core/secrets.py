"""The Secrets block: store lookup and calls to the secret store."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum

from layotto.components.secretstores.base import SecretStore
from layotto.core.problems import guarded, named

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
        return named(self._stores, name, SecretsProblem.STORE_NOT_FOUND, SecretsProblem.NO_STORES, store=name)

    async def get(self, store_name: str, key: str, metadata: dict[str, str]) -> dict[str, str]:
        call = self._store(store_name).get_secret(key, metadata)
        return await guarded(call, SecretsProblem.GET_FAILED, store=store_name, key=key)

    async def bulk_get(self, store_name: str, metadata: dict[str, str]) -> dict[str, dict[str, str]]:
        call = self._store(store_name).bulk_get_secret(metadata)
        return await guarded(call, SecretsProblem.BULK_GET_FAILED, store=store_name)
