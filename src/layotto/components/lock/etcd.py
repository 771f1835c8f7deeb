"""Lock on etcd v3 (upstream type `etcd`): one lease per lock, put-if-absent in a transaction.

The lock key is `keyPrefixPath` + key and holds the owner; it is attached to a lease whose
TTL is the lock's expire, so etcd itself deletes it when the holder stops renewing.
Keep-alive moves the key to a fresh lease of the requested TTL (owner- and revision-checked)
and revokes the old one, because an etcd lease refresh can only restore the lease's
original TTL.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aetcd
import aetcd.exceptions as etcd_errors

from layotto.components._drivers import etcd
from layotto.components.base import ComponentContext, Metadata
from layotto.components.lock import base as lock
from layotto.errors import ComponentError, ConfigError

T = TypeVar("T")

DEFAULT_PREFIX = "/layotto/"
#: Errors after which the request cannot have reached etcd, so another endpoint may be tried.
_NOT_SENT = (etcd_errors.ConnectionFailedError,)


class EtcdLock(lock.LockStore):
    features = frozenset({lock.LockFeature.KEEP_ALIVE})
    _clients: list[aetcd.Client]

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        where = f"{metadata.where}.metadata.endpoints"
        endpoints = etcd.parse_endpoints(metadata.get_str("endpoints"), where)
        if not endpoints:
            raise ConfigError("etcd lock error: missing endpoints address", where)
        self._where = etcd.address(endpoints)
        timeout = metadata.get_duration("dialTimeout", 5.0)
        self._prefix = metadata.get_str("keyPrefixPath") or DEFAULT_PREFIX
        self._clients = [etcd.connect(endpoint, metadata, timeout) for endpoint in endpoints]
        self._current = 0
        await self.ping()

    async def _call(self, op: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """Run `op` on the current endpoint, moving on to the next when one cannot be reached."""
        last: BaseException | None = None
        for _ in self._clients:
            client = self._clients[self._current]
            try:
                return await op(client)
            except _NOT_SENT as exc:
                last = exc
                self._current = (self._current + 1) % len(self._clients)
            except etcd.UNAVAILABLE as exc:
                raise etcd.unavailable(self._where, exc) from exc
            except etcd_errors.ClientError as exc:
                raise ComponentError(f"[etcdLock]: {exc}") from exc
        assert last is not None
        raise etcd.unavailable(self._where, last) from last

    def _key(self, key: str) -> bytes:
        return (self._prefix + key).encode()

    async def ping(self) -> None:
        await self._call(lambda c: c.status())

    async def try_lock(self, request: lock.TryLockRequest) -> bool:
        key = self._key(request.key)
        succeeded, lease_id = await self._put_on_new_lease(
            key, request.owner, request.expire, lambda t: t.create(key) == 0
        )
        if not succeeded:
            await self._revoke_quietly(lease_id)
        return succeeded

    async def _put_on_new_lease(
        self, key: bytes, owner: str, ttl: int, condition: Callable[[Any], Any]
    ) -> tuple[bool, int]:
        """Put `owner` at `key` on a fresh lease of `ttl` seconds if `condition` (over the
        client's transactions) holds; whether it did, and the new lease (revoked on an error)."""
        lease = await self._call(lambda c: c.lease(ttl))

        async def txn(c: aetcd.Client) -> Any:
            return await c.transaction(
                compare=[condition(c.transactions)],
                success=[c.transactions.put(key, owner.encode(), lease=lease.id)],
                failure=[],
            )

        try:
            succeeded, _ = await self._call(txn)
        except BaseException:
            await self._revoke_quietly(lease.id)
            raise
        return bool(succeeded), lease.id

    async def _revoke_quietly(self, lease_id: int) -> None:
        # An unused lease expires on its own; revoking it early just keeps etcd tidy.
        try:
            await self._call(lambda c: c.revoke_lease(lease_id))
        except ComponentError:
            pass

    async def _holder(self, key: bytes) -> Any:
        return await self._call(lambda c: c.get(key))

    @staticmethod
    def _status(held: Any, owner: str) -> lock.LockStatus:
        if held is None:
            return lock.LockStatus.LOCK_UNEXIST
        return lock.LockStatus.SUCCESS if held.value == owner.encode() else lock.LockStatus.LOCK_BELONG_TO_OTHERS

    async def unlock(self, request: lock.UnlockRequest) -> lock.LockStatus:
        key = self._key(request.key)
        owner = request.owner.encode()

        async def txn(c: aetcd.Client) -> Any:
            return await c.transaction(
                compare=[c.transactions.value(key) == owner],
                success=[c.transactions.delete(key)],
                failure=[c.transactions.get(key)],
            )

        succeeded, responses = await self._call(txn)
        if succeeded:
            return lock.LockStatus.SUCCESS
        return lock.LockStatus.LOCK_BELONG_TO_OTHERS if responses and responses[0] else lock.LockStatus.LOCK_UNEXIST

    async def keep_alive(self, request: lock.KeepAliveRequest) -> lock.LockStatus:
        key = self._key(request.key)
        # Retried only when the same owner changed the key meanwhile (a concurrent keep-alive).
        for _ in range(3):
            held = await self._holder(key)
            status = self._status(held, request.owner)
            if status is not lock.LockStatus.SUCCESS:
                return status
            if await self._move_to_new_lease(key, held, request):
                return lock.LockStatus.SUCCESS
        raise ComponentError(f"[etcdLock]: keep-alive of {request.key} kept racing with other updates")

    async def _move_to_new_lease(self, key: bytes, held: Any, request: lock.KeepAliveRequest) -> bool:
        # The revision check makes sure the lock we looked at is still the same one.
        succeeded, lease_id = await self._put_on_new_lease(
            key, request.owner, request.expire, lambda t: t.mod(key) == held.mod_revision
        )
        await self._revoke_quietly(held.lease if succeeded else lease_id)
        return succeeded

    async def close(self) -> None:
        for client in getattr(self, "_clients", []):
            try:
                await client.close()
            except Exception:
                pass
