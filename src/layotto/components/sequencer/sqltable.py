"""What the SQL sequencers share: the table name check and the retry on a dropped connection."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from layotto.components.base import Metadata
from layotto.errors import BackendUnavailableError, ConfigError

DEFAULT_TABLE = "layotto_sequencer"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

T = TypeVar("T")


def table_name(metadata: Metadata) -> str:
    name = metadata.get_str("tableName", DEFAULT_TABLE) or DEFAULT_TABLE
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"tableName must be a plain SQL identifier, got {name!r}", f"{metadata.where}.metadata")
    return name


async def once_more_on_outage(operation: Callable[[], Awaitable[T]]) -> T:
    """Run `operation`; if the backend connection dropped, retry once on a fresh connection.

    A pool hands out a connection that died while idle (server restarted) only once; the
    retry gets a new one. Safe for reservations: a lost reply can only make ids skip.
    """
    try:
        return await operation()
    except BackendUnavailableError:
        return await operation()
