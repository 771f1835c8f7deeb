"""What the SQL lock stores share: the default table and the classification of a miss."""

from __future__ import annotations

from layotto.components.lock.base import LockStatus

DEFAULT_TABLE = "layotto_lock"


def miss_status(live_owner: str | None, owner: str) -> LockStatus:
    """Why an owner-checked statement changed no row: nothing live there, or another holder.

    A live row of the same owner can only mean it was re-taken between the two statements,
    which the caller reports as the lock being someone else's instance.
    """
    if live_owner is None:
        return LockStatus.LOCK_UNEXIST
    return LockStatus.LOCK_BELONG_TO_OTHERS
