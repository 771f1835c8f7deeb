"""Lua scripts shared by the Redis lock components: each check-then-act runs atomically on the server."""

from __future__ import annotations

from layotto.components.lock.base import LockStatus

#: KEYS[1] lock key, ARGV[1] owner. -1: no lock, -2: someone else's, else the DEL count.
UNLOCK = """
local held = redis.call('GET', KEYS[1])
if not held then return -1 end
if held ~= ARGV[1] then return -2 end
return redis.call('DEL', KEYS[1])
"""

#: KEYS[1] lock key, ARGV[1] owner, ARGV[2] new expiry in seconds. -1/-2 as UNLOCK, 1 extended.
KEEP_ALIVE = """
local held = redis.call('GET', KEYS[1])
if not held then return -1 end
if held ~= ARGV[1] then return -2 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""


def status_of(result: int) -> LockStatus:
    if result == -1:
        return LockStatus.LOCK_UNEXIST
    if result == -2:
        return LockStatus.LOCK_BELONG_TO_OTHERS
    return LockStatus.SUCCESS
