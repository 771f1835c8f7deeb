"""guarded (_drivers/sql.py): every SQL call is bounded in time, on asyncpg and aiomysql alike.

Against the shared PostgreSQL / MariaDB through a freezable loopback proxy (a hung server:
connections stay open, nothing answers), and with statements slower than the bound.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiomysql
import asyncpg
import pytest

from layotto.components._drivers import mysql, postgres, sql
from layotto.components.base import Metadata
from layotto.components.sequencer.sqltable import once_more_on_outage
from layotto.errors import BackendUnavailableError, ConfigError
from tests.support import backends
from tests.support.backends import TcpProxy
from tests.support.services import MYSQL

BOUND = 0.5
#: What a bounded call may take on top of BOUND (a loaded CI machine), well under a second bound.
SLACK = 0.4
#: The test's own limit on a call that should have been bounded: without it a regression hangs.
GIVE_UP = 3.0

SLEEP = {"postgresql": "SELECT pg_sleep(3)", "mysql": "SELECT SLEEP(3)"}
WHO = {"postgresql": "SELECT pg_backend_pid()", "mysql": "SELECT CONNECTION_ID()"}
GUARDED = {"postgresql": postgres.guarded, "mysql": mysql.guarded}


async def _scalar(kind: str, conn: Any, statement: str) -> Any:
    if kind == "postgresql":
        return await conn.fetchval(statement)
    async with conn.cursor() as cur:
        await cur.execute(statement)
        row = await cur.fetchone()
        return row[0]


async def _pool(kind: str, port: int) -> Any:
    # One connection at most: a call after a cut one shows whether the pool handed it out again.
    if kind == "postgresql":
        return await asyncpg.create_pool(f"postgresql://postgres@127.0.0.1:{port}/test", min_size=1, max_size=1)
    return await aiomysql.create_pool(
        host="127.0.0.1", port=port, user=MYSQL["user"], db=MYSQL["database"], minsize=1, maxsize=1, autocommit=True
    )


async def _close(kind: str, pool: Any) -> None:
    if kind == "postgresql":
        pool.terminate()
    else:
        pool.terminate()
        await pool.wait_closed()


@pytest.fixture(params=["postgresql", "mysql"])
async def rig(request: pytest.FixtureRequest) -> AsyncIterator[tuple[str, TcpProxy, Any]]:
    kind: str = request.param
    proxy = backends.proxy_to(kind)
    await proxy.up()
    pool = await _pool(kind, proxy.port)
    try:
        yield kind, proxy, pool
    finally:
        await proxy.thaw()
        await _close(kind, pool)
        await proxy.close()


async def _who(kind: str, pool: Any) -> int:
    async with asyncio.timeout(GIVE_UP), GUARDED[kind](pool, 2.0, kind) as conn:
        return int(await _scalar(kind, conn, WHO[kind]))


async def _fresh_connection(kind: str, pool: Any, before: int) -> None:
    """The pool's connection is a new one, and in step: a connection reused after being given
    up mid-statement would answer each query with the previous query's result."""
    after = await _who(kind, pool)
    assert after != before, "the connection given up on was handed out again"
    assert await _who(kind, pool) == after


async def test_a_hung_server_is_no_answer_in_bounded_time_and_the_connection_is_not_reused(
    rig: tuple[str, TcpProxy, Any],
) -> None:
    kind, proxy, pool = rig
    before = await _who(kind, pool)
    await proxy.freeze()
    started = time.monotonic()
    with pytest.raises(sql.NoAnswerError, match=rf"^{kind} at here did not answer within 0.5s$"):
        async with asyncio.timeout(GIVE_UP), GUARDED[kind](pool, BOUND, f"{kind} at here") as conn:
            await _scalar(kind, conn, "SELECT 1")
    took = time.monotonic() - started
    assert BOUND <= took < BOUND + SLACK
    # Waiting for a connection counts too: the pool's only one is gone and a new one cannot log in.
    started = time.monotonic()
    with pytest.raises(sql.NoAnswerError):
        async with asyncio.timeout(GIVE_UP), GUARDED[kind](pool, BOUND, kind) as conn:
            await _scalar(kind, conn, "SELECT 1")
    assert time.monotonic() - started < BOUND + SLACK

    await proxy.thaw()
    await _fresh_connection(kind, pool, before)


async def test_a_statement_slower_than_the_bound_is_cut(rig: tuple[str, TcpProxy, Any]) -> None:
    kind, _, pool = rig
    before = await _who(kind, pool)
    started = time.monotonic()
    with pytest.raises(sql.NoAnswerError):
        async with asyncio.timeout(GIVE_UP), GUARDED[kind](pool, BOUND, kind) as conn:
            await _scalar(kind, conn, SLEEP[kind])
    assert time.monotonic() - started < BOUND + SLACK
    await _fresh_connection(kind, pool, before)


async def test_a_transaction_on_a_hung_server_unwinds_in_bounded_time(rig: tuple[str, TcpProxy, Any]) -> None:
    """The rollback on the way out must not wait for the hung server either."""
    kind, proxy, pool = rig
    await _who(kind, pool)
    await proxy.freeze()
    started = time.monotonic()
    with pytest.raises(sql.NoAnswerError):
        async with asyncio.timeout(GIVE_UP), GUARDED[kind](pool, BOUND, kind) as conn:
            if kind == "postgresql":
                async with conn.transaction():
                    await conn.execute("SELECT 1")
            else:
                await conn.begin()
                try:
                    await _scalar(kind, conn, "SELECT 1")
                finally:
                    await conn.rollback()
    assert time.monotonic() - started < BOUND + SLACK
    await proxy.thaw()
    await _who(kind, pool)


async def test_a_caller_that_gives_up_leaves_no_connection_behind(rig: tuple[str, TcpProxy, Any]) -> None:
    kind, proxy, pool = rig
    before = await _who(kind, pool)
    await proxy.freeze()

    async def call() -> None:
        async with GUARDED[kind](pool, 30.0, kind) as conn:
            await _scalar(kind, conn, "SELECT 1")

    task = asyncio.create_task(call())
    await asyncio.sleep(0.2)  # let it send the statement: there is no event to await for that
    task.cancel()
    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, GIVE_UP)
    assert time.monotonic() - started < SLACK
    await proxy.thaw()
    await _fresh_connection(kind, pool, before)


async def test_failed_statements_pass_through_and_lost_connections_are_unavailable(
    rig: tuple[str, TcpProxy, Any],
) -> None:
    kind, proxy, pool = rig
    with pytest.raises((asyncpg.PostgresError, aiomysql.MySQLError)) as caught:
        async with GUARDED[kind](pool, 5.0, kind) as conn:
            await _scalar(kind, conn, "SELEC 1")
    assert not isinstance(caught.value, BackendUnavailableError)
    await _who(kind, pool)

    await proxy.down()
    with pytest.raises(BackendUnavailableError) as unavailable:
        async with GUARDED[kind](pool, 5.0, f"{kind} at here") as conn:
            await _scalar(kind, conn, "SELECT 1")
    assert not isinstance(unavailable.value, sql.NoAnswerError)
    assert str(unavailable.value).startswith(f"{kind} at here is unavailable: ")


async def test_a_connection_lost_mid_call_is_unavailable_whatever_the_body_does_next(
    rig: tuple[str, TcpProxy, Any],
) -> None:
    """After a loss asyncpg detaches the connection from its pool: a further call raises an
    InterfaceError of its own, which is still the outage, not the statement's fault."""
    kind, proxy, pool = rig
    with pytest.raises(BackendUnavailableError) as caught:
        async with asyncio.timeout(GIVE_UP), GUARDED[kind](pool, 5.0, kind) as conn:
            await _scalar(kind, conn, "SELECT 1")
            await proxy.drop_connections()
            with pytest.raises((asyncpg.PostgresConnectionError, aiomysql.OperationalError)):
                await _scalar(kind, conn, "SELECT 1")
            await _scalar(kind, conn, "SELECT 1")
    assert not isinstance(caught.value, sql.NoAnswerError)
    await _who(kind, pool)


async def test_a_call_with_no_answer_is_not_retried_but_a_dropped_connection_is() -> None:
    calls = 0

    async def no_answer() -> int:
        nonlocal calls
        calls += 1
        raise sql.NoAnswerError("db did not answer within 5s")

    with pytest.raises(sql.NoAnswerError):
        await once_more_on_outage(no_answer)
    assert calls == 1

    calls = 0

    async def dropped_once() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise BackendUnavailableError("db is unavailable: connection reset")
        return 7

    assert await once_more_on_outage(dropped_once) == 7
    assert calls == 2


def test_call_timeout_reads_the_first_key_set() -> None:
    assert sql.call_timeout(Metadata({}), "timeoutInSeconds", "timeout") == sql.DEFAULT_TIMEOUT
    assert sql.call_timeout(Metadata({"timeout": "750ms"}), "timeoutInSeconds", "timeout") == 0.75
    assert sql.call_timeout(Metadata({"timeoutInSeconds": "3", "timeout": "9"}), "timeoutInSeconds", "timeout") == 3
    with pytest.raises(ConfigError, match="timeoutInSeconds"):
        sql.call_timeout(Metadata({"timeoutInSeconds": "0"}), "timeoutInSeconds")
    with pytest.raises(ConfigError, match="timeout"):
        sql.call_timeout(Metadata({"timeout": "soon"}), "timeout")
