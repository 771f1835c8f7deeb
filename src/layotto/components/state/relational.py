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
from collections.abc import Sequence

from layotto.components._drivers import sql
from layotto.components.base import Metadata
from layotto.components.state import base as state


class SqlStateStore(state.StateStore):
    features = frozenset({state.StateFeature.ETAG, state.StateFeature.TRANSACTIONAL, state.StateFeature.TTL})
    #: The store's `ttlInSeconds`, for saves that name none.
    _default_ttl: int | None = None
    _purger: asyncio.Task[None] | None = None

    def _read_default_ttl(self, metadata: Metadata) -> None:
        self._default_ttl = state.ttl_seconds({"ttlInSeconds": metadata.get_str("ttlInSeconds")})

    @abstractmethod
    async def _purge_expired(self) -> None:
        """Delete the rows whose TTL is over (reads skip them already)."""

    def _start_purger(
        self, metadata: Metadata, name: str, errors: tuple[type[BaseException], ...], log: logging.Logger
    ) -> None:
        self._purger = sql.start_purger(metadata, name, self._purge_expired, errors, log)

    async def _stop_purger(self) -> None:
        await sql.stop_task(self._purger)
        self._purger = None

    def _ttl(self, request: state.SetRequest) -> int | None:
        """Seconds `request`'s value lives, or None for no expiry."""
        ttl = state.ttl_seconds(request.metadata)
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
