"""SQLite through aiosqlite, for the state, lock and sequencer components of the embedded
default (`layotto start` without a config): a database file on the sidecar's own disk."""

from __future__ import annotations

from pathlib import Path

import aiosqlite


def database_path(raw: str) -> str:
    """A `databasePath` made usable: `~` expanded, missing folders created.

    It touches the disk: call it through asyncio.to_thread."""
    path = Path(raw).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return str(path)


async def connect(path: str, busy_timeout: float) -> aiosqlite.Connection:
    """A connection to `path` as the components use it.

    No implicit transactions (isolation_level=None): a statement commits on its own unless the
    component says BEGIN. A write waits up to `busy_timeout` seconds for another writer of the
    file (other sidecars on the host may share it), and the WAL journal lets reads go on
    meanwhile instead of failing with "database is locked".
    """
    conn = await aiosqlite.connect(path, isolation_level=None, timeout=busy_timeout)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
    except BaseException:
        await conn.close()
        raise
    return conn
