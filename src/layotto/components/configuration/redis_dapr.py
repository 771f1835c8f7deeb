"""Dapr's key layout for the Redis configuration store (`keyLayout: dapr`, the default).

As Dapr's `configuration.redis`: every configuration key is a plain Redis string key whose
value is `value||version` (`SET orderId1 "100||1"` is the item orderId1 with value 100 and
version 1; a value without `||` has no version). Dapr splits on every `||` and keeps the first
two parts, and so do we, so both sidecars show the same item. Non-string keys are not items
(skipped, with a warning when asked for by name); a missing key or an empty value is absent.
Keys are global to the database: app id, group and label do not scope them (an item comes back
with the group and label it was asked under), and tags cannot be stored -- hence no
`ConfigurationFeature.SCOPES`. Saving (Layotto's API) SETs `content`, or `content||version` when
the item's metadata has a `version`; a `||` in either, or tags, are refused rather than stored
as something else. Deleting DELs the keys. Needs Redis >= 6 (SCAN ... TYPE).

Changes are seen through keyspace notifications, as Dapr does: `CONFIG SET
notify-keyspace-events` (we add K and A to what is set, where Dapr replaces it with KA, so a
server's keyevent settings survive; refused on managed Redis: one warning, then the server's
own setting decides), then SUBSCRIBE `__keyspace@<redisDB>__:<key>` for every watched key, or
PSUBSCRIBE `__keyspace@<redisDB>__:*` while a subscriber watches every key. An event is only a
hint: the key is read back, and what changed since the last report is sent -- a key that reads
back missing (del, expired, evicted, renamed away) as deleted. Rewriting the value a key has is
no change. Reading back keeps one rule for every event and gets a cluster's slot migration
right: MIGRATE's `del` on the old node reads the key from the new one.

Pub/Sub is fire-and-forget, so the last value reported of every watched key (every key, while
one subscriber watches them all) is kept -- read when a subscription adds the key, before its
channel is asked for -- and after each (re)subscription the keys are read again and every
difference reported: nothing written after subscribe() is missed, nor across a reconnect;
intermediate values may be (subscribers see the latest). Without SNAPSHOT, a new subscription
gets changes only.

A Redis Cluster sends each node's keyspace events on that node only: one listener per primary,
each subscribing the same channels; get-all SCANs every primary. The primaries are learned
again when a listener's connection fails (a failover) and every `_TOPOLOGY_INTERVAL` seconds (a
primary added by resharding). A primary demoted without failing still sends the events of the
writes it replicates. Behind Sentinel the listener's connection goes to the master, and every
new connection sets the notifications again, so a promoted replica gets them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Iterable
from typing import Any

import redis.asyncio as aioredis
from redis import exceptions as redis_errors

from layotto.components._drivers import redis as redis_driver
from layotto.components.base import ComponentContext, Metadata
from layotto.components.configuration import base as configuration
from layotto.errors import BackendUnavailableError, ComponentError, InvalidArgumentError

log = logging.getLogger("layotto.configuration.redis")

SEPARATOR = "||"
#: Where an item carries its version (the Dapr API reads it there).
VERSION = "version"
NOTIFY_SETTING = "notify-keyspace-events"

_RETRY_MIN = 0.05
_RETRY_MAX = 1.0
#: How often a cluster's primaries are looked up again when no listener failed.
_TOPOLOGY_INTERVAL = 10.0
_SCAN_COUNT = 1000
#: GETs per pipeline, so reading a large database does not build one huge reply.
_READ_BATCH = 500

CHANNEL, PATTERN = "channel", "pattern"
#: What a listener subscribes to: (CHANNEL, name) for SUBSCRIBE, (PATTERN, name) for PSUBSCRIBE.
#: A key named `*` has a channel spelled like the pattern; the kind keeps them apart.
_Channel = tuple[str, bytes]
#: A set of channels (the store's `set` method hides the builtin inside its class).
_Channels = set[_Channel]


def parse_value(raw: str) -> tuple[str, str]:
    """(value, version) of a stored string, split as Dapr does."""
    parts = raw.split(SEPARATOR, 2)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _key_text(raw: Any) -> str | None:
    """A Redis key as an item key; None for one that is not UTF-8 (no request can name it)."""
    if not isinstance(raw, bytes):
        return str(raw)
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def _stored(reply: Any) -> str | None:
    """A GET reply as what we keep of it: None unless it has a value."""
    if reply is None:
        return None
    raw = _text(reply)
    return raw if parse_value(raw)[0] else None


def _item(key: str, raw: str | None, group: str = "", label: str = "") -> configuration.ConfigItem:
    if raw is None:  # a deletion, as the other stores announce it
        return configuration.ConfigItem(key, "", group, label)
    value, version = parse_value(raw)
    return configuration.ConfigItem(key, value, group, label, metadata={VERSION: version} if version else {})


class DaprRedisConfigStore(configuration.ConfigurationStore):
    """The `dapr` key layout (module docstring). Made by RedisConfigStore, which parsed `settings`."""

    def __init__(self, settings: redis_driver.RedisSettings) -> None:
        self._settings = settings
        self._prefix = f"__keyspace@{settings.db}__:".encode()
        self._listeners: dict[str, _Listener] = {}
        self._supervisor: asyncio.Task[None] | None = None
        self._topology_changed = asyncio.Event()
        #: Stopped tasks that may still be finishing; close() waits for them.
        self._ending: set[asyncio.Task[None]] = set()
        self._pruning: asyncio.Task[None] | None = None
        self._prune_again = False
        #: Last value reported (None: missing) of every watched key read since its subscription.
        self._known: dict[str, str | None] = {}
        #: Every key of the database was read for a subscriber of every key: a key absent from
        #: `_known` is then known to be missing.
        self._everything = False
        #: Read-then-record steps one at a time, so a slower read never records an older value
        #: over a newer one (listeners of a cluster's nodes read concurrently otherwise).
        self._reading = asyncio.Lock()
        self._interest_cache: frozenset[str] | None = frozenset()
        self._interest_valid = False
        self._notify_warned = False

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self._client = redis_driver.connect(self._settings)
        self.hub = configuration.SubscriptionHub(context.name)
        self.hub.on_removed = self._removed
        await self.ping()

    @property
    def _watchers(self) -> dict[str, asyncio.Task[None]]:
        # What tests/support/hooks.watcher_count counts: every task watching for subscribers.
        tasks = {name or "server": listener.task for name, listener in self._listeners.items()}
        if self._supervisor is not None:
            tasks["topology"] = self._supervisor
        return tasks

    def unavailable(self, exc: BaseException) -> BackendUnavailableError:
        return redis_driver.unavailable(self._settings.address, exc)

    async def ping(self) -> None:
        await redis_driver.ping(self._client, self._settings.address)

    # ---- reading ----
    async def _read(self, keys: list[str], *, warn: bool) -> dict[str, str]:
        """The stored value of each of `keys` that holds one; non-string keys are skipped."""
        found: dict[str, str] = {}
        for start in range(0, len(keys), _READ_BATCH):
            batch = keys[start : start + _READ_BATCH]
            try:
                pipe: Any = self._client.pipeline(transaction=False)
                async with pipe:
                    for key in batch:
                        pipe.get(key)
                    replies = await pipe.execute(raise_on_error=False)
            except redis_driver.UNAVAILABLE as exc:
                raise self.unavailable(exc) from exc
            for key, reply in zip(batch, replies, strict=True):
                if isinstance(reply, redis_errors.ResponseError) and str(reply).startswith("WRONGTYPE"):
                    if warn:
                        log.warning("redis key %r does not hold a string, so it is no configuration item", key)
                    continue
                if isinstance(reply, BaseException):
                    raise ComponentError(f"redis GET of configuration key {key!r} failed: {reply}")
                stored = _stored(reply)
                if stored is not None:
                    found[key] = stored
        return found

    async def _read_all(self) -> dict[str, str]:
        # SCAN, never KEYS: it does not block the server on a large database. A cluster's
        # scan_iter walks every primary.
        keys: set[str] = set()
        try:
            async for raw in self._client.scan_iter(count=_SCAN_COUNT, _type="string"):
                key = _key_text(raw)
                if key is not None:
                    keys.add(key)
        except redis_driver.UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc
        return await self._read(sorted(keys), warn=False)

    async def get(self, request: configuration.GetRequest) -> list[configuration.ConfigItem]:
        if request.keys:
            keys = list(dict.fromkeys(request.keys))
            found = await self._read(keys, warn=True)
        else:
            found = await self._read_all()
            keys = sorted(found)
        return [_item(k, found[k], request.group, request.label) for k in keys if k in found]

    # ---- writing ----
    async def set(self, request: configuration.SetRequest) -> None:
        if not request.items:
            raise InvalidArgumentError("params illegal:item is empty")
        values: dict[str, str] = {}
        for item in request.items:
            if not item.key:
                raise InvalidArgumentError("configuration key is empty")
            if item.tags:
                raise InvalidArgumentError(
                    f"configuration item {item.key!r} has tags, which the redis store's 'dapr' key layout "
                    "cannot keep; use keyLayout 'layotto' for tags"
                )
            version = item.metadata.get(VERSION, "")
            for what, text in (("content", item.content), ("version", version)):
                if SEPARATOR in text:
                    raise InvalidArgumentError(
                        f"configuration {what} of {item.key!r} can't contain '{SEPARATOR}': the 'dapr' key "
                        "layout stores value and version as value||version"
                    )
            values[item.key] = f"{item.content}{SEPARATOR}{version}" if version else item.content
        try:
            # One MULTI/EXEC on one server; a cluster's keys sit in many slots, so one SET each.
            pipe: Any = self._client.pipeline(transaction=not self._settings.cluster)
            async with pipe:
                for key, value in values.items():
                    pipe.set(key, value)
                await pipe.execute()
        except redis_driver.UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc

    async def delete(self, request: configuration.DeleteRequest) -> None:
        if not request.keys:
            return
        try:
            # A cluster client splits a multi-key DEL by slot.
            await self._client.delete(*request.keys)
        except redis_driver.UNAVAILABLE as exc:
            raise self.unavailable(exc) from exc

    # ---- what is watched ----
    def _interest(self) -> frozenset[str] | None:
        """The keys some subscriber watches; None when one watches every key."""
        if not self._interest_valid:
            keys: set[str] = set()
            everything = False
            for sub in self.hub.subscriptions():
                if not sub.request.keys:
                    everything = True
                    break
                keys.update(sub.request.keys)
            self._interest_cache = None if everything else frozenset(keys)
            self._interest_valid = True
        return self._interest_cache

    def _watches(self, key: str) -> bool:
        interest = self._interest()
        return interest is None or key in interest

    def wanted(self) -> _Channels:
        """The channels every listener must subscribe to now."""
        interest = self._interest()
        if interest is None:
            return {(PATTERN, self._prefix + b"*")}
        return {(CHANNEL, self._prefix + key.encode()) for key in interest}

    def key_of(self, channel: Any) -> str | None:
        name = channel if isinstance(channel, bytes) else str(channel).encode()
        if not name.startswith(self._prefix):
            return None
        return _key_text(name[len(self._prefix) :])

    # ---- changes ----
    def _observe(self, key: str, stored: str | None) -> configuration.ConfigItem | None:
        """Record what `key` holds now; the change to report, if any. A key not read since it is
        watched is only recorded: subscribers get changes, not a snapshot."""
        if not self._watches(key):
            return None
        if key in self._known:
            previous, baselined = self._known[key], True
        else:
            previous, baselined = None, self._everything
        if stored is None and self._everything:
            self._known.pop(key, None)
        else:
            self._known[key] = stored
        return _item(key, stored) if baselined and stored != previous else None

    async def reread(self, keys: list[str] | None) -> None:
        """Read `keys` (None: every key) and report what changed since the last report."""
        async with self._reading:
            if keys is None:
                current = await self._read_all()
                checked: Iterable[str] = set(self._known) | set(current)
            else:
                checked = [k for k in keys if self._watches(k)]
                if not checked:
                    return
                current = await self._read(list(checked), warn=False)
            changes = [c for k in checked if (c := self._observe(k, current.get(k))) is not None]
            if keys is None and self._interest() is None:
                self._everything = True
        self._report(changes)

    def _report(self, items: list[configuration.ConfigItem]) -> None:
        if not items:
            return
        for sub in self.hub.subscriptions():
            req = sub.request
            keys = frozenset(req.keys)
            chosen = [i for i in items if not keys or i.key in keys]
            if chosen:
                sub.offer(
                    configuration.ConfigItem(i.key, i.content, req.group, req.label, metadata=dict(i.metadata))
                    for i in chosen
                )

    def _forget_unwatched(self) -> None:
        interest = self._interest()
        if interest is None:
            return
        if self._everything:
            # Until now a key absent from _known was known missing; say so for those still watched.
            for key in interest:
                self._known.setdefault(key, None)
            self._everything = False
        for key in [k for k in self._known if k not in interest]:
            del self._known[key]

    async def enable_notifications(self, client: aioredis.Redis) -> None:
        """Keyspace events of every kind on the server `client` reaches, keeping what is set."""
        try:
            reply = await client.config_get(NOTIFY_SETTING)
            flags = set(_text(next(iter(reply.values()), "")))
            if "K" in flags and ("A" in flags or {"$", "g", "x"} <= flags):
                return
            await client.config_set(NOTIFY_SETTING, "".join(sorted(flags | {"K", "A"})))
        except redis_errors.ResponseError as exc:
            if not self._notify_warned:
                self._notify_warned = True
                log.warning(
                    "redis config store %r cannot turn keyspace notifications on (%s): subscribers see changes "
                    "only if the server has %s with K and A (or at least K$gx) -- set it in its configuration",
                    self.hub.store_name,
                    exc,
                    NOTIFY_SETTING,
                )

    # ---- subscriptions ----
    async def subscribe(self, request: configuration.SubscribeRequest) -> configuration.Subscription:
        sub = self.hub.add(request)
        self._interest_valid = False
        try:
            await self._baseline(request.keys)
            await self._start_watch()
            results = await asyncio.gather(
                *(listener.ready() for listener in list(self._listeners.values())), return_exceptions=True
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        except BaseException:
            sub.close()
            raise
        return sub

    async def _baseline(self, keys: list[str]) -> None:
        """Record what the keys a subscription adds hold now, before their channels are asked
        for: the read after the confirmation then reports a change made in between, so the
        subscription misses nothing written after subscribe() was called."""
        async with self._reading:
            if self._everything:
                return
            if keys:
                fresh = [k for k in dict.fromkeys(keys) if k not in self._known]
                if fresh:
                    current = await self._read(fresh, warn=False)
                    self._known.update({k: current.get(k) for k in fresh})
            else:
                for key, stored in (await self._read_all()).items():
                    self._known.setdefault(key, stored)
                self._everything = True

    async def _start_watch(self) -> None:
        if self._listeners:
            return
        if isinstance(self._client, redis_driver.RoutedCluster):
            try:
                await self._client.initialize()
            except redis_driver.UNAVAILABLE as exc:
                raise self.unavailable(exc) from exc
            if self._listeners or not len(self.hub):  # started meanwhile, or no longer needed
                return
            self._follow_primaries()
            self._supervisor = asyncio.create_task(self._supervise(), name="redis-config-keyspace-topology")
        else:
            # The listener must see every disconnect to read again after it, so no hidden retries.
            self._add_listener("", redis_driver.connect(dataclasses.replace(self._settings, max_retries=0)))

    def _add_listener(self, name: str, client: redis_driver.Client) -> None:
        assert isinstance(client, aioredis.Redis)
        self._listeners[name] = _Listener(self, name, name or self._settings.address, client)

    def _follow_primaries(self) -> None:
        """A listener for every primary in the cluster's slot table, and none for other nodes."""
        assert isinstance(self._client, redis_driver.RoutedCluster)
        primaries = {f"{n.host}:{n.port}": (n.host, int(n.port)) for n in self._client.get_primaries()}
        for name in [n for n in self._listeners if n not in primaries]:
            self._end(self._listeners.pop(name).stop())
        for name, (host, port) in primaries.items():
            if name not in self._listeners:
                node = dataclasses.replace(self._settings.at(host, port), redis_type=redis_driver.NODE, max_retries=0)
                self._add_listener(name, redis_driver.connect(node))

    async def _supervise(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._topology_changed.wait(), _TOPOLOGY_INTERVAL)
            self._topology_changed.clear()
            await redis_driver.relearn(self._client)
            self._follow_primaries()

    def listener_failed(self) -> None:
        self._topology_changed.set()

    def _end(self, task: asyncio.Task[None]) -> None:
        self._ending.add(task)
        task.add_done_callback(self._ending.discard)

    def _removed(self, sub: configuration.Subscription) -> None:
        self._interest_valid = False
        if not len(self.hub):
            self._stop_watch()
            return
        # Unsubscribe what nobody watches any more (a task: this runs inside Subscription.close).
        self._prune_again = True
        if self._pruning is None or self._pruning.done():
            self._pruning = asyncio.create_task(self._prune(), name="redis-config-keyspace-prune")

    async def _prune(self) -> None:
        while self._prune_again:
            self._prune_again = False
            async with self._reading:
                self._forget_unwatched()
            for listener in list(self._listeners.values()):
                await listener.drop_stale()

    def _stop_watch(self) -> None:
        for listener in list(self._listeners.values()):
            self._end(listener.stop())
        self._listeners.clear()
        for task in (self._supervisor, self._pruning):
            if task is not None:
                task.cancel()
                self._end(task)
        self._supervisor = self._pruning = None
        self._known.clear()
        self._everything = False

    async def close(self) -> None:
        hub = getattr(self, "hub", None)
        if hub is not None:
            hub.close_all()
        self._stop_watch()
        for task in list(self._ending):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        client = getattr(self, "_client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()


class _Listener:
    """The keyspace events of one server on a Pub/Sub connection of its own: the server (or
    Sentinel's master), or one primary of a cluster. It closes `client` when it stops."""

    def __init__(self, store: DaprRedisConfigStore, name: str, where: str, client: aioredis.Redis) -> None:
        self.name = name
        self.where = where
        self._store = store
        self._client = client
        self._stopped = False
        self._pubsub: Any = None
        #: Asked for on the current connection, and of those, confirmed by Redis (and read).
        self._asked: set[_Channel] = set()
        self._confirmed: set[_Channel] = set()
        self._waiters: list[asyncio.Future[None]] = []
        #: Sending (un)subscriptions, and swapping the connection, one at a time.
        self._lock = asyncio.Lock()
        self.task = asyncio.create_task(self._run(), name=f"redis-config-keyspace-{name or 'server'}")

    def stop(self) -> asyncio.Task[None]:
        self._stopped = True
        self.task.cancel()
        return self.task

    def _gone(self) -> BackendUnavailableError:
        return BackendUnavailableError(f"stopped listening to redis at {self.where}")

    async def ready(self) -> None:
        """Once every channel the store's subscribers need now is subscribed, and its keys read:
        from then on no change of theirs is missed. Raises BackendUnavailableError when the
        connection fails first."""
        while True:
            if self._stopped:  # a cluster node that is no longer a primary
                raise self._gone()
            async with self._lock:
                wanted = self._store.wanted()
                if wanted <= self._confirmed:
                    return
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                if self._pubsub is not None:  # else the connection being made asks for them
                    try:
                        await self._ask(wanted)
                    except redis_driver.UNAVAILABLE as exc:
                        self._waiters.remove(waiter)
                        raise self._store.unavailable(exc) from exc
            await waiter  # the next confirmation, or the connection's failure

    async def drop_stale(self) -> None:
        async with self._lock:
            if self._pubsub is None:
                return
            # A failed send fails the reader too; its new connection asks for what is wanted then.
            with contextlib.suppress(*redis_driver.UNAVAILABLE):
                await self._ask(self._store.wanted())

    async def _ask(self, wanted: _Channels) -> None:
        """Subscribe to what is wanted and not asked yet, then drop what is no longer wanted:
        in this order on one connection, a key moving from a channel to the pattern (or back)
        is never unwatched."""
        pubsub = self._pubsub
        new, stale = wanted - self._asked, self._asked - wanted
        # Recorded before sending: the confirmation may be read before the send returns.
        self._asked |= new
        for kind, command in ((CHANNEL, pubsub.subscribe), (PATTERN, pubsub.psubscribe)):
            names = [name for k, name in new if k == kind]
            if names:
                await command(*names)
        self._asked -= stale
        self._confirmed -= stale
        for kind, command in ((CHANNEL, pubsub.unsubscribe), (PATTERN, pubsub.punsubscribe)):
            names = [name for k, name in stale if k == kind]
            if names:
                await command(*names)

    def _wake(self, error: BaseException | None = None) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(error)

    async def _run(self) -> None:
        delay = _RETRY_MIN
        try:
            while True:
                redis_driver.stop_if_cancelled()
                pubsub: Any = None
                try:
                    await self._store.enable_notifications(self._client)
                    pubsub = self._client.pubsub()
                    await pubsub.connect()
                    async with self._lock:
                        self._pubsub, self._asked, self._confirmed = pubsub, set(), set()
                        await self._ask(self._store.wanted())
                    while True:
                        redis_driver.stop_if_cancelled()
                        message = await pubsub.get_message(timeout=None)
                        if message is not None and await self._handle(message):
                            delay = _RETRY_MIN
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # any failure: a new connection, which reads everything again
                    expected = isinstance(exc, (*redis_driver.UNAVAILABLE, redis_errors.RedisError, ComponentError))
                    log.warning(
                        "redis keyspace events of %s broke (%s); subscribing again",
                        self.where,
                        exc,
                        exc_info=not expected,
                    )
                    self._pubsub = None
                    self._wake(self._store.unavailable(exc))
                    self._store.listener_failed()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX)
                finally:
                    self._pubsub = None
                    if pubsub is not None:
                        with contextlib.suppress(Exception):
                            await pubsub.aclose()
        finally:
            self._wake(self._gone())
            with contextlib.suppress(Exception):
                await self._client.aclose()

    async def _handle(self, message: dict[str, Any]) -> bool:
        """Act on one Pub/Sub message; True for a subscription confirmed."""
        kind = message["type"]
        if kind in ("subscribe", "psubscribe"):
            channel: _Channel = (CHANNEL if kind == "subscribe" else PATTERN, bytes(message["channel"]))
            if channel in self._asked and channel not in self._confirmed:
                # Covers what changed while unsubscribed: before the first subscription, or
                # during a reconnect.
                await self._store.reread(None if channel[0] == PATTERN else self._keys_of(channel[1]))
                if channel in self._asked:  # not dropped meanwhile
                    self._confirmed.add(channel)
            self._wake()
            return True
        if kind in ("message", "pmessage"):
            key = self._store.key_of(message["channel"])
            if key is not None:
                await self._store.reread([key])
        return False

    def _keys_of(self, channel: bytes) -> list[str]:
        key = self._store.key_of(channel)
        return [] if key is None else [key]
