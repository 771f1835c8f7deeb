"""What the SQL lock stores share: table-name checking and the classification of a miss."""

from __future__ import annotations

import re

from layotto.components.lock.base import LockStatus
from layotto.errors import ConfigError

DEFAULT_TABLE = "layotto_lock"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def table_name(raw: str, where: str) -> str:
    """The `tableName` metadata; only plain identifiers, since it is spliced into SQL."""
    name = raw or DEFAULT_TABLE
    if not _IDENTIFIER.match(name):
        raise ConfigError(f"tableName {name!r} must be a plain SQL identifier", f"{where}.metadata.tableName")
    return name


def miss_status(live_owner: str | None, owner: str) -> LockStatus:
    """Why an owner-checked statement changed no row: nothing live there, or another holder.

    A live row of the same owner can only mean it was re-taken between the two statements,
    which the caller reports as the lock being someone else's instance.
    """
    if live_owner is None:
        return LockStatus.LOCK_UNEXIST
    return LockStatus.LOCK_BELONG_TO_OTHERS
