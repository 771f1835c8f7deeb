"""Lock on etcd v3 (upstream type `etcd`): one lease per lock, put-if-absent in a transaction.

The lock key is `keyPrefixPath` + key and holds the owner; it is attached to a lease whose
TTL is the lock's expire, so etcd itself deletes it when the holder stops renewing.
Keep-alive moves the key to a fresh lease of the requested TTL (owner- and revision-checked)
and revokes the old one, because an etcd lease refresh can only restore the lease's
original TTL.

With several endpoints a call that a member cannot answer (it died, or lost its leader) goes
to the next member (`_drivers/etcd.Members`). Every write is a compare-guarded transaction, so
sending one again is safe: a TryLock whose first attempt did take the lock finds its own
lease on the key and reports it taken. A lock's lease lives on the cluster, not on a member,
and a new leader renews every lease to its full TTL (plus the election timeout): a failover
never ends a lock early, it may let one outlive a crashed holder by that much.
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


class EtcdLock(lock.LockStore):
    metadata_keys = ("endpoints", "keyPrefixPath", "dialTimeout", "username", "password", *etcd.TLS_METADATA_KEYS)
    features = frozenset({lock.LockFeature.KEEP_ALIVE})
    _members: etcd.Members | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        where = f"{metadata.where}.metadata.endpoints"
        endpoints = etcd.parse_endpoints(metadata.get_str("endpoints"), where)
        if not endpoints:
            raise ConfigError("etcd lock error: missing endpoints address", where)
        self._prefix = metadata.get_str("keyPrefixPath") or DEFAULT_PREFIX
        self._members = etcd.Members(endpoints, metadata, metadata.get_duration("dialTimeout", 5.0))
        await self.ping()

    async def _call(self, op: Callable[[aetcd.Client], Awaitable[T]]) -> T:
        """Run `op` on a member that answers (see `_drivers/etcd.Members`)."""
        assert self._members is not None, "init() was not called"
        try:
            return await self._members.call(op)
        except etcd_errors.ClientError as exc:
            raise ComponentError(f"[etcdLock]: {exc}") from exc

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
                failure=[c.transactions.get(key)],
            )

        try:
            succeeded, responses = await self._call(txn)
        except BaseException:
            await self._revoke_quietly(lease.id)
            raise
        if not succeeded:
            # Sent twice (the first reply lost with its member), the first one may have won:
            # the key then holds this owner on this very lease.
            found = responses[0] if responses else []
            held = found[0][1] if found else None
            succeeded = held is not None and held.value == owner.encode() and held.lease == lease.id
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
        if self._members is not None:
            await self._members.close()
