"""What the ZooKeeper components (lock, sequencer) share: the host list, digest authentication,
and what counts as an outage.

`zookeeperPassword` (upstream's key, which upstream reads and never uses) is a digest
credential, `user:password`, or the password of `zookeeperUsername` (this runtime's). With
one, every session authenticates with it (again after each reconnect: ZooKeeper keeps
credentials per connection) and the znodes it creates carry the ACL `auth` (all rights to the
identities that created them), so a client without the credential gets NoAuth on them.
Existing znodes keep their ACL. aiozk speaks plaintext only: ZooKeeper's TLS port cannot be used.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiozk
from aiozk import exc as zk_errors
from aiozk import protocol
from aiozk import session as aiozk_session
from aiozk.connection import Connection
from aiozk.states import States

from layotto.components.base import Metadata
from layotto.errors import ConfigError

T = TypeVar("T")

log = logging.getLogger("layotto.zookeeper")

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


#: The keys `credential` reads.
AUTH_METADATA_KEYS = ("zookeeperPassword", "zookeeperUsername")


def credential(metadata: Metadata) -> bytes | None:
    """The digest credential `user:password` of `zookeeperPassword` (and `zookeeperUsername`);
    None when no password is given."""
    password, user = (metadata.get_str(key) for key in AUTH_METADATA_KEYS)
    where = f"{metadata.where}.metadata" if metadata.where else "metadata"
    if not password:
        if user:
            raise ConfigError("zookeeperUsername needs zookeeperPassword", f"{where}.zookeeperUsername")
        return None
    if user:
        return f"{user}:{password}".encode()
    if ":" not in password:
        raise ConfigError(
            "zookeeperPassword must be a digest credential user:password, or set zookeeperUsername",
            f"{where}.zookeeperPassword",
        )
    return password.encode()


def client(servers: str, auth: bytes | None, **options: Any) -> aiozk.ZKClient:
    """An aiozk client of `servers` (with aiozk's `options`); with `auth`, each session
    authenticates with it before its first request, and created znodes get the `auth` ACL."""
    if auth is None:
        return aiozk.ZKClient(servers, **options)
    owner_only = aiozk.ACL.make("auth", "", read=True, write=True, create=True, delete=True, admin=True)
    zk = aiozk.ZKClient(servers, default_acl=[owner_only], **options)
    session = zk.session
    establish = session.establish_session

    async def establish_and_authenticate() -> None:
        await establish()
        # Written before the session counts as connected, so it is the connection's first
        # request: ZooKeeper handles it before any other of them.
        reply = session.conn.send(protocol.AuthRequest(type=0, scheme="digest", auth=auth))
        reply.add_done_callback(_refused)

    session.establish_session = establish_and_authenticate
    return zk


def _refused(reply: asyncio.Future[Any]) -> None:
    if not reply.cancelled() and reply.exception() is not None:
        log.warning("zookeeper refused the digest credential: %r", reply.exception())


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
