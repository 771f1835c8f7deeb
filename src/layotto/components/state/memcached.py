"""Memcached state store (type `memcached`), with the metadata and data layout of Dapr
components-contrib's state/memcached.

A value is stored as it is (flags 0) under the key itself, so sidecars of either implementation
share data. With several `hosts` a key lives on the host upstream's client (gomemcache) picks:
`hosts[crc32(key) % len(hosts)]`, crc32 being IEEE's. That is modulo hashing, not consistent
hashing: changing the host list moves most keys, as upstream; a host listed twice takes twice
the keys. A key is checked with gomemcache's rule (at most 250 bytes, no byte <= 0x20 or 0x7f)
and refused with its error, not rewritten.

Memcached has no versions and nothing atomic across keys, so the store has TTL and neither etags
nor transactions. First-write concurrency is memcached's `add`, which refuses an existing key.

The client is aiomcache (one client, one pool, per host), with three repairs it lacks in 0.8.x:
calls are bounded by `timeout`; a connection whose call was interrupted (timeout, cancellation)
is closed rather than pooled, since its unread reply would answer the next call (aio-libs/aiomcache
#91); and a connection the server closed mid-reply raises instead of spinning on empty reads
(aio-libs/aiomcache#502). These hook into the pool, hence the `<0.9` bound on aiomcache.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import aiomcache
from aiomcache.pool import Connection, MemcachePool

from layotto.components.base import ComponentContext, Metadata, parse_duration, unsupported
from layotto.components.state import base as state
from layotto.errors import (
    BackendUnavailableError,
    ComponentError,
    ConfigError,
    ETagMismatchError,
    InvalidArgumentError,
)

T = TypeVar("T")

DEFAULT_PORT = 11211
#: gomemcache's defaults: idle connections per host, and the timeout when `timeout` is 0.
DEFAULT_IDLE_CONNECTIONS = 2
CLIENT_DEFAULT_TIMEOUT = 0.5
#: Upstream's timeout when the metadata gives none (or a negative one).
DEFAULT_TIMEOUT = 1.0
MAX_KEY_BYTES = 250
MALFORMED = "malformed: key is too long or contains invalid characters"
#: Memcached reads an expiry above this many seconds as a unix timestamp.
_RELATIVE_EXPIRY_LIMIT = 60 * 60 * 24 * 30
#: Memcached parses an expiry as a signed 32-bit number, so a timestamp cannot pass 2038.
_LAST_EXPIRY = 2**31 - 1
#: Seconds kept off that bound, for the clock to move between the check and the save.
_CLOCK_MARGIN = 60
#: Keys per `get` line: memcached takes long multi-gets, but a bounded line keeps replies small.
_KEYS_PER_GET = 100
#: Saves or deletes of one bulk call in flight at once (each waits for a pooled connection anyway).
_BULK_PARALLELISM = 32


def check_key(key: str) -> bytes:
    """The key as memcached gets it, or InvalidArgumentError with gomemcache's ErrMalformedKey."""
    raw = key.encode()
    if len(raw) > MAX_KEY_BYTES or any(b <= 0x20 or b == 0x7F for b in raw):
        raise InvalidArgumentError(
            f"{MALFORMED}: {key!r} (memcached keys are at most {MAX_KEY_BYTES} bytes, "
            "without spaces or control characters)"
        )
    return raw


def expiry(ttl: int | None) -> int:
    """Memcached's exptime for `ttlInSeconds`, converted as upstream: <= 0 is "never" (0), and
    from 30 days on a unix timestamp, which memcached expects there."""
    if ttl is None or ttl <= 0:
        return 0
    if ttl >= _RELATIVE_EXPIRY_LIMIT:
        return int(time.time()) + ttl
    return ttl


class _Reader(asyncio.StreamReader):
    async def readline(self) -> bytes:
        line = await super().readline()
        if not line:
            # At EOF readline returns b"" without suspending; aiomcache's reply loop would spin
            # on it forever, freezing the event loop.
            raise asyncio.IncompleteReadError(b"", None)
        return line


class _Pool(MemcachePool):
    """aiomcache's fixed-size pool, dialling with `_Reader` and closing interrupted connections."""

    async def _create_new_conn(self) -> Connection | None:
        if self.size() >= self._maxsize:
            return None
        loop = asyncio.get_running_loop()
        reader = _Reader(loop=loop)
        protocol = asyncio.StreamReaderProtocol(reader, loop=loop)
        transport, _ = await loop.create_connection(lambda: protocol, self._host, self._port)
        writer = asyncio.StreamWriter(transport, protocol, reader, loop)
        if self.size() >= self._maxsize:
            writer.close()
            return None
        return Connection(reader, writer)

    def release(self, conn: Connection) -> None:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            # Released by a call cut short: its reply (or the rest of it) is still on the way.
            self._in_use.discard(conn)
            self._do_close(conn)
            return
        super().release(conn)


async def _as_stored(value: bytes, flags: int) -> bytes:
    # Flags set by other clients are theirs to interpret; gomemcache returns the bytes as well.
    return value


class _HostClient(aiomcache.FlagClient[bytes]):
    def __init__(self, host: str, port: int, connections: int) -> None:
        super().__init__(host, port, pool_size=connections, get_flag_handler=_as_stored)
        self._pool = _Pool(host, port, minsize=connections, maxsize=connections)

    def _validate_key(self, key: bytes) -> bytes:
        # Already checked with gomemcache's rule (check_key), which allows what aiomcache's
        # stricter one refuses (e.g. U+00A0), so that every key upstream stores is storable.
        return key


@dataclass(slots=True)
class _Host:
    address: str
    client: _HostClient


def parse_host(entry: str, where: str) -> tuple[str, int]:
    """`host:port` (`[v6]:port`; the port defaults to 11211)."""
    if "/" in entry:
        raise ConfigError(f"unix socket hosts are not supported: {entry!r}", where)
    host, port = entry, str(DEFAULT_PORT)
    if entry.startswith("["):
        end = entry.find("]")
        if end < 0 or (entry[end + 1 :] and not entry[end + 1 :].startswith(":")):
            raise ConfigError(f"malformed host {entry!r}", where)
        host, port = entry[1:end], entry[end + 2 :] or port
    elif entry.count(":") == 1:
        host, port = entry.split(":")
    elif ":" in entry:
        raise ConfigError(f"malformed host {entry!r} (an IPv6 address goes in brackets)", where)
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ConfigError(f"malformed host {entry!r}", where)
    return host, int(port)


def parse_timeout(raw: str, where: str) -> float:
    """`timeout` in seconds: upstream's integer milliseconds, or a Go duration ("1000ms")."""
    text = raw.strip()
    try:
        if text.isascii() and text.lstrip("-").isdigit():
            millis = int(text)
            if millis < 0:
                return DEFAULT_TIMEOUT
            return CLIENT_DEFAULT_TIMEOUT if millis == 0 else millis / 1000
        seconds = parse_duration(text)
    except ValueError:
        raise ConfigError("error parsing timeout", where) from None
    return CLIENT_DEFAULT_TIMEOUT if seconds == 0 else seconds


class MemcachedStateStore(state.StateStore):
    metadata_keys = ("hosts", "maxIdleConnections", "timeout")
    features = frozenset({state.StateFeature.TTL})

    def __init__(self) -> None:
        self._hosts: list[_Host] = []
        self._timeout = DEFAULT_TIMEOUT

    def max_ttl_seconds(self) -> int:
        return max(0, min(state.MAX_TTL_SECONDS, _LAST_EXPIRY - int(time.time()) - _CLOCK_MARGIN))

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        where = f"{metadata.where}.metadata" if metadata.where else "metadata"
        entries = metadata.get_list("hosts")
        if not entries:
            raise ConfigError("missing or empty hosts field from metadata", f"{where}.hosts")
        try:
            idle = int(metadata.get_str("maxIdleConnections") or DEFAULT_IDLE_CONNECTIONS)
        except ValueError:
            raise ConfigError("error parsing maxIdleConnections", f"{where}.maxIdleConnections") from None
        # aiomcache keeps a fixed number of connections per host, and calls wait for a free one:
        # gomemcache's idle limit is that number (it opens more for bursts; aiomcache cannot).
        connections = idle if idle > 0 else DEFAULT_IDLE_CONNECTIONS
        raw_timeout = metadata.get_str("timeout")
        self._timeout = parse_timeout(raw_timeout, f"{where}.timeout") if raw_timeout else DEFAULT_TIMEOUT
        for entry in entries:
            host, port = parse_host(entry, f"{where}.hosts")
            self._hosts.append(_Host(entry, _HostClient(host, port, connections)))
        try:
            await self.ping()
        except BaseException:
            await self.close()
            raise

    # ---- plumbing ----
    def _host(self, key: bytes) -> _Host:
        if len(self._hosts) == 1:
            return self._hosts[0]
        return self._hosts[zlib.crc32(key) % len(self._hosts)]

    async def _call(self, host: _Host, call: Awaitable[T]) -> T:
        try:
            async with asyncio.timeout(self._timeout):
                return await call
        except TimeoutError as exc:
            raise BackendUnavailableError(
                f"memcached at {host.address} is unavailable: no reply within {self._timeout:g}s"
            ) from exc
        except (OSError, EOFError) as exc:
            raise BackendUnavailableError(f"memcached at {host.address} is unavailable: {exc!r}") from exc
        except aiomcache.ClientException as exc:
            raise ComponentError(f"memcached at {host.address}: {exc}") from exc

    # ---- reads ----
    async def get(self, request: state.GetRequest) -> state.GetResponse | None:
        key = check_key(request.key)
        host = self._host(key)
        value = await self._call(host, host.client.get(key))
        return None if value is None else state.GetResponse(value)

    async def _get_many(self, host: _Host, keys: list[bytes]) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        for start in range(0, len(keys), _KEYS_PER_GET):
            chunk = keys[start : start + _KEYS_PER_GET]
            values = await self._call(host, host.client.multi_get(*chunk))
            found.update((k, v) for k, v in zip(chunk, values, strict=True) if v is not None)
        return found

    async def bulk_get(self, requests: Sequence[state.GetRequest], parallelism: int = 0) -> list[state.BulkGetItem]:
        """One multi-get per host; a malformed key is its item's error, an unreachable host the
        call's."""
        keys: list[bytes | None] = []
        errors: dict[int, str] = {}
        by_host: dict[int, dict[bytes, None]] = {}
        for i, req in enumerate(requests):
            try:
                key = check_key(req.key)
            except InvalidArgumentError as exc:
                keys.append(None)
                errors[i] = str(exc)
                continue
            keys.append(key)
            by_host.setdefault(id(self._host(key)), {})[key] = None
        hosts = {id(h): h for h in self._hosts}
        replies = await asyncio.gather(*(self._get_many(hosts[h], list(ks)) for h, ks in by_host.items()))
        found = {k: v for reply in replies for k, v in reply.items()}
        items: list[state.BulkGetItem] = []
        for i, (req, stored) in enumerate(zip(requests, keys, strict=True)):
            if stored is None:
                items.append(state.BulkGetItem(req.key, None, errors[i]))
            else:
                value = found.get(stored)
                items.append(state.BulkGetItem(req.key, None if value is None else state.GetResponse(value)))
        return items

    # ---- writes ----
    async def set(self, request: state.SetRequest) -> None:
        if request.etag:
            raise unsupported(self, state.StateFeature.ETAG, "etags")
        key = check_key(request.key)
        exptime = expiry(state.ttl_seconds(request.metadata, self.max_ttl_seconds()))
        host = self._host(key)
        if request.concurrency == state.FIRST_WRITE:
            if not await self._call(host, host.client.add(key, request.value, exptime)):
                raise ETagMismatchError(f"first-write: key {request.key} already exists")
            return
        if not await self._call(host, host.client.set(key, request.value, exptime)):
            raise ComponentError(f"failed to set key {request.key}: not stored")

    async def delete(self, request: state.DeleteRequest) -> None:
        if request.etag:
            raise unsupported(self, state.StateFeature.ETAG, "etags")
        key = check_key(request.key)
        host = self._host(key)
        await self._call(host, host.client.delete(key))  # a missing key is no error, as upstream

    async def _each(self, calls: list[Awaitable[None]]) -> None:
        """Run `calls` at once (not atomically, as upstream's bulk calls); raise the first failure."""
        limit = asyncio.Semaphore(_BULK_PARALLELISM)

        async def bounded(call: Awaitable[None]) -> None:
            async with limit:
                await call

        results = await asyncio.gather(*(bounded(c) for c in calls), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def bulk_set(self, requests: Sequence[state.SetRequest]) -> None:
        for req in requests:  # refuse a malformed request before writing anything
            if req.etag:
                raise unsupported(self, state.StateFeature.ETAG, "etags")
            check_key(req.key)
            state.ttl_seconds(req.metadata, self.max_ttl_seconds())
        await self._each([self.set(req) for req in requests])

    async def bulk_delete(self, requests: Sequence[state.DeleteRequest]) -> None:
        for req in requests:
            if req.etag:
                raise unsupported(self, state.StateFeature.ETAG, "etags")
            check_key(req.key)
        await self._each([self.delete(req) for req in requests])

    async def ping(self) -> None:
        """`version` on every host, as upstream's Ping."""
        for host in self._hosts:
            await self._call(host, host.client.version())

    async def close(self) -> None:
        hosts, self._hosts = self._hosts, []
        for host in hosts:
            try:
                await host.client.close()
            except Exception:  # closing sockets of a server that is gone; nothing to release
                pass
