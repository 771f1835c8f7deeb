"""ZooKeeper state store (type `zookeeper`), with the metadata and znode layout of Dapr
components-contrib's state/zookeeper.

A key's value is the data of the znode `path.Join(keyPrefixPath, key)` (Go's join: '/' in a key
addresses a child znode, whose parent must exist, as upstream), so sidecars of either
implementation share data. The etag is the znode's version, and every write is version-checked
by ZooKeeper itself: a save with an etag is `setData(version)`, a first-write save is `create`, a
delete with an etag is `delete(version)`. Upstream creates a znode at version 0 and a first save
then reads etag "0", which Layotto's APIs take for "no etag"; here a new znode is created and
set in one multi, so a first save yields etag "1" as on every other store. Bulk saves and bulk
deletes are one multi each, as upstream, so either all of a bulk call applies or none.

Features are upstream's: etags only (no TTL, and no transactions, though ZooKeeper's multi
could carry them).

Where this differs from upstream, on purpose: an etag on a missing key is a mismatch (upstream
creates the key on a save and ignores the etag on a delete); first-write without an etag
refuses an existing key (upstream overwrites it); a malformed, negative or out-of-range etag is
refused (upstream drops it, making the write unconditional); a key that would leave
`keyPrefixPath` ('..') is refused; the prefix znodes are created at start (upstream fails every
write until someone creates them); and `maxBufferSize` / `maxConnBufferSize`, go-zookeeper's
receive and send buffers there, bound the value read and the request sent here.
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiozk
from aiozk import exc as zk_errors
from aiozk import protocol

from layotto.components._drivers import zookeeper
from layotto.components.base import ComponentContext, Metadata, parse_duration, unsupported
from layotto.components.state import base as state
from layotto.errors import (
    BackendUnavailableError,
    ComponentError,
    ConfigError,
    ETagInvalidError,
    ETagMismatchError,
    InvalidArgumentError,
)

T = TypeVar("T")

#: Upstream's defaults for the largest reply and the largest request (go-zookeeper's buffers).
DEFAULT_BUFFER_SIZE = 1024 * 1024
_ANY_VERSION = -1
_MAX_VERSION = 2**31 - 1
#: What a request carries besides its data and path (header, lengths, ACL), for the size check.
_REQUEST_OVERHEAD = 64
#: Multis a bulk save retries as it learns which keys exist (each retry means another writer
#: created or deleted one of its keys in between).
_MAX_ATTEMPTS = 64
_BULK_GET_PARALLELISM = 64
#: Errors a failed multi gives the operations other than the one that failed.
_NOT_THE_CAUSE = (zk_errors.RolledBack, zk_errors.RuntimeInconsistency)


def clean(path: str) -> str:
    """Go's path.Clean of an absolute path."""
    return "/" + posixpath.normpath(path).lstrip("/")


@dataclass(slots=True)
class _Write:
    """One save as the multi carries it, and what its outcome may change about it."""

    key: str
    path: str
    data: bytes
    version: int
    #: Create the znode (at version 1) rather than set it.
    create: bool
    #: No etag and no first-write: a missing znode is created, an existing one set.
    either: bool


class ZookeeperStateStore(state.StateStore):
    metadata_keys = ("servers", "sessionTimeout", "maxBufferSize", "maxConnBufferSize", "keyPrefixPath")
    features = frozenset({state.StateFeature.ETAG})
    _client: aiozk.ZKClient | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        where = f"{metadata.where}.metadata" if metadata.where else "metadata"
        self._servers = ",".join(metadata.get_list("servers"))
        if not self._servers:
            raise ConfigError("servers are required", f"{where}.servers")
        try:
            session = parse_duration(metadata.get_str("sessionTimeout"))
        except ValueError:
            raise ConfigError("sessionTimeout is invalid", f"{where}.sessionTimeout") from None
        self._max_reply = metadata.get_int("maxBufferSize")
        if self._max_reply <= 0:
            self._max_reply = DEFAULT_BUFFER_SIZE
        self._max_request = metadata.get_int("maxConnBufferSize")
        if self._max_request <= 0:
            self._max_request = DEFAULT_BUFFER_SIZE
        self._base = clean("/" + metadata.get_str("keyPrefixPath"))
        self._under = self._base.rstrip("/") + "/"
        # How long one operation may wait for ZooKeeper, reconnects included (as the lock's).
        self._limit = max(10.0, 2 * session)
        self._client = aiozk.ZKClient(
            self._servers,
            session_timeout=max(2, round(session)),
            retry_policy=aiozk.RetryPolicy.until_elapsed(self._limit),
        )
        try:
            await self._call(self._client.start())
            await self._ensure_base()
        except BaseException:
            await self.close()
            raise

    # ---- plumbing ----
    @property
    def _zk(self) -> aiozk.ZKClient:
        assert self._client is not None, "zookeeper state store is not initialised"
        return self._client

    async def _call(self, call: Awaitable[T]) -> T:
        """`call` bounded in time; an unreachable ensemble is BackendUnavailableError, ZooKeeper's
        answers (NoNode, BadVersion, ...) are raised as they are."""
        try:
            return await zookeeper.bounded(self._zk, call, self._limit)
        except zookeeper.UNAVAILABLE as exc:
            raise BackendUnavailableError(f"zookeeper at {self._servers} is unavailable: {exc!r}") from exc

    async def _send(self, request: Any) -> Any:
        # The session, not ZKClient.send: that one caches the stat of every path it touches,
        # forever, which for a state store is one entry per key ever used.
        return await self._call(self._zk.session.send(request))

    async def _ensure_base(self) -> None:
        """Create the prefix znodes, persistent (aiozk's ensure_path makes containers, which
        ZooKeeper deletes with their last child)."""
        path = ""
        for name in self._base.strip("/").split("/") if self._base != "/" else []:
            path += "/" + name
            create = protocol.CreateRequest(path=path, data=b"", acl=self._zk.default_acl)
            create.set_flags()
            try:
                await self._send(create)
            except zk_errors.NodeExists:
                pass

    def _path(self, key: str) -> str:
        path = clean(self._under + key)
        if not path.startswith(self._under) or path == self._under:
            raise InvalidArgumentError(f"key {key!r} does not name a znode under keyPrefixPath {self._base!r}")
        return path

    @staticmethod
    def _version(etag: str) -> int:
        version = state.parse_version(etag)
        if version > _MAX_VERSION:
            raise ETagInvalidError(f"invalid etag value: {etag[:40]} is out of range (at most {_MAX_VERSION})")
        return version

    def check_etag(self, etag: str) -> None:
        # A znode's version is a signed 32-bit number.
        self._version(etag)

    def _fits(self, requests: Sequence[tuple[str, bytes]]) -> None:
        size = sum(len(path.encode()) + len(data) + _REQUEST_OVERHEAD for path, data in requests)
        if size > self._max_request:
            raise InvalidArgumentError(
                f"the request ({size} bytes) exceeds maxConnBufferSize ({self._max_request} bytes)"
            )

    @staticmethod
    def _failure(exc: zk_errors.ZKError, key: str) -> ComponentError:
        if isinstance(exc, zk_errors.BadArguments):
            return InvalidArgumentError(f"zookeeper refused key {key!r}: {exc}")
        return ComponentError(f"zookeeper state store failed on key {key!r}: {exc}")

    async def _multi(self, ops: list[Any]) -> tuple[int, zk_errors.ZKError] | None:
        """Apply `ops` atomically; None, or the failing op's index and ZooKeeper's reason."""
        if len(ops) == 1:
            try:
                await self._send(ops[0])
            except zk_errors.ZKError as exc:
                return 0, exc
            return None
        transaction = protocol.TransactionRequest()
        for op in ops:
            transaction.add(op)
        response = await self._send(transaction)
        for i, reply in enumerate(response.responses):
            if isinstance(reply, zk_errors.ZKError) and not isinstance(reply, _NOT_THE_CAUSE):
                return i, reply
        return None

    # ---- reads ----
    async def get(self, request: state.GetRequest) -> state.GetResponse | None:
        path = self._path(request.key)
        try:
            response = await self._send(protocol.GetDataRequest(path=path, watch=False))
        except zk_errors.NoNode:
            return None
        except zk_errors.ZKError as exc:
            raise self._failure(exc, request.key) from exc
        data: bytes = response.data or b""
        if len(data) > self._max_reply:
            raise ComponentError(
                f"the value of {request.key!r} ({len(data)} bytes) exceeds maxBufferSize ({self._max_reply} bytes)"
            )
        return state.GetResponse(data, str(response.stat.version))

    async def bulk_get(self, requests: Sequence[state.GetRequest], parallelism: int = 0) -> list[state.BulkGetItem]:
        """Concurrent gets (one connection carries them all); a key's failure is its item's
        error, an unreachable ensemble the call's."""
        limit = asyncio.Semaphore(parallelism if parallelism > 0 else _BULK_GET_PARALLELISM)

        async def one(req: state.GetRequest) -> state.BulkGetItem:
            async with limit:
                try:
                    return state.BulkGetItem(req.key, await self.get(req))
                except BackendUnavailableError:
                    raise
                except ComponentError as exc:
                    return state.BulkGetItem(req.key, None, str(exc))

        return list(await asyncio.gather(*(one(r) for r in requests)))

    # ---- writes ----
    def _write(self, request: state.SetRequest) -> _Write:
        ttl = state.ttl_seconds(request.metadata)
        if ttl is not None and ttl > 0:
            raise unsupported(self, state.StateFeature.TTL, "TTL")
        path = self._path(request.key)
        if request.etag:
            return _Write(request.key, path, request.value, self._version(request.etag), False, False)
        if request.concurrency == state.FIRST_WRITE:
            return _Write(request.key, path, request.value, _ANY_VERSION, True, False)
        return _Write(request.key, path, request.value, _ANY_VERSION, False, True)

    def _ops(self, write: _Write) -> list[Any]:
        if not write.create:
            return [protocol.SetDataRequest(path=write.path, data=write.data, version=write.version)]
        # Created empty and set in the same multi: the znode's version (the etag) starts at 1,
        # and the value travels once.
        create = protocol.CreateRequest(path=write.path, data=b"", acl=self._zk.default_acl)
        create.set_flags()
        return [create, protocol.SetDataRequest(path=write.path, data=write.data, version=0)]

    async def _save(self, writes: list[_Write]) -> None:
        """One multi of `writes`, again after each answer that tells a key exists or not."""
        if not writes:
            return
        self._fits([(w.path, w.data) for w in writes])
        base_ensured = False
        for _ in range(_MAX_ATTEMPTS):
            ops: list[Any] = []
            owners: list[_Write] = []
            for write in writes:
                write_ops = self._ops(write)
                ops.extend(write_ops)
                owners.extend([write] * len(write_ops))
            failed = await self._multi(ops)
            if failed is None:
                return
            index, reason = failed
            write = owners[index]
            if isinstance(reason, zk_errors.NoNode):
                if write.either and not write.create:
                    write.create = True
                    continue
                if not write.create:
                    raise ETagMismatchError(f"possible etag mismatch: key {write.key} does not exist")
                if not base_ensured:
                    base_ensured = True  # someone removed keyPrefixPath's znodes meanwhile
                    await self._ensure_base()
                    continue
                raise ComponentError(f"the parent znode of key {write.key!r} does not exist")
            if isinstance(reason, zk_errors.NodeExists):
                if write.either:
                    write.create = False
                    continue
                raise ETagMismatchError(f"first-write: key {write.key} already exists")
            if isinstance(reason, zk_errors.BadVersion):
                raise ETagMismatchError(f"possible etag mismatch: failed to set key {write.key}")
            raise self._failure(reason, write.key)
        raise ComponentError("zookeeper state store: keys kept being created and deleted by other writers")

    async def set(self, request: state.SetRequest) -> None:
        await self._save([self._write(request)])

    async def bulk_set(self, requests: Sequence[state.SetRequest]) -> None:
        await self._save([self._write(r) for r in requests])

    def _delete_op(self, request: state.DeleteRequest) -> protocol.DeleteRequest:
        version = self._version(request.etag) if request.etag else _ANY_VERSION
        return protocol.DeleteRequest(path=self._path(request.key), version=version)

    async def _remove(self, requests: Sequence[state.DeleteRequest]) -> None:
        """One multi of the deletes; a missing key is no error without an etag (and is left out
        on a retry), and a mismatch with one."""
        pending = list(zip(requests, (self._delete_op(r) for r in requests), strict=True))
        while pending:
            failed = await self._multi([op for _, op in pending])
            if failed is None:
                return
            index, reason = failed
            request = pending[index][0]
            if isinstance(reason, zk_errors.NoNode) and not request.etag:
                del pending[index]
                continue
            if isinstance(reason, (zk_errors.NoNode, zk_errors.BadVersion)):
                raise ETagMismatchError(f"possible etag mismatch: failed to delete {request.key}")
            if isinstance(reason, zk_errors.NotEmpty):
                raise ComponentError(f"key {request.key!r} has keys under it ({request.key}/...): not deleted")
            raise self._failure(reason, request.key)

    async def delete(self, request: state.DeleteRequest) -> None:
        await self._remove([request])

    async def bulk_delete(self, requests: Sequence[state.DeleteRequest]) -> None:
        await self._remove(requests)

    async def ping(self) -> None:
        await self._send(protocol.ExistsRequest(path="/", watch=False))

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            try:
                await asyncio.wait_for(client.close(), 5)
            except Exception:  # closing a session whose server is gone; nothing to release
                pass
