"""etcd v3 configuration store (upstream `etcd`), on the `aetcd` asyncio client.

Layout, as upstream: `/<app_id>/<group>/<label>/<key>` holds the content. Tags live one level
below, at `/<app_id>/<group>/<label>/<key>/<tag>`. Upstream writes the tag *value* as the
path segment and the content as the value, then reads every child back as
`tags[segment] = value` -- so its tags come back as {tagValue: content}. We write
`<key>/<tagName>` = tagValue, which upstream's reader (and ours) return as the tags that
were saved; data written by upstream reads back exactly as upstream would show it.

Subscriptions: one etcd watch per app_id on the prefix `/<app_id>/`, started by the first
subscriber of that app and cancelled after the last one leaves. The watch resumes from the
revision after the last event it saw, so an etcd restart or a dropped connection loses no
change. If that revision was compacted meanwhile, subscribers get the current value of every
key they watch instead (deletes made during the gap are then not reported).

With several members (`address`), calls and the watch go to a member that answers
(`_drivers/etcd.Members`): when the watched member dies the watch is opened again on the next
one from the same revision, so a failover loses no change either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import aetcd
import aetcd.exceptions

from layotto.components._drivers import etcd
from layotto.components.base import ComponentContext, Metadata
from layotto.components.configuration import base as configuration
from layotto.errors import ComponentError, ConfigError, InvalidArgumentError

log = logging.getLogger("layotto.configuration.etcd")

_RETRY_MIN = 0.05
_RETRY_MAX = 1.0
#: Watch streams also time out when etcd is gone.
_UNAVAILABLE = (*etcd.UNAVAILABLE, aetcd.exceptions.WatchTimeoutError)


def _endpoints(metadata: Metadata) -> list[tuple[str, int]]:
    where = f"{metadata.where}.address"
    raw: Any = metadata.get("address") if "address" in metadata else None
    if raw is None or raw == "" or raw == []:
        raw = metadata.get_str("endpoints")
    if not isinstance(raw, (str, list)):
        raise ConfigError("'address' must be a list of host:port", where)
    endpoints = etcd.parse_endpoints(raw, where)
    if not endpoints:
        raise ConfigError("etcd config store needs 'address' (a list of host:port)", where)
    return endpoints


def _valid_segment(what: str, value: str) -> None:
    if "/" in value:
        raise InvalidArgumentError(f"{what} '{value}' can't contain '/'")


class EtcdConfigStore(configuration.ConfigurationStore):
    metadata_keys = ("address", "endpoints", "timeout", "username", "password", *etcd.TLS_METADATA_KEYS)
    features = frozenset({configuration.ConfigurationFeature.SCOPES})

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        # Upstream reads `timeout` as whole seconds (default 10) and uses it to dial.
        self._members = etcd.Members(_endpoints(metadata), metadata, metadata.get_duration("timeout", 10.0))
        self.hub = configuration.SubscriptionHub(context.name)
        self.hub.on_last = self._stop_watch
        self._watchers: dict[str, asyncio.Task[None]] = {}
        await self.ping()

    # ---- connection ----
    async def _call(self, op: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self._members.call(lambda client: fn(client, *args, **kwargs))
        except aetcd.exceptions.WatchTimeoutError as exc:
            raise etcd.unavailable(self._members.where, exc) from exc
        except aetcd.exceptions.ClientError as exc:
            raise ComponentError(f"etcd {op} failed: {exc}") from exc

    async def ping(self) -> None:
        async def status(c: aetcd.Client) -> None:
            await c.get(b"/")

        await self._call("ping", status)

    # ---- keys ----
    @staticmethod
    def _scope(app_id: str, group: str, label: str) -> str:
        return f"/{app_id}/{group}/{label}/"

    async def _range(self, prefix: str) -> tuple[int, list[tuple[str, str]]]:
        async def get(c: aetcd.Client) -> Any:
            return await c.get_prefix(prefix.encode())

        resp = await self._call("get", get)
        pairs = [(kv.key.decode(), kv.value.decode()) for kv in resp.kvs]
        return int(resp.header.revision), pairs

    async def get(self, request: configuration.GetRequest) -> list[configuration.ConfigItem]:
        for what, value in (("app_id", request.app_id), ("group", request.group), ("label", request.label)):
            _valid_segment(what, value)
        prefix = self._scope(request.app_id, request.group, request.label)
        _, pairs = await self._range(prefix)
        items: dict[str, configuration.ConfigItem] = {}
        tags: list[tuple[str, str, str]] = []
        for path, value in pairs:
            rest = path[len(prefix) :].split("/")
            if len(rest) == 1:
                items[rest[0]] = configuration.ConfigItem(rest[0], value, request.group, request.label)
            elif len(rest) == 2:
                tags.append((rest[0], rest[1], value))
        for key, tag, value in tags:
            if key in items:
                items[key].tags[tag] = value
        if not request.keys:
            return list(items.values())
        return [items[k] for k in request.keys if k in items]

    async def set(self, request: configuration.SetRequest) -> None:
        if not request.items:
            raise InvalidArgumentError("params illegal:item is empty")
        _valid_segment("app_id", request.app_id)
        puts: dict[str, str] = {}
        tag_parents: list[str] = []
        for item in request.items:
            for what, value in (("group", item.group), ("label", item.label), ("key", item.key)):
                _valid_segment(what, value)
            if not item.key:
                raise InvalidArgumentError("configuration key is empty")
            path = self._scope(request.app_id, item.group, item.label) + item.key
            puts[path] = item.content
            tag_parents.append(path + "/")
            for tag, value in item.tags.items():
                _valid_segment("tag", tag)
                puts[f"{path}/{tag}"] = value
        stale: list[str] = []
        for parent in tag_parents:
            _, children = await self._range(parent)
            stale.extend(p for p, _ in children if p not in puts)

        async def txn(c: aetcd.Client) -> None:
            ops = [c.transactions.delete(p.encode()) for p in stale]
            ops += [c.transactions.put(p.encode(), v.encode()) for p, v in puts.items()]
            await c.transaction(compare=[], success=ops, failure=[])

        await self._call("save", txn)

    async def delete(self, request: configuration.DeleteRequest) -> None:
        for what, value in (("app_id", request.app_id), ("group", request.group), ("label", request.label)):
            _valid_segment(what, value)
        scope = self._scope(request.app_id, request.group, request.label)

        async def txn(c: aetcd.Client) -> None:
            ops = []
            for key in request.keys:
                _valid_segment("key", key)
                path = (scope + key).encode()
                child = path + b"/"
                ops.append(c.transactions.delete(path))
                ops.append(c.transactions.delete(child, aetcd.utils.prefix_range_end(child)))
            if ops:
                await c.transaction(compare=[], success=ops, failure=[])

        await self._call("delete", txn)

    # ---- subscriptions ----
    async def subscribe(self, request: configuration.GetRequest) -> configuration.Subscription:
        for what, value in (("app_id", request.app_id), ("group", request.group), ("label", request.label)):
            _valid_segment(what, value)
        app_id = request.app_id
        if app_id not in self._watchers:
            # Every change after this read has a higher revision, so watching from the next
            # one misses nothing even though the watch itself is created a little later.
            revision, _ = await self._range(f"/{app_id}/")
            if app_id not in self._watchers:
                self._watchers[app_id] = asyncio.create_task(
                    self._watch(app_id, revision + 1), name=f"etcd-config-watch-{app_id}"
                )
        return self.hub.add(request)

    def _stop_watch(self, app_id: str) -> None:
        task = self._watchers.pop(app_id, None)
        if task is not None:
            task.cancel()

    def _publish_event(self, app_id: str, path: str, value: str) -> None:
        parts = path[len(app_id) + 2 :].split("/")
        # Only the items themselves: a tag change comes with its item in the same transaction.
        if len(parts) == 3:
            self.hub.publish(app_id, [configuration.ConfigItem(parts[2], value, parts[0], parts[1])])

    async def _watch(self, app_id: str, start_revision: int) -> None:
        prefix = f"/{app_id}/".encode()
        next_revision = start_revision
        delay = _RETRY_MIN
        while True:
            client = self._members.client()
            watch: Any = None
            try:
                watch = await client.watch_prefix(prefix, start_revision=next_revision)
                delay = _RETRY_MIN
                async for event in watch:
                    next_revision = max(next_revision, int(event.kv.mod_revision) + 1)
                    value = event.kv.value.decode() if event.kind == "PUT" else ""
                    self._publish_event(app_id, event.kv.key.decode(), value)
                return
            except asyncio.CancelledError:
                raise
            except aetcd.exceptions.RevisionCompactedError:
                log.warning("etcd compacted past revision %d; re-reading /%s/", next_revision, app_id)
                try:
                    next_revision = await self._resend_current(app_id)
                except ComponentError as exc:
                    log.warning("re-reading /%s/ failed: %s", app_id, exc)
                    await asyncio.sleep(delay)
            except Exception as exc:  # any watch failure: retry from the same revision
                log.warning("etcd watch on /%s/ broke (%s); resuming from revision %d", app_id, exc, next_revision)
                if isinstance(exc, _UNAVAILABLE):
                    self._members.failed(client)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _RETRY_MAX)
            finally:
                if watch is not None:
                    with contextlib.suppress(Exception):
                        await watch.cancel()

    async def _resend_current(self, app_id: str) -> int:
        revision, pairs = await self._range(f"/{app_id}/")
        for path, value in pairs:
            self._publish_event(app_id, path, value)
        return revision + 1

    async def close(self) -> None:
        hub = getattr(self, "hub", None)
        if hub is not None:
            hub.close_all()
        tasks: Sequence[asyncio.Task[None]] = list(getattr(self, "_watchers", {}).values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        members = getattr(self, "_members", None)
        if members is not None:
            await members.close()
