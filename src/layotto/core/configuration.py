"""The Configuration block: store lookup, the app/group/label scope of a request, the calls.

A request that names no app id reads this sidecar's; one with no group or label reads the
store's defaults, which is where items saved without them live, so every API sees the same items.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import Enum

from layotto.components.configuration.base import ConfigItem, ConfigurationStore, GetRequest, SetRequest, Subscription
from layotto.core.problems import Problem, named
from layotto.errors import ComponentError

__all__ = ["ConfigurationCore", "ConfigurationProblem"]


class ConfigurationProblem(Enum):
    NO_STORES = "no configuration store is configured"  # facts: store
    STORE_NOT_FOUND = "configuration store not found"  # facts: store
    GET_FAILED = "get failed"  # facts: store, keys
    SAVE_FAILED = "save failed"  # facts: store
    DELETE_FAILED = "delete failed"  # facts: store
    SUBSCRIBE_FAILED = "subscribe failed"  # facts: store, keys
    SUBSCRIPTION_ENDED = "a subscription failed"  # facts: id


class ConfigurationCore:
    def __init__(self, stores: Mapping[str, ConfigurationStore], app_id: str) -> None:
        self._stores = stores
        self._app_id = app_id

    def store(self, name: str) -> ConfigurationStore:
        return named(
            self._stores, name, ConfigurationProblem.STORE_NOT_FOUND, ConfigurationProblem.NO_STORES, store=name
        )

    def scope(
        self,
        store: ConfigurationStore,
        app_id: str,
        group: str,
        label: str,
        keys: Iterable[str],
        metadata: dict[str, str],
    ) -> GetRequest:
        """The request for `keys`; "" for the app id, group or label means the default."""
        return GetRequest(
            app_id=app_id or self._app_id,
            group=group or store.default_group,
            label=label or store.default_label,
            keys=list(keys),
            metadata=metadata,
        )

    async def get(self, store_name: str, request: GetRequest) -> list[ConfigItem]:
        try:
            return await self.store(store_name).get(request)
        except ComponentError as exc:
            raise Problem(ConfigurationProblem.GET_FAILED, exc, store=store_name, keys=request.keys) from exc

    async def save(self, store_name: str, app_id: str, items: list[ConfigItem], metadata: dict[str, str]) -> None:
        """Store `items`; an item with no group or label goes under the store's defaults."""
        store = self.store(store_name)
        for item in items:
            item.group = item.group or store.default_group
            item.label = item.label or store.default_label
        try:
            await store.set(SetRequest(app_id or self._app_id, items, metadata))
        except ComponentError as exc:
            raise Problem(ConfigurationProblem.SAVE_FAILED, exc, store=store_name) from exc

    async def delete(self, store_name: str, request: GetRequest) -> None:
        try:
            await self.store(store_name).delete(request)
        except ComponentError as exc:
            raise Problem(ConfigurationProblem.DELETE_FAILED, exc, store=store_name) from exc

    async def subscribe(self, store_name: str, request: GetRequest) -> Subscription:
        try:
            return await self.store(store_name).subscribe(request)
        except ComponentError as exc:
            raise Problem(ConfigurationProblem.SUBSCRIBE_FAILED, exc, store=store_name, keys=request.keys) from exc
