"""What the ZooKeeper components (lock, sequencer) share: the host list and what counts as an outage."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

import aiozk
from aiozk import exc as zk_errors
from aiozk import session as aiozk_session
from aiozk.connection import Connection
from aiozk.states import States

from layotto.components.base import Metadata

T = TypeVar("T")

_CONNECTED = (States.CONNECTED, States.READ_ONLY)

#: aiozk's errors for "the ensemble cannot be reached or the session is gone".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    zk_errors.ConnectError,
    zk_errors.ConnectionLoss,
    zk_errors.SessionLost,
    zk_errors.SessionExpired,
    zk_errors.NoServersError,
    zk_errors.FailedRetry,
    zk_errors.TimeoutError,
    zk_errors.OperationTimeout,
    TimeoutError,
    OSError,
)


def hosts(metadata: Metadata) -> str:
    """`zookeeperHosts` (separated by ';' as upstream, or ',') as aiozk's comma-separated list;
    "" when none is given."""
    raw = metadata.get_str("zookeeperHosts")
    return ",".join(h.strip() for part in raw.split(";") for h in part.split(",") if h.strip())


# ---- aiozk 0.32 outage handling ----
#
# Two aiozk behaviours turn a ZooKeeper restart into minutes of hanging calls:
# - when the server closes the connection, the read loop ends silently: the session still
#   says CONNECTED, and every request written afterwards waits forever for its reply;
# - a lost server is re-dialled with exponential backoff up to 60 s, so a server back after
#   a short outage may be noticed only a minute later.
# `patch_aiozk()` (run on import) aborts such a connection, so its requests fail with
# ConnectError and the session reconnects, and caps the re-dial pause at RECONNECT_PAUSE.

#: Longest pause between two attempts to reach a lost ZooKeeper.
RECONNECT_PAUSE = 1.0
#: How long a call waits for a lost session to come back before reporting UNAVAILABLE.
RECONNECT_GRACE = 2.0


def patch_aiozk() -> None:
    if getattr(Connection.read_loop, "_layotto_patched", False):
        return
    read_loop = Connection.read_loop

    async def read_loop_aborting_on_eof(self: Connection) -> None:
        await read_loop(self)
        if not self.closing:
            # The server went away (EOF): fail what waits and what will be sent on this connection.
            self.abort()
            self.closing = True
            self.writer.close()

    read_loop_aborting_on_eof._layotto_patched = True  # type: ignore[attr-defined]
    Connection.read_loop = read_loop_aborting_on_eof
    aiozk_session.MAX_FIND_WAIT = RECONNECT_PAUSE


patch_aiozk()


async def bounded(client: aiozk.ZKClient, call: Awaitable[T], limit: float) -> T:
    """Await `call` for at most `limit` seconds, and for at most RECONNECT_GRACE once the
    session is (or becomes) disconnected: an unreachable ensemble is reported in seconds,
    while a slow but connected one gets the whole `limit`."""
    machine = client.session.state
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        async with asyncio.timeout(limit) as scope:

            def shorten(_: object = None) -> None:
                when = loop.time() + RECONNECT_GRACE
                current = scope.when()
                if current is None or when < current:
                    scope.reschedule(when)

            if client.session.conn is None:
                return await call  # starting: never connected yet, the whole limit to get there
            if machine.current_state not in _CONNECTED:
                shorten()
                return await call
            lost = machine.wait_for(States.SUSPENDED, States.LOST)
            lost.add_done_callback(shorten)
            try:
                return await call
            finally:
                lost.remove_done_callback(shorten)
                for state in (States.SUSPENDED, States.LOST):
                    machine.futures[state].discard(lost)
                lost.cancel()
    except TimeoutError:
        waited = loop.time() - started
        raise TimeoutError(f"no reply within {waited:.1f}s (session {machine.current_state})") from None
