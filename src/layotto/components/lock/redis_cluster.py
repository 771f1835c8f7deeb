"""Redlock over independent Redis servers (upstream type `redis_cluster`, metadata `redisHosts`).

The lock is held when a majority of the nodes accepted `SET NX EX` within the drift allowance
of expire/10 (as upstream); otherwise whatever was taken is released again. Unlock and
keep-alive run the owner-checked scripts on every node. See docs/lock.md for what this does
and does not guarantee.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from layotto.components._drivers import redis as redis_driver
from layotto.components.base import ComponentContext, Metadata
from layotto.components.lock import _redis_scripts as scripts
from layotto.components.lock import base as lock
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError

T = TypeVar("T")


class _Node:
    def __init__(self, address: str, client: redis_driver.Client) -> None:
        self.address = address
        self.client = client
        self.unlock = client.register_script(scripts.UNLOCK)
        self.keep_alive = client.register_script(scripts.KEEP_ALIVE)


class RedisClusterLock(lock.LockStore):
    metadata_keys = ("redisHosts", "concurrency", *redis_driver.CLIENT_METADATA_KEYS)
    features = frozenset({lock.LockFeature.KEEP_ALIVE})
    _nodes: list[_Node]

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        hosts = metadata.get_list("redisHosts")
        if not hosts:
            raise ConfigError("redis store error: missing host address", f"{metadata.where}.metadata.redisHosts")
        nodes = [redis_driver.RedisSettings.from_metadata(metadata, address=h) for h in hosts]
        self._nodes = [_Node(node.address, redis_driver.connect(node)) for node in nodes]
        self._quorum = len(self._nodes) // 2 + 1
        concurrency = metadata.get_int("concurrency", 0) or (os.cpu_count() or 1)
        self._slots = asyncio.Semaphore(max(1, concurrency))
        await self.ping()

    async def _on_all(
        self, action: Callable[[_Node], Awaitable[T]], within: float | None = None, nodes: list[_Node] | None = None
    ) -> list[T | BaseException]:
        """`action` on every node at once (at most `concurrency` in flight); errors are returned."""

        async def one(node: _Node) -> T:
            async with self._slots:
                return await action(node)

        tasks = [asyncio.ensure_future(one(n)) for n in (self._nodes if nodes is None else nodes)]
        _, pending = await asyncio.wait(tasks, timeout=within)
        for task in pending:
            task.cancel()
        results: list[T | BaseException] = []
        for task in tasks:
            if task in pending:
                results.append(TimeoutError("no answer within the lock's drift allowance"))
            elif (exc := task.exception()) is not None:
                results.append(exc)
            else:
                results.append(task.result())
        return results

    def _unavailable(self, errors: list[tuple[_Node, BaseException]]) -> BackendUnavailableError:
        detail = "; ".join(f"{n.address}: {e}" for n, e in errors)
        return BackendUnavailableError(
            f"redis_cluster lock: fewer than {self._quorum} of {len(self._nodes)} redis nodes answered ({detail})"
        )

    def _split(self, results: list[Any]) -> tuple[list[Any], list[tuple[_Node, BaseException]]]:
        answers: list[Any] = []
        errors: list[tuple[_Node, BaseException]] = []
        for node, result in zip(self._nodes, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, (RedisError, OSError, TimeoutError)):
                    raise result
                errors.append((node, result))
            else:
                answers.append(result)
        return answers, errors

    async def ping(self) -> None:
        results = await self._on_all(lambda n: n.client.ping())
        answers, errors = self._split(results)
        if len(answers) < self._quorum:
            raise self._unavailable(errors)

    async def try_lock(self, request: lock.TryLockRequest) -> bool:
        started = time.monotonic()
        allowance = request.expire / 10
        results = await self._on_all(
            lambda n: n.client.set(request.key, request.owner, ex=request.expire, nx=True), within=allowance
        )
        elapsed = time.monotonic() - started
        answers, errors = self._split(results)
        taken = sum(1 for a in answers if a)
        if taken >= self._quorum and elapsed < allowance:
            return True
        # Undo only this attempt: where SET answered yes, or timed out (it may have applied).
        # Nodes that said no may hold this very owner's earlier lock, which must stay.
        ambiguous = (TimeoutError, RedisTimeoutError)
        undo = [n for n, r in zip(self._nodes, results, strict=True) if r is True or isinstance(r, ambiguous)]
        await self._release(request.key, request.owner, undo)
        # Too few nodes answering at all is an outage, whatever the time it took to find out.
        if len(answers) < self._quorum:
            raise self._unavailable(errors)
        if elapsed >= allowance:
            raise ComponentError(f"[ClusterRedisLock]: lock timeout. ResourceId: {request.key}")
        return False

    async def _release(self, key: str, owner: str, nodes: list[_Node] | None = None) -> list[int | BaseException]:
        chosen = self._nodes if nodes is None else nodes
        if not chosen:
            return []
        return await self._on_all(lambda n: n.unlock(keys=[key], args=[owner]), nodes=chosen)

    async def unlock(self, request: lock.UnlockRequest) -> lock.LockStatus:
        answers, errors = self._split(await self._release(request.key, request.owner))
        statuses = [scripts.status_of(int(a)) for a in answers]
        if lock.LockStatus.SUCCESS in statuses:
            return lock.LockStatus.SUCCESS
        if len(answers) < self._quorum:
            raise self._unavailable(errors)
        if lock.LockStatus.LOCK_BELONG_TO_OTHERS in statuses:
            return lock.LockStatus.LOCK_BELONG_TO_OTHERS
        return lock.LockStatus.LOCK_UNEXIST

    async def keep_alive(self, request: lock.KeepAliveRequest) -> lock.LockStatus:
        results = await self._on_all(
            lambda n: n.keep_alive(keys=[request.key], args=[request.owner, request.expire]),
            within=request.expire / 10,
        )
        answers, errors = self._split(results)
        statuses = [scripts.status_of(int(a)) for a in answers]
        if statuses.count(lock.LockStatus.SUCCESS) >= self._quorum:
            return lock.LockStatus.SUCCESS
        if len(answers) < self._quorum:
            raise self._unavailable(errors)
        others = statuses.count(lock.LockStatus.LOCK_BELONG_TO_OTHERS)
        return lock.LockStatus.LOCK_BELONG_TO_OTHERS if others >= self._quorum else lock.LockStatus.LOCK_UNEXIST

    async def close(self) -> None:
        for node in getattr(self, "_nodes", []):
            await node.client.aclose()
