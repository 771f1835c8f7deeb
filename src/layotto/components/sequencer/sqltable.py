"""What the SQL sequencers share: the default table and the retry on a dropped connection."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from layotto.components._drivers import sql
from layotto.components.base import Metadata
from layotto.errors import BackendUnavailableError

DEFAULT_TABLE = "layotto_sequencer"
#: The metadata keys a SQL sequencer reads (`layotto components` lists them).
METADATA_KEYS = (
    "connectionString",
    "tableName",
    "timeout",
    "maxConns",
    "segmentCacheEnable",
    "segmentStep",
    "keyPrefix",
)

T = TypeVar("T")


def table_name(metadata: Metadata) -> str:
    return sql.table_name(metadata, DEFAULT_TABLE)


async def once_more_on_outage(operation: Callable[[], Awaitable[T]]) -> T:
    """Run `operation`; if the backend connection dropped, retry once on a fresh connection.

    A pool hands out a connection that died while idle (server restarted) only once; the
    retry gets a new one. Safe for reservations: a lost reply can only make ids skip. A
    server that did not answer in time is not asked again: that would double the wait.
    """
    try:
        return await operation()
    except sql.NoAnswerError:
        raise
    except BackendUnavailableError:
        return await operation()
