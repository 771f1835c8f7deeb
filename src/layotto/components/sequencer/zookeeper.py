"""ZooKeeper sequencer: a counter znode per key, advanced by a versioned set (CAS).

The znode `<keyPrefixPath><key>` ('/' in a key is escaped as %2F) holds the counter as a
decimal string; `set(path, data, version)` fails with BadVersion when another sidecar got
there first, and the reservation is retried on the fresh value.

A znode written by upstream Layotto (id = znode version, data not a number) continues from
its version, so ids keep increasing after a migration.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiozk
from aiozk import exc as zkexc

from layotto.components._drivers import zookeeper
from layotto.components.base import ComponentContext, Metadata
from layotto.components.sequencer.base import CasSequencer
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError

T = TypeVar("T")


def _counter(data: bytes | None, version: int) -> int:
    try:
        return int(data or b"0")
    except ValueError:
        return version


class ZookeeperSequencer(CasSequencer):
    metadata_keys = (
        "zookeeperHosts",
        "keyPrefixPath",
        "SessionTimeout",
        "segmentCacheEnable",
        "segmentStep",
        "keyPrefix",
        *zookeeper.AUTH_METADATA_KEYS,
    )
    _client: Any = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        # Upstream reads these keys case-sensitively; ours are case-insensitive, a superset.
        self._hosts = zookeeper.hosts(metadata)
        if not self._hosts:
            raise ConfigError(
                "required metadata 'zookeeperHosts' is missing", f"{metadata.where}.metadata.zookeeperHosts"
            )
        prefix = metadata.get_str("keyPrefixPath", "/") or "/"
        self._prefix = prefix if prefix.endswith("/") else prefix + "/"
        if not self._prefix.startswith("/"):
            self._prefix = "/" + self._prefix
        self._timeout = metadata.get_duration("SessionTimeout", 5.0)
        self._client = zookeeper.client(
            self._hosts,
            zookeeper.credential(metadata),
            session_timeout=max(self._timeout, 2.0),
            retry_policy=aiozk.RetryPolicy.until_elapsed(self._timeout),
            read_timeout=self._timeout,
        )
        await self._call(self._client.start())
        if self._prefix != "/":
            await self._call(self._client.ensure_path(self._prefix.rstrip("/")))
        await super().init(metadata, context)

    def _unavailable(self, exc: BaseException) -> BackendUnavailableError:
        return BackendUnavailableError(f"zookeeper at {self._hosts} is unavailable: {exc or type(exc).__name__}")

    async def _call(self, operation: Awaitable[T]) -> T:
        try:
            return await zookeeper.bounded(self._client, operation, self._timeout + 1.0)
        except zookeeper.UNAVAILABLE as exc:
            raise self._unavailable(exc) from exc

    def _path(self, key: str) -> str:
        return self._prefix + key.replace("%", "%25").replace("/", "%2F")

    async def _update(self, key: str, change: int, *, at_least: bool) -> int:
        client, path = self._client, self._path(key)
        for attempt in range(self.max_attempts):
            try:
                data, stat = await self._call(client.get(path))
            except zkexc.NoNode:
                try:
                    await self._call(client.create(path, data=str(change).encode()))
                    return change
                except zkexc.NodeExists:
                    continue
                except zkexc.ZKError as exc:
                    raise ComponentError(f"zookeeper sequencer cannot create {path}: {exc}") from exc
            except zkexc.ZKError as exc:
                raise ComponentError(f"zookeeper sequencer cannot read {path}: {exc}") from exc
            value = _counter(data, stat.version)
            new = max(value, change) if at_least else value + change
            if new == value:
                return value
            try:
                await self._call(client.set(path, str(new).encode(), stat.version))
                return new
            except (zkexc.BadVersion, zkexc.NoNode):
                await self.lost_race(attempt)
            except zkexc.ZKError as exc:
                raise ComponentError(f"zookeeper sequencer failed on {key}: {exc}") from exc
        raise ComponentError(f"zookeeper sequencer: too much contention on {key}")

    async def ping(self) -> None:
        await self._call(self._client.exists("/"))

    async def close(self) -> None:
        await super().close()
        if self._client is not None:
            try:
                await asyncio.wait_for(self._client.close(), 5.0)
            except Exception:  # closing a session whose server is gone; nothing to release
                pass
