"""Redis configuration store (`redis`): a config centre on the Redis many deployments already run.

Two key layouts, chosen by the metadata `keyLayout`:
- `dapr` (the default, so a Dapr `configuration.redis` component reads what Dapr users wrote):
  one string key per config key, `value||version`, watched through keyspace notifications --
  see redis_dapr.py;
- `layotto`: the layout below, which keeps app id, group, label and tags.

`RedisConfigStore` (the registered type) reads `keyLayout` and hands every call to the store of
that layout.

Layout `layotto` (prefix `keyPrefix`, default `layotto-config`):
- `<prefix>:<app_id>:<group>:<label>` -- a hash, field = config key, value = content (so
  `HGET` in redis-cli shows a value as it is);
- `<prefix>:<app_id>:<group>:<label>:tags` -- a hash, field = config key, value = JSON tags.

Every write runs in one MULTI/EXEC (or one Lua script for deletes) that also PUBLISHes the
change on the channel `<prefix>:<app_id>`, so it needs no keyspace notifications (often
disabled, and not allowed on managed Redis). Messages are JSON
`{"group", "label", "items": [{"key", "content", "deleted"}]}`.

On a Redis Cluster the app's part of the names is a hash tag (`{<prefix>:<app_id>}:<group>:<label>`
and its `:tags`), so all of one app's keys share a slot and a write stays one MULTI/EXEC on
one node. The change messages need nothing per node either: a PUBLISH reaches the subscribers
on every node of the cluster, so a watcher subscribes on one node (found again after it
fails). Keyspace notifications, which are per node and off by default, are not used at all.

Pub/Sub is fire-and-forget: a message sent while a sidecar is reconnecting is lost. So each
watcher keeps the last content it knows of every key its subscribers watch, and after each
(re)subscription re-reads those hashes and reports every difference -- no change is missed,
intermediate values may be (subscribers see the latest one).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
from typing import Any

import redis.asyncio as aioredis

from layotto.components._drivers import redis as redis_driver
from layotto.components.base import ComponentContext, Metadata
from layotto.components.configuration import base as configuration
from layotto.components.configuration.redis_dapr import DaprRedisConfigStore
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError, InvalidArgumentError

log = logging.getLogger("layotto.configuration.redis")

_RETRY_MIN = 0.05
_RETRY_MAX = 1.0

# Deletes only what exists and announces exactly that, atomically. The channel is an argument,
# not a key: a cluster wants a script's keys in one slot, and a channel is in none.
_DELETE_SCRIPT = """
local deleted = {}
for i, key in ipairs(ARGV) do
  if i > 3 and redis.call('HDEL', KEYS[1], key) == 1 then
    redis.call('HDEL', KEYS[2], key)
    table.insert(deleted, {key = key, content = '', deleted = true})
  end
end
if #deleted > 0 then
  redis.call('PUBLISH', ARGV[1], cjson.encode({group = ARGV[2], label = ARGV[3], items = deleted}))
end
return #deleted
"""

_Scope = tuple[str, str]  # group, label


def redis_settings(metadata: Metadata) -> redis_driver.RedisSettings:
    """`redisHost`, or else the first `address` (the key upstream's config_store entries use)."""
    host = metadata.get_str("redisHost")
    if not host:
        address: Any = metadata.get("address") if "address" in metadata else None
        first = address[0] if isinstance(address, list) and address else address
        if isinstance(first, str):
            host = first
    return redis_driver.RedisSettings.from_metadata(metadata, address=host)


class LayottoRedisConfigStore(configuration.ConfigurationStore):
    """The `layotto` key layout (module docstring)."""

    features = frozenset({configuration.ConfigurationFeature.SCOPES})

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        settings = redis_settings(metadata)
        self._settings = settings
        self._address = settings.address
        self._prefix = metadata.get_str("keyPrefix", "layotto-config")
        self._client = redis_driver.connect(settings)
        # The watcher must see every disconnect to re-read after it, so no hidden retries.
        self._sub_client = redis_driver.connect(dataclasses.replace(settings, max_retries=0))
        self._delete = self._client.register_script(_DELETE_SCRIPT)
        self.hub = configuration.SubscriptionHub(context.name)
        self.hub.on_last = self._stop_watch
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._ready: dict[str, asyncio.Future[None]] = {}
        #: app_id -> (group, label) -> key -> content last reported, for subscribed scopes.
        self._known: dict[str, dict[_Scope, dict[str, str]]] = {}
        await self.ping()

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        return redis_driver.unavailable(self._address, exc)

    async def ping(self) -> None:
        try:
            await self._client.ping()
        except redis_driver.UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    def _hash(self, app_id: str, group: str, label: str) -> str:
        return f"{redis_driver.hash_tagged(self._settings, f'{self._prefix}:{app_id}')}:{group}:{label}"

    def _channel(self, app_id: str) -> str:
        return f"{self._prefix}:{app_id}"

    async def _read_scope(self, app_id: str, group: str, label: str, keys: list[str]) -> list[configuration.ConfigItem]:
        name = self._hash(app_id, group, label)

        async def read(node: aioredis.Redis) -> list[Any]:
            async with node.pipeline(transaction=True) as pipe:
                if keys:
                    pipe.hmget(name, keys)
                    pipe.hmget(name + ":tags", keys)
                else:
                    pipe.hgetall(name)
                    pipe.hgetall(name + ":tags")
                return await pipe.execute()

        try:
            contents, tags = await redis_driver.on_one_node(self._client, [name, name + ":tags"], read, "a read")
        except redis_driver.UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc
        if keys:
            found = {k: c for k, c in zip(keys, contents, strict=True) if c is not None}
            tag_map = {k: t for k, t in zip(keys, tags, strict=True) if t is not None}
        else:
            found, tag_map = contents, tags
        items: list[configuration.ConfigItem] = []
        for raw_key, raw_content in found.items():
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            items.append(configuration.ConfigItem(key, _text(raw_content), group, label, _tags(tag_map.get(raw_key))))
        if keys:
            order = {k: i for i, k in enumerate(keys)}
            items.sort(key=lambda i: order[i.key])
        return items

    async def get(self, request: configuration.GetRequest) -> list[configuration.ConfigItem]:
        return await self._read_scope(request.app_id, request.group, request.label, request.keys)

    async def set(self, request: configuration.SetRequest) -> None:
        if not request.items:
            raise InvalidArgumentError("params illegal:item is empty")
        by_scope: dict[_Scope, list[configuration.ConfigItem]] = {}
        for item in request.items:
            if not item.key:
                raise InvalidArgumentError("configuration key is empty")
            by_scope.setdefault((item.group, item.label), []).append(item)
        names = [self._hash(request.app_id, group, label) for group, label in by_scope]

        async def write(node: aioredis.Redis) -> None:
            async with node.pipeline(transaction=True) as pipe:
                for name, ((group, label), items) in zip(names, by_scope.items(), strict=True):
                    contents: dict[Any, Any] = {i.key: i.content for i in items}
                    pipe.hset(name, mapping=contents)
                    tagged: dict[Any, Any] = {i.key: json.dumps(i.tags) for i in items if i.tags}
                    untagged = [i.key for i in items if not i.tags]
                    if tagged:
                        pipe.hset(name + ":tags", mapping=tagged)
                    if untagged:
                        pipe.hdel(name + ":tags", *untagged)
                    message = {
                        "group": group,
                        "label": label,
                        "items": [{"key": i.key, "content": i.content, "tags": i.tags} for i in items],
                    }
                    pipe.publish(self._channel(request.app_id), json.dumps(message))
                await pipe.execute()

        try:
            await redis_driver.on_one_node(self._client, [*names, *(n + ":tags" for n in names)], write, "a save")
        except redis_driver.UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    async def delete(self, request: configuration.DeleteRequest) -> None:
        if not request.keys:
            return
        name = self._hash(request.app_id, request.group, request.label)
        try:
            await self._delete(
                keys=[name, name + ":tags"],
                args=[self._channel(request.app_id), request.group, request.label, *request.keys],
            )
        except redis_driver.UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    # ---- subscriptions ----
    async def subscribe(self, request: configuration.GetRequest) -> configuration.Subscription:
        app_id = request.app_id
        sub = self.hub.add(request)
        try:
            scopes = self._known.setdefault(app_id, {})
            scope = (request.group, request.label)
            if scope not in scopes:
                current = await self._read_scope(app_id, request.group, request.label, [])
                scopes.setdefault(scope, {i.key: i.content for i in current})
            if app_id not in self._watchers:
                ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._ready[app_id] = ready
                self._watchers[app_id] = asyncio.create_task(self._watch(app_id), name=f"redis-config-watch-{app_id}")
            # Return only once the channel is subscribed, so the caller's next write is seen.
            await asyncio.shield(self._ready[app_id])
        except BaseException:
            sub.close()
            raise
        return sub

    def _stop_watch(self, app_id: str) -> None:
        task = self._watchers.pop(app_id, None)
        self._ready.pop(app_id, None)
        self._known.pop(app_id, None)
        if task is not None:
            task.cancel()

    def _apply(self, app_id: str, scope: _Scope, changes: dict[str, str]) -> None:
        """Record changes of a watched scope and pass them to its subscribers."""
        known = self._known.get(app_id, {}).get(scope)
        if known is None:
            return
        items = []
        for key, content in changes.items():
            if content:
                known[key] = content
            else:
                known.pop(key, None)
            items.append(configuration.ConfigItem(key, content, scope[0], scope[1]))
        self.hub.publish(app_id, items)

    async def _resync(self, app_id: str) -> None:
        for scope, known in list(self._known.get(app_id, {}).items()):
            current = {i.key: i.content for i in await self._read_scope(app_id, scope[0], scope[1], [])}
            changes = {k: v for k, v in current.items() if known.get(k) != v}
            changes.update({k: "" for k in known if k not in current})
            if changes:
                self._apply(app_id, scope, changes)

    async def _watch(self, app_id: str) -> None:
        delay = _RETRY_MIN
        while True:
            redis_driver.stop_if_cancelled()
            pubsub: Any = None
            try:
                pubsub = await redis_driver.pubsub(self._sub_client)
                await pubsub.subscribe(self._channel(app_id))
                while True:  # wait for the subscribe confirmation
                    msg = await pubsub.get_message(timeout=self._sub_timeout())
                    if msg is not None and msg["type"] == "subscribe":
                        break
                # Covers what changed while unsubscribed: before the first subscription, or
                # during a reconnect.
                await self._resync(app_id)
                ready = self._ready.get(app_id)
                if ready is not None and not ready.done():
                    ready.set_result(None)
                delay = _RETRY_MIN
                while True:
                    redis_driver.stop_if_cancelled()
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
                    if msg is not None and msg["type"] == "message":
                        self._on_message(app_id, msg["data"])
            except asyncio.CancelledError:
                raise
            except (*redis_driver.UNAVAILABLE, ComponentError) as exc:
                log.warning("redis config watch of %r broke (%s); re-subscribing", app_id, exc)
                await redis_driver.relearn(self._sub_client)
                ready = self._ready.get(app_id)
                if ready is not None and not ready.done():
                    ready.set_exception(self._unavailable(exc))
                    ready.exception()  # retrieved here; subscribe() sees it through shield
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(Exception):
                        await pubsub.aclose()

    def _sub_timeout(self) -> float:
        return 5.0

    def _on_message(self, app_id: str, data: bytes | str) -> None:
        try:
            message = json.loads(data)
            scope = (str(message["group"]), str(message["label"]))
            changes = {str(i["key"]): "" if i.get("deleted") else str(i.get("content", "")) for i in message["items"]}
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring malformed config change message on %r: %s", self._channel(app_id), exc)
            return
        self._apply(app_id, scope, changes)

    async def close(self) -> None:
        hub = getattr(self, "hub", None)
        if hub is not None:
            hub.close_all()
        tasks = list(getattr(self, "_watchers", {}).values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for client in (getattr(self, "_client", None), getattr(self, "_sub_client", None)):
            if client is not None:
                with contextlib.suppress(Exception):
                    await client.aclose()


KEY_LAYOUT = "keyLayout"
DAPR, LAYOTTO = "dapr", "layotto"


class RedisConfigStore(configuration.ConfigurationStore):
    """`redis`: the store of the layout `keyLayout` names (`dapr` by default), which it runs."""

    metadata_keys = ("keyLayout", "redisHost", "address", "keyPrefix", *redis_driver.CLIENT_METADATA_KEYS)

    features = DaprRedisConfigStore.features
    _store: configuration.ConfigurationStore | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        layout = (metadata.get_str(KEY_LAYOUT) or DAPR).strip().lower()
        store: configuration.ConfigurationStore
        if layout == DAPR:
            store = DaprRedisConfigStore(redis_settings(metadata))
        elif layout == LAYOTTO:
            store = LayottoRedisConfigStore()
        else:
            raise ConfigError(
                f"{KEY_LAYOUT} must be '{DAPR}' (Dapr's keys, the default) or '{LAYOTTO}', got "
                f"{metadata.get_str(KEY_LAYOUT)!r}",
                f"{metadata.where}.metadata.{KEY_LAYOUT}",
            )
        try:
            await store.init(metadata, context)
        except BaseException:
            await store.close()
            raise
        self._store = store
        self.features = store.features
        self.hub = store.hub

    @property
    def layout(self) -> configuration.ConfigurationStore:
        assert self._store is not None, "used before init"
        return self._store

    @property
    def _watchers(self) -> dict[str, asyncio.Task[None]]:
        # tests/support/hooks.watcher_count reads a store's `_watchers`: these are the layout's.
        watchers: dict[str, asyncio.Task[None]] = getattr(self._store, "_watchers", {})
        return watchers

    async def ping(self) -> None:
        await self.layout.ping()

    async def get(self, request: configuration.GetRequest) -> list[configuration.ConfigItem]:
        return await self.layout.get(request)

    async def set(self, request: configuration.SetRequest) -> None:
        await self.layout.set(request)

    async def delete(self, request: configuration.DeleteRequest) -> None:
        await self.layout.delete(request)

    async def subscribe(self, request: configuration.SubscribeRequest) -> configuration.Subscription:
        return await self.layout.subscribe(request)

    async def close(self) -> None:
        if self._store is not None:
            await self._store.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _tags(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in parsed.items()} if isinstance(parsed, dict) else {}
