"""Lock in ZooKeeper (type `zookeeper`): one znode `/<key>` per held lock.

Upstream makes the znode ephemeral on a session per lock whose timeout is the lock's expire;
ZooKeeper clamps session timeouts (by default to 4-40 s), so that expiry is not the one asked
for, and a lock vanishes when its sidecar's session does, before it expires. Here the znode is
persistent and holds `{"owner", "expiresAt"}` (ms since the epoch): it is free once that
moment has passed, neither earlier nor later. Taking over an expired lock, unlock and
keep-alive are version-checked writes (compare-and-set on the znode's version), so two
sidecars can never both win. Sidecars compare expiry with their own clocks, which therefore
must be synchronised to well under the shortest expire used (see docs/lock.md).
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, TypeVar

import aiozk
from aiozk import exc as zk_errors
from aiozk import protocol

from layotto.components._drivers import zookeeper
from layotto.components.base import ComponentContext, Metadata
from layotto.components.lock import base as lock
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _Held:
    owner: str
    expires_at_ms: int
    nonce: str
    version: int

    @property
    def live(self) -> bool:
        return self.expires_at_ms > time.time() * 1000


def _encode(owner: str, expire_s: int, nonce: str) -> bytes:
    expires = int(time.time() * 1000) + expire_s * 1000
    return json.dumps({"owner": owner, "expiresAt": expires, "nonce": nonce}).encode()


def _decode(data: bytes | None, version: int) -> _Held:
    try:
        doc = json.loads(data or b"")
        return _Held(str(doc["owner"]), int(doc["expiresAt"]), str(doc.get("nonce", "")), version)
    except (ValueError, KeyError, TypeError):
        # Not ours (e.g. an upstream sidecar's bare-owner znode): held by that owner, no known expiry.
        return _Held((data or b"").decode(errors="replace"), 2**62, "", version)


class ZookeeperLock(lock.LockStore):
    metadata_keys = ("zookeeperHosts", "SessionTimeout", "operationTimeout", *zookeeper.AUTH_METADATA_KEYS)
    features = frozenset({lock.LockFeature.KEEP_ALIVE})
    _client: aiozk.ZKClient | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self._hosts = zookeeper.hosts(metadata)
        if not self._hosts:
            where = f"{metadata.where}.metadata.zookeeperHosts"
            raise ConfigError("zookeeper lock error: missing zookeeperHosts", where)
        session = metadata.get_duration("SessionTimeout", 5.0)
        # How long one operation may wait for ZooKeeper, reconnects included.
        self._timeout = metadata.get_duration("operationTimeout", max(10.0, 2 * session))
        self._client = zookeeper.client(
            self._hosts,
            zookeeper.credential(metadata),
            session_timeout=max(2, round(session)),
            retry_policy=aiozk.RetryPolicy.until_elapsed(self._timeout),
        )
        await self._guard(self._client.start())

    async def _guard(self, call: Awaitable[T]) -> T:
        try:
            return await zookeeper.bounded(self._zk, call, self._timeout)
        except zookeeper.UNAVAILABLE as exc:
            raise BackendUnavailableError(f"zookeeper at {self._hosts} is unavailable: {exc!r}") from exc
        except zk_errors.ZKError as exc:
            raise ComponentError(f"zookeeper lock error: {exc!r}") from exc

    @property
    def _zk(self) -> aiozk.ZKClient:
        assert self._client is not None
        return self._client

    @staticmethod
    def _path(key: str) -> str:
        # A znode name cannot hold '/', which would address a child of a missing parent.
        return "/" + key.replace("%", "%25").replace("/", "%2F")

    async def _read(self, path: str) -> _Held | None:
        try:
            data, stat = await self._guard(self._zk.get(path))
        except ComponentError as exc:
            if isinstance(exc.__cause__, zk_errors.NoNode):
                return None
            raise
        return _decode(data, stat.version)

    async def _send(self, request: Any) -> bool:
        """A version-checked write: False when the znode changed or vanished meanwhile."""
        try:
            await self._guard(self._zk.send(request))
        except ComponentError as exc:
            if isinstance(exc.__cause__, (zk_errors.NoNode, zk_errors.BadVersion)):
                return False
            raise
        return True

    async def ping(self) -> None:
        await self._guard(self._zk.exists("/"))

    async def try_lock(self, request: lock.TryLockRequest) -> bool:
        path = self._path(request.key)
        nonce = uuid.uuid4().hex
        for _ in range(2):
            data = _encode(request.owner, request.expire, nonce)
            try:
                await self._guard(self._zk.create(path, data))
                return True
            except ComponentError as exc:
                if not isinstance(exc.__cause__, zk_errors.NodeExists):
                    raise
            held = await self._read(path)
            if held is None:
                continue  # unlocked in between: try to create again
            if held.nonce == nonce:
                return True  # our create went through before a reconnect made the client retry it
            if held.live:
                return False
            normalized = self._zk.normalize_path(path)
            return await self._send(protocol.SetDataRequest(path=normalized, data=data, version=held.version))
        return False

    async def unlock(self, request: lock.UnlockRequest) -> lock.LockStatus:
        path = self._path(request.key)
        for _ in range(3):
            held = await self._read(path)
            if held is None:
                return lock.LockStatus.LOCK_UNEXIST
            delete = protocol.DeleteRequest(path=self._zk.normalize_path(path), version=held.version)
            if not held.live:
                await self._send(delete)  # tidy up an expired znode; nobody holds it
                return lock.LockStatus.LOCK_UNEXIST
            if held.owner != request.owner:
                return lock.LockStatus.LOCK_BELONG_TO_OTHERS
            if await self._send(delete):
                return lock.LockStatus.SUCCESS
        raise ComponentError(f"zookeeper lock: unlock of {request.key} kept racing with other updates")

    async def keep_alive(self, request: lock.KeepAliveRequest) -> lock.LockStatus:
        path = self._path(request.key)
        for _ in range(3):
            held = await self._read(path)
            if held is None or not held.live:
                return lock.LockStatus.LOCK_UNEXIST
            if held.owner != request.owner:
                return lock.LockStatus.LOCK_BELONG_TO_OTHERS
            data = _encode(request.owner, request.expire, held.nonce)
            update = protocol.SetDataRequest(path=self._zk.normalize_path(path), data=data, version=held.version)
            if await self._send(update):
                return lock.LockStatus.SUCCESS
        raise ComponentError(f"zookeeper lock: keep-alive of {request.key} kept racing with other updates")

    async def close(self) -> None:
        if self._client is not None:
            try:
                await asyncio.wait_for(self._client.close(), 5)
            except Exception:
                pass
            self._client = None
