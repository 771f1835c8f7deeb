from __future__ import annotations

import enum
from abc import abstractmethod
from collections.abc import Mapping

from layotto.components.base import Component, Feature
from layotto.errors import NotFoundError


class SecretStoreFeature(Feature):
    #: A secret may hold several named values (Dapr's MULTIPLE_KEY_VALUES_PER_SECRET); without
    #: it, every secret is one value under the secret's own name: `{name: value}`.
    MULTIPLE_KEY_VALUES_PER_SECRET = enum.auto()


class SecretStore(Component):
    features: frozenset[SecretStoreFeature] = frozenset()

    @abstractmethod
    async def get_secret(self, key: str, metadata: Mapping[str, str]) -> dict[str, str]:
        """The secret's values; raise NotFoundError when there is no such secret."""

    @abstractmethod
    async def bulk_get_secret(self, metadata: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """Every secret the store holds, by name."""


async def resolve_secret(store: SecretStore, key: str, sub_key: str = "") -> str:
    """One value of a secret, as a component reference names it: Layotto's
    `secret_ref {store_name, key, sub_key}` and Dapr's `secretKeyRef {name, key}` both map here
    (sub_key / Dapr's key default to the secret's name, which is what single-valued stores use).

    Raises NotFoundError naming what is missing."""
    values = await store.get_secret(key, {})
    wanted = sub_key or key
    if wanted not in values:
        if len(values) == 1 and not sub_key:
            return next(iter(values.values()))
        raise NotFoundError(f"secret '{key}' has no entry '{wanted}'")
    return values[wanted]
