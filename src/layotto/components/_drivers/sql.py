"""What the SQL drivers share: the `tableName` check, the expired-row purger, and `guarded`, the
one way a component talks to its database: every call bounded in time.

No database library is imported here (postgres.py and mysql.py bring theirs), so the SQLite
components can share this without loading asyncpg or aiomysql.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from layotto.components.base import Metadata
from layotto.errors import BackendUnavailableError, ConfigError

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def table_name(metadata: Metadata, default: str) -> str:
    """The `tableName` metadata (or `default`): a plain identifier only, as it is spliced into SQL."""
    name = metadata.get_str("tableName") or default
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"tableName {name!r} must be a plain SQL identifier", f"{metadata.where}.metadata.tableName")
    return name


def start_purger(
    metadata: Metadata,
    name: str,
    purge: Callable[[], Awaitable[object]],
    errors: tuple[type[BaseException], ...],
    log: logging.Logger,
) -> asyncio.Task[None] | None:
    """Run `purge` (delete expired rows) every `cleanupIntervalInSeconds` (default 1 h; 0: never).

    A failed round is logged and the next one tried: the rows are invisible to reads anyway.
    """
    interval = metadata.get_duration("cleanupIntervalInSeconds", 3600.0)
    if interval <= 0:
        return None

    async def purge_forever() -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await purge()
            except errors as exc:
                log.warning("purging expired state rows failed: %s", exc)

    return asyncio.create_task(purge_forever(), name=name)


# ---- bounded calls ----

#: How long one call may wait for its database when the metadata does not say: long enough for
#: any statement these components send, short enough that a hung server fails the call.
DEFAULT_TIMEOUT = 5.0
#: What returning a connection to its pool may take past the call's own deadline (asyncpg
#: resets it with a round trip); past that the pool drops the connection instead.
_RELEASE_GRACE = 0.5


class NoAnswerError(BackendUnavailableError):
    """The server took the call and did not answer in time.

    The statement may have been applied, so nothing retries such a call by itself: a retry
    could write twice. The connection it used is discarded, never handed out again.
    """


def call_timeout(metadata: Metadata, *keys: str, default: float = DEFAULT_TIMEOUT) -> float:
    """Seconds one call may take: the first of `keys` that is set (a Go duration or a number of
    seconds), else `default`."""
    for key in keys:
        if metadata.get_str(key):
            seconds = metadata.get_duration(key, default)
            if seconds <= 0:
                raise ConfigError(f"'{key}' must be a positive duration, got {metadata[key]!r}", metadata.where)
            return seconds
    return default


class PoolDriver(Protocol):
    """How `guarded` handles one database library's pool and connections."""

    async def acquire(self, pool: Any) -> Any: ...

    async def release(self, pool: Any, conn: Any, budget: float) -> None:
        """Give `conn` back to `pool`, taking at most `budget` seconds."""

    def cut(self, conn: Any) -> None:
        """Break `conn` at once: its pending and later statements fail, nothing waits for the server."""

    def outage(self, exc: BaseException, conn: Any) -> bool:
        """Whether `exc` means the server or the connection is gone (`conn` is None while acquiring)."""


def _no_answer(describe: str, seconds: float) -> str:
    return f"{describe} did not answer within {seconds:g}s"


@contextlib.asynccontextmanager
async def guarded(pool: Any, seconds: float, describe: str, driver: PoolDriver) -> AsyncIterator[Any]:
    """A pooled connection for one call that must end within `seconds`.

    `describe` names the backend in messages ("postgresql at host:5432/db"). Acquiring and the
    body share the deadline. When it passes, the connection is cut under the body (not the
    task cancelled: that would make asyncpg cancel over a new connection and leave rollbacks
    hanging): every pending or later statement on it fails at once, the body unwinds, and the
    call raises NoAnswerError. A lost connection raises BackendUnavailableError; any other
    error (a failed statement, the component's own) passes through unchanged.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    try:
        async with asyncio.timeout_at(deadline):
            conn = await driver.acquire(pool)
    except TimeoutError as exc:  # before the OSError branch: TimeoutError is an OSError
        raise NoAnswerError(_no_answer(describe, seconds)) from exc
    except Exception as exc:
        if driver.outage(exc, None):
            raise BackendUnavailableError(f"{describe} is unavailable: {exc}") from exc
        raise

    cut = False

    def on_deadline() -> None:
        nonlocal cut
        cut = True
        driver.cut(conn)

    timer = loop.call_at(deadline, on_deadline)
    try:
        yield conn
    except asyncio.CancelledError:
        # The caller gave up mid-conversation: what the connection is in the middle of is unknown.
        if not cut:
            driver.cut(conn)
        raise
    except Exception as exc:
        if cut and driver.outage(exc, conn):
            raise NoAnswerError(_no_answer(describe, seconds)) from exc
        if driver.outage(exc, conn):
            raise BackendUnavailableError(f"{describe} is unavailable: {exc}") from exc
        raise
    finally:
        timer.cancel()
        await driver.release(pool, conn, max(deadline - loop.time(), _RELEASE_GRACE))
