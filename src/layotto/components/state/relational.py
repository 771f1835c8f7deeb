"""What the SQL state stores (PostgreSQL, MySQL, SQLite) do alike.

Every write is a list of operations applied in one database transaction, all or nothing (a
single save is a list of one); a save's TTL falls back to the store's own `ttlInSeconds`; and
bulk writes with no condition (no etag, not first-write) may take a faster path the driver
offers (one multi-row statement).
"""

from __future__ import annotations

import asyncio
import logging
from abc import abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from layotto.components._drivers import sql
from layotto.components.base import Metadata
from layotto.components.state import base as state
from layotto.errors import BackendUnavailableError, ComponentError
from layotto.tasks import stop_task


class Executes(Protocol):
    def execute(self, query: str, /) -> Awaitable[Any]: ...


#: What a pooled store's calls run on (a cursor, a connection).
H = TypeVar("H", bound=Executes)
#: The pool of connections.
P = TypeVar("P")
T = TypeVar("T")


class SqlStateStore(state.StateStore):
    features = frozenset({state.StateFeature.ETAG, state.StateFeature.TRANSACTIONAL, state.StateFeature.TTL})
    #: The store's `ttlInSeconds`, for saves that name none.
    _default_ttl: int | None = None
    _purger: asyncio.Task[None] | None = None

    #: Bounds every call to the server.
    _timeout: float = sql.DEFAULT_TIMEOUT
    #: How errors name the server: its kind, and its address once init knows it.
    _describe: str = ""

    def _read_default_ttl(self, metadata: Metadata) -> None:
        self._default_ttl = state.default_ttl(metadata, self.max_ttl_seconds())

    @staticmethod
    def _connection_string(metadata: Metadata) -> tuple[str, str]:
        """The required `connectionString`, and where the config says it."""
        return metadata.required("connectionString"), f"{metadata.where}.metadata.connectionString"

    def _read_server_options(self, metadata: Metadata, describe: str) -> None:
        """The options a networked SQL store reads alike: TTL default, call timeout, and the
        name its errors give the server."""
        self._read_default_ttl(metadata)
        self._timeout = sql.call_timeout(metadata, "timeoutInSeconds", "timeout")
        self._describe = describe

    @abstractmethod
    async def _purge_expired(self) -> None:
        """Delete the rows whose TTL is over (reads skip them already)."""

    def _start_purger(
        self, metadata: Metadata, name: str, errors: tuple[type[BaseException], ...], log: logging.Logger
    ) -> None:
        self._purger = sql.start_purger(metadata, name, self._purge_expired, errors, log)

    async def _stop_purger(self) -> None:
        await stop_task(self._purger)
        self._purger = None

    def _ttl(self, request: state.SetRequest) -> int | None:
        """Seconds `request`'s value lives, or None for no expiry."""
        ttl = state.ttl_seconds(request.metadata, self.max_ttl_seconds())
        if ttl is None:
            ttl = self._default_ttl
        return ttl if ttl is not None and ttl > 0 else None

    @abstractmethod
    async def _run(self, operations: Sequence[state.Operation]) -> None:
        """Apply `operations`, in order, in one transaction."""

    async def _upsert_all(self, requests: Sequence[state.SetRequest]) -> None:
        """Save unconditional requests (more than one), all or nothing."""
        await self._run(requests)

    async def _delete_all(self, requests: Sequence[state.DeleteRequest]) -> None:
        """Delete unconditional requests (more than one), all or nothing."""
        await self._run(requests)

    async def set(self, request: state.SetRequest) -> None:
        await self._run((request,))

    async def delete(self, request: state.DeleteRequest) -> None:
        await self._run((request,))

    async def bulk_set(self, requests: Sequence[state.SetRequest]) -> None:
        if len(requests) > 1 and all(not r.etag and r.concurrency != state.FIRST_WRITE for r in requests):
            await self._upsert_all(requests)
        else:
            await self._run(requests)

    async def bulk_delete(self, requests: Sequence[state.DeleteRequest]) -> None:
        if len(requests) > 1 and all(not r.etag for r in requests):
            await self._delete_all(requests)
        else:
            await self._run(requests)

    async def multi(self, operations: Sequence[state.Operation], metadata: dict[str, str]) -> None:
        await self._run(operations)


class PooledSqlStateStore(SqlStateStore, Generic[P, H]):
    """A SQL store of a database server, reached through a pool: each call runs on a pooled
    handle `H`, a batch of operations in one transaction."""

    #: Deletes the expired rows.
    _sql_purge: str
    _pool: P | None = None

    @property
    def pool(self) -> P:
        assert self._pool is not None, f"{self._describe} state store is not initialised"
        return self._pool

    async def _purge_expired(self) -> None:
        await self._call(lambda handle: handle.execute(self._sql_purge))

    #: The database, as messages name it.
    _engine = "sql"
    #: The driver's errors: a call that raised one fails with ComponentError.
    _driver_errors: tuple[type[Exception], ...] = ()

    @abstractmethod
    async def _attempt(self, fn: Callable[[H], Awaitable[T]], transaction: bool) -> T:
        """Run `fn` once on a pooled handle (in a transaction when asked), bounded by the call
        timeout."""

    def _retryable(self, exc: Exception) -> bool:
        """Whether a driver error left nothing applied and may simply be retried (a deadlock)."""
        return False

    async def _call(self, fn: Callable[[H], Awaitable[T]], *, retry: bool = False, transaction: bool = False) -> T:
        """Run `fn` on a pooled handle (in a transaction when asked), bounded by the call timeout.

        A dropped connection (a pooled one that died while idle) is retried once when `retry`
        (idempotent calls), and a retryable driver error up to twice. A call the server did not
        answer is never retried: it may have been applied.
        """
        attempts = 3
        for attempt in range(1, attempts + 1):
            try:
                return await self._attempt(fn, transaction)
            except sql.NoAnswerError:
                raise
            except BackendUnavailableError:
                if retry and attempt == 1:
                    continue
                raise
            except self._driver_errors as exc:
                if self._retryable(exc) and attempt < attempts:
                    continue
                raise ComponentError(f"{self._engine} error: {exc}") from exc
        raise AssertionError("unreachable")

    @abstractmethod
    async def _apply(self, handle: H, op: state.Operation) -> None:
        """Apply one operation; an etag or first-write condition that fails raises ETagMismatchError."""

    async def _run(self, operations: Sequence[state.Operation]) -> None:
        if not operations:
            return
        if len(operations) == 1:
            await self._call(lambda handle: self._apply(handle, operations[0]))
            return

        async def batch(handle: H) -> None:
            for op in operations:
                await self._apply(handle, op)

        await self._call(batch, transaction=True)
