"""In-process configuration store (upstream `in-memory`): for tests and single-sidecar demos.

Unlike upstream's, it keeps app_id, label and tags, and a delete is announced to subscribers
(empty content) as the etcd store does. As upstream, a new subscription first receives the
current values of its keys.
"""

from __future__ import annotations

from layotto.components.base import ComponentContext, Metadata
from layotto.components.configuration import base as configuration
from layotto.errors import InvalidArgumentError

_Scope = tuple[str, str, str]  # app_id, group, label


class InMemoryConfigStore(configuration.ConfigurationStore):
    metadata_keys = ()
    features = frozenset({configuration.ConfigurationFeature.SNAPSHOT, configuration.ConfigurationFeature.SCOPES})

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.hub = configuration.SubscriptionHub(context.name)
        self._data: dict[_Scope, dict[str, configuration.ConfigItem]] = {}

    def _read(self, request: configuration.GetRequest) -> list[configuration.ConfigItem]:
        scope = self._data.get((request.app_id, request.group, request.label), {})
        keys = request.keys or sorted(scope)
        return [_copy(scope[k]) for k in keys if k in scope]

    async def get(self, request: configuration.GetRequest) -> list[configuration.ConfigItem]:
        return self._read(request)

    async def set(self, request: configuration.SetRequest) -> None:
        if not request.items:
            raise InvalidArgumentError("params illegal:item is empty")
        for item in request.items:
            self._data.setdefault((request.app_id, item.group, item.label), {})[item.key] = _copy(item)
        self.hub.publish(request.app_id, [_copy(i) for i in request.items])

    async def delete(self, request: configuration.DeleteRequest) -> None:
        scope = self._data.get((request.app_id, request.group, request.label), {})
        keys = request.keys or sorted(scope)
        removed = [k for k in keys if scope.pop(k, None) is not None]
        self.hub.publish(
            request.app_id, [configuration.ConfigItem(key=k, group=request.group, label=request.label) for k in removed]
        )

    async def subscribe(self, request: configuration.GetRequest) -> configuration.Subscription:
        sub = self.hub.add(request)
        sub.offer(self._read(request))
        return sub

    async def close(self) -> None:
        hub = getattr(self, "hub", None)
        if hub is not None:
            hub.close_all()


def _copy(item: configuration.ConfigItem) -> configuration.ConfigItem:
    return configuration.ConfigItem(
        item.key, item.content, item.group, item.label, dict(item.tags), dict(item.metadata)
    )
