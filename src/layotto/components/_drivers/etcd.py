"""The one place etcd clients are made from upstream metadata, shared by lock, sequencer and
configuration: endpoint lists, credentials, TLS, the dial timeout, what counts as an outage,
and how a cluster's members are taken in turn when one fails (`Members`).

TLS is upstream's `tlsCa`, `tlsCert` and `tlsCertKey` (paths, or PEM text here too): the
members' certificates are verified against `tlsCa` (the system's CAs without it) and the host
dialled, and `tlsCert` is presented when given; an `https://` endpoint asks for TLS as well.
aetcd dials plaintext only, so `_TlsClient` is its client over a TLS channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions
import grpc
from aetcd import rpc, watcher
from aetcd.client import _handle_errors

from layotto.components.base import Metadata
from layotto.config import tls
from layotto.errors import BackendUnavailableError, ConfigError

T = TypeVar("T")

DEFAULT_PORT = 2379

#: The client's errors for "etcd cannot be reached right now".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    aetcd.exceptions.ConnectionFailedError,
    aetcd.exceptions.ConnectionTimeoutError,
    OSError,
    TimeoutError,
)


def parse_endpoints(raw: str | list[Any], where: str) -> list[tuple[str, int]]:
    """`host:port` entries separated by ';' (upstream) or ',', or a list of them; an `http://`
    or `https://` scheme is dropped, the port defaults to 2379. Empty when none is given."""
    parts = (
        [str(p) for p in raw] if isinstance(raw, list) else [p for chunk in raw.split(";") for p in chunk.split(",")]
    )
    endpoints: list[tuple[str, int]] = []
    for part in parts:
        text = part.strip().removeprefix("http://").removeprefix("https://")
        if not text:
            continue
        host, colon, port = text.rpartition(":")
        if not colon:
            endpoints.append((text, DEFAULT_PORT))
        elif port.isdigit():
            endpoints.append((host.strip("[]"), int(port)))
        else:
            raise ConfigError(f"bad etcd address {part!r}", where)
    return endpoints


#: Upstream's TLS keys (components/pkg/utils/etcd.go).
TLS_METADATA_KEYS = ("tlsCa", "tlsCert", "tlsCertKey")


def tls_material(metadata: Metadata) -> tls.Material | None:
    """The TLS of `metadata` (read and checked: a ConfigError names the key), None for plaintext."""
    where = f"{metadata.where}.metadata" if metadata.where else "metadata"
    ca, cert, key = (
        tls.pem(metadata.get_str(name), what, f"{where}.{name}")
        for name, what in zip(TLS_METADATA_KEYS, ("CA certificates", "certificate", "private key"), strict=True)
    )
    raw = metadata.get("endpoints") or metadata.get("address") or ""
    https = "https://" in (" ".join(map(str, raw)) if isinstance(raw, list) else str(raw))
    if ca is None and cert is None and key is None:
        return tls.Material() if https else None
    return tls.load_material(cert, key, ca)


class _TlsClient(aetcd.Client):  # type: ignore[misc]
    """aetcd's client over a TLS channel: its `connect`, dialling with `credentials`."""

    _connected: asyncio.Event
    _is_connecting: bool

    def __init__(self, *, credentials: grpc.ChannelCredentials, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._credentials = credentials

    @_handle_errors  # type: ignore[untyped-decorator]
    async def connect(self) -> None:
        if self._connected.is_set():
            return
        if self._is_connecting:
            await asyncio.wait_for(self._connected.wait(), self._connect_wait_timeout)
            return
        try:
            self._is_connecting = True
            target = f"{self._host}:{self._port}"
            self.channel = rpc.secure_channel(target, self._credentials, options=self._options.items())
            if self._username is not None and self._password is not None:
                self.auth_stub = rpc.AuthStub(self.channel)
                request = rpc.AuthenticateRequest(name=self._username, password=self._password)
                reply = await self.auth_stub.Authenticate(request, timeout=self._timeout)
                self.metadata = (("token", reply.token),)
            self.kvstub = rpc.KVStub(self.channel)
            self.clusterstub = rpc.ClusterStub(self.channel)
            self.leasestub = rpc.LeaseStub(self.channel)
            self.maintenancestub = rpc.MaintenanceStub(self.channel)
            self._watcher = watcher.Watcher(rpc.WatchStub(self.channel), timeout=self._timeout, metadata=self.metadata)
            self._connected.set()
        finally:
            self._is_connecting = False


def connect(
    endpoint: tuple[str, int], metadata: Metadata, timeout: float, material: tls.Material | None = None
) -> aetcd.Client:
    """A client of one endpoint with `username`/`password`, over TLS with `material`; `timeout`
    (whole seconds, at least 1) bounds both the dial and every call."""
    seconds = max(1, round(timeout))
    host, port = endpoint
    kwargs: dict[str, Any] = {
        "host": host,
        "port": port,
        "username": metadata.get_str("username") or None,
        "password": metadata.get_str("password") or None,
        "timeout": seconds,
        "connect_wait_timeout": seconds,
    }
    if material is None:
        return aetcd.Client(**kwargs)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=material.ca, private_key=material.key, certificate_chain=material.chain
    )
    return _TlsClient(credentials=credentials, **kwargs)


def address(endpoints: list[tuple[str, int]]) -> str:
    return ";".join(f"{host}:{port}" for host, port in endpoints)


def unavailable(where: str, exc: BaseException) -> BackendUnavailableError:
    return BackendUnavailableError(f"etcd at {where} is unavailable: {str(exc) or type(exc).__name__}")


#: A call that failed with these may be sent to another member: the one asked is unreachable,
#: hung, or cut off from the leader (etcd answers UNAVAILABLE while it elects a new one).
_ANOTHER_MEMBER = (aetcd.exceptions.ConnectionFailedError, aetcd.exceptions.ConnectionTimeoutError, TimeoutError)
#: After a member failed, for this long (an election and then some, at etcd's default 1 s
#: election timeout), attempts are cut short at PROBE seconds: a write a follower forwarded to
#: the dead leader is never answered, and is better sent again than waited for.
RECOVERING = 3.0
PROBE = 1.0
#: The pause between two rounds over every member, while none answers.
_ROUND_PAUSE = 0.05


def _member_is_there(exc: BaseException) -> bool:
    """Whether a failed call reached a running member: it timed out, or etcd itself answered
    (its errors read "etcdserver: ...", e.g. "no leader" during an election) -- worth waiting
    for, unlike a member that refuses the connection."""
    return isinstance(exc, (TimeoutError, aetcd.exceptions.ConnectionTimeoutError)) or "etcdserver:" in str(exc)


class Members:
    """The members of one etcd cluster (`endpoints`), as the lock, sequencer and configuration
    components reach them: a client per member, made on first use, one of them current.

    A call goes to the current member; when that one cannot answer it goes to the next, and
    the next becomes current, so the components follow a dying member (or leader) without a
    restart. While some member is there but cannot serve (the members are electing a new
    leader) the call keeps going round, for `timeout` seconds in all; when no member even
    takes the connection it is BackendUnavailableError at once. A request may reach etcd
    before its member fails, so what is sent again must be safe to repeat: every caller's
    writes are compare-guarded transactions, or idempotent puts.
    """

    def __init__(self, endpoints: list[tuple[str, int]], metadata: Metadata, timeout: float) -> None:
        self.endpoints = endpoints
        self.where = address(endpoints)
        self._metadata = metadata
        self._timeout = timeout
        self._tls = tls_material(metadata)
        self._clients: dict[int, aetcd.Client] = {}
        self._current = 0
        self._failed_at = float("-inf")

    def client(self) -> aetcd.Client:
        """The current member's client (for a watch, which outlives one call)."""
        found = self._clients.get(self._current)
        if found is None:
            found = self._clients[self._current] = connect(
                self.endpoints[self._current], self._metadata, self._timeout, self._tls
            )
        return found

    def failed(self, client: aetcd.Client) -> None:
        """`client`'s member did not answer: make the next member current, unless a concurrent
        caller has moved on already."""
        self._failed_at = time.monotonic()
        if self._clients.get(self._current) is client:
            self._current = (self._current + 1) % len(self.endpoints)

    async def call(self, op: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """`op` on the current member, then on the next ones while members cannot answer."""
        deadline = time.monotonic() + self._timeout
        last: BaseException | None = None
        worth_waiting = False
        for attempt in itertools.count(1):
            left = deadline - time.monotonic()
            if left <= 0:
                break
            recovering = time.monotonic() - self._failed_at < RECOVERING
            client = self.client()
            try:
                return await asyncio.wait_for(op(client), min(left, PROBE) if recovering else left)
            except _ANOTHER_MEMBER as exc:
                last = exc
                worth_waiting = worth_waiting or _member_is_there(exc)
                self.failed(client)
            except UNAVAILABLE as exc:
                raise unavailable(self.where, exc) from exc
            if attempt % len(self.endpoints) == 0:  # a round over every member
                if not worth_waiting:
                    break
                worth_waiting = False
                await asyncio.sleep(min(_ROUND_PAUSE, max(0.0, deadline - time.monotonic())))
        raise unavailable(self.where, last or TimeoutError(f"no answer within {self._timeout}s")) from last

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            with contextlib.suppress(Exception):  # closing must not raise
                await client.close()
