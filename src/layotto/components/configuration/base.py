"""Configuration stores: the contract every backend implements, and the subscription hub.

The contract serves both APIs: Layotto's (get/save/delete by app_id, group, label, keys, and a
bidi subscribe stream) and Dapr's (get by keys with metadata, subscribe returning an id,
unsubscribe by id). A subscription is an object with an `id`, an async iterator of change
batches, and `close()`; the store keeps them by id so `unsubscribe(id)` works too.

Backends only detect changes and call `SubscriptionHub.publish`; matching changes to
subscriptions and buffering them per subscriber is shared here.
"""

from __future__ import annotations

import asyncio
import enum
import uuid
from abc import abstractmethod
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from layotto.components.base import Component, Feature

DEFAULT_GROUP = "default"
DEFAULT_LABEL = "default"


@dataclass
class ConfigItem:
    key: str
    content: str = ""
    group: str = ""
    label: str = ""
    tags: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class GetRequest:
    """Also the shape of delete and subscribe requests. `keys` empty means every key of the
    app/group/label."""

    app_id: str
    group: str
    label: str
    keys: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


DeleteRequest = GetRequest
SubscribeRequest = GetRequest


@dataclass
class SetRequest:
    app_id: str
    items: list[ConfigItem]
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass
class ChangeEvent:
    """What a subscriber receives: the store, the app and the changed items.

    A deleted key arrives as an item with empty content (as upstream's etcd store sends it).
    """

    store_name: str
    app_id: str
    items: list[ConfigItem]


class Subscription:
    """One subscriber's view of changes. Iterate it for `ChangeEvent`s; `close()` ends it.

    Changes to the same key that the subscriber has not read yet are coalesced (the last one
    wins), so a slow reader costs memory bounded by the number of keys it watches.
    """

    def __init__(self, request: SubscribeRequest, store_name: str, on_close: Callable[[Subscription], None]) -> None:
        self.id = uuid.uuid4().hex
        self.request = request
        self.store_name = store_name
        self._keys = frozenset(request.keys)
        self._pending: dict[tuple[str, str, str], ConfigItem] = {}
        self._wakeup = asyncio.Event()
        self._closed = False
        self._error: BaseException | None = None
        self._on_close = on_close

    @property
    def closed(self) -> bool:
        return self._closed

    def matches(self, app_id: str, item: ConfigItem) -> bool:
        req = self.request
        return (
            app_id == req.app_id
            and item.group == req.group
            and item.label == req.label
            and (not self._keys or item.key in self._keys)
        )

    def offer(self, items: Iterable[ConfigItem]) -> None:
        if self._closed:
            return
        for item in items:
            self._pending[(item.group, item.label, item.key)] = item
        if self._pending:
            self._wakeup.set()

    def fail(self, error: BaseException) -> None:
        """End the subscription with an error the reader receives."""
        self._error = error
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        self._on_close(self)

    async def next_event(self) -> ChangeEvent | None:
        """The next batch of changes, or None once closed."""
        while not self._pending:
            if self._closed:
                if self._error is not None:
                    raise self._error
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        items = list(self._pending.values())
        self._pending.clear()
        return ChangeEvent(self.store_name, self.request.app_id, items)

    def __aiter__(self) -> AsyncIterator[ChangeEvent]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[ChangeEvent]:
        while True:
            event = await self.next_event()
            if event is None:
                return
            yield event


class SubscriptionHub:
    """The subscriptions of one store, by id, with per-app hooks so a backend can start one
    watcher per app_id when its first subscriber arrives and stop it after the last leaves."""

    def __init__(self, store_name: str) -> None:
        self.store_name = store_name
        self._subs: dict[str, Subscription] = {}
        self.on_first: Callable[[str], None] | None = None
        self.on_last: Callable[[str], None] | None = None
        #: After any subscription left: for a backend whose watch depends on every subscriber's
        #: keys, not on app ids.
        self.on_removed: Callable[[Subscription], None] | None = None

    def add(self, request: SubscribeRequest) -> Subscription:
        sub = Subscription(request, self.store_name, self._removed)
        first = not self.app_ids_has(request.app_id)
        self._subs[sub.id] = sub
        if first and self.on_first is not None:
            self.on_first(request.app_id)
        return sub

    def app_ids_has(self, app_id: str) -> bool:
        return any(s.request.app_id == app_id for s in self._subs.values())

    def app_ids(self) -> set[str]:
        return {s.request.app_id for s in self._subs.values()}

    def of_app(self, app_id: str) -> list[Subscription]:
        return [s for s in self._subs.values() if s.request.app_id == app_id]

    def get(self, subscription_id: str) -> Subscription | None:
        return self._subs.get(subscription_id)

    def subscriptions(self) -> list[Subscription]:
        return list(self._subs.values())

    def __len__(self) -> int:
        return len(self._subs)

    def _removed(self, sub: Subscription) -> None:
        if self._subs.pop(sub.id, None) is None:
            return
        if not self.app_ids_has(sub.request.app_id) and self.on_last is not None:
            self.on_last(sub.request.app_id)
        if self.on_removed is not None:
            self.on_removed(sub)

    def publish(self, app_id: str, items: Iterable[ConfigItem]) -> None:
        batch = list(items)
        for sub in list(self._subs.values()):
            if sub.request.app_id == app_id:
                sub.offer(i for i in batch if sub.matches(app_id, i))

    def fail_all(self, error: BaseException) -> None:
        for sub in list(self._subs.values()):
            sub.fail(error)

    def close_all(self) -> None:
        for sub in list(self._subs.values()):
            sub.close()


class ConfigurationFeature(Feature):
    #: A new subscription first receives the current values of its keys (upstream's in-memory
    #: store does); without it, a subscription receives changes only.
    SNAPSHOT = enum.auto()
    #: Items belong to an app id, group and label (the same key in two of them is two items) and
    #: keep their tags. Without it, keys are global to the store (every app, group and label
    #: sees the same items, as in Dapr) and saving tags is refused with InvalidArgumentError.
    SCOPES = enum.auto()


class ConfigurationStore(Component):
    """A configuration backend. Group/label are already defaulted by the API layer."""

    features: frozenset[ConfigurationFeature] = frozenset()
    default_group: str = DEFAULT_GROUP
    default_label: str = DEFAULT_LABEL

    hub: SubscriptionHub

    @abstractmethod
    async def get(self, request: GetRequest) -> list[ConfigItem]:
        """Items of request.keys (every key when empty) that exist; missing keys are left out."""

    @abstractmethod
    async def set(self, request: SetRequest) -> None:
        """Create or replace every item, and notify subscribers."""

    @abstractmethod
    async def delete(self, request: DeleteRequest) -> None:
        """Remove the keys (no error when absent), and notify subscribers."""

    @abstractmethod
    async def subscribe(self, request: SubscribeRequest) -> Subscription:
        """Start watching; changes arrive on the returned subscription until it is closed."""

    async def unsubscribe(self, subscription_id: str) -> bool:
        """Close a subscription by id; False when there is none."""
        sub = self.hub.get(subscription_id)
        if sub is None:
            return False
        sub.close()
        return True


def metadata_dict(values: Mapping[str, str] | None) -> dict[str, str]:
    return dict(values or {})
