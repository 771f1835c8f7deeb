"""Snowflake sequencer: ids computed in process, upstream's bit layout, no backend per call.

    id = 0 | seconds since startTime (timeBits) | worker id (workerBits) | sequence (seqBits)

Widths default to 28/22/13 and must sum to 63 (`not enough 64bits`). The worker id is the
AUTO_INCREMENT id of a row this sidecar inserts into a MySQL table at start, so two running
sidecars never share one (it wraps modulo 2**workerBits after that many starts).

Per key, ids strictly increase: when a second's sequence is used up the key borrows the
next second, up to `maxBorrowSeconds` ahead of the clock; beyond that a call waits for the
clock, and fails with upstream's `request id time out` after `reqTimeout`. A clock that
steps back is ignored (the key keeps its last second), so ids never repeat.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import socket
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import aiomysql

from layotto.components._drivers import mysql, sql
from layotto.components.base import ComponentContext, Metadata
from layotto.components.sequencer.base import Sequencer, bigger_than
from layotto.errors import BackendUnavailableError, ComponentError, ConfigError

DEFAULT_TABLE = "layotto_sequencer_snowflake"


@dataclass(frozen=True)
class Layout:
    time_bits: int
    worker_bits: int
    seq_bits: int
    start: float  # unix seconds

    @property
    def max_seq(self) -> int:
        return (1 << self.seq_bits) - 1

    @property
    def max_second(self) -> int:
        return (1 << self.time_bits) - 1

    def compose(self, second: int, worker: int, seq: int) -> int:
        return (second << (self.worker_bits + self.seq_bits)) | (worker << self.seq_bits) | seq


class _KeyClock:
    __slots__ = ("second", "seq")

    def __init__(self) -> None:
        self.second = -1
        self.seq = 0


class SnowflakeSequencer(Sequencer):
    metadata_keys = (
        "mysqlHost",
        "databaseName",
        "userName",
        "password",
        "tableName",
        "timeout",
        "timeBits",
        "workerBits",
        "seqBits",
        "startTime",
        "reqTimeout",
        "maxBorrowSeconds",
        "keyPrefix",
    )
    layout: Layout
    worker_id: int

    def __init__(self) -> None:
        self._keys: dict[str, _KeyClock] = {}

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.layout = _layout(metadata)
        self._req_timeout = metadata.get_int("reqTimeout", 500) / 1000.0
        self._max_lead = metadata.get_int("maxBorrowSeconds", 10)
        self.worker_id = await _register_worker(metadata) & ((1 << self.layout.worker_bits) - 1)
        for key, floor in bigger_than(metadata, context).items():
            if self._peek(key) <= floor:
                raise ConfigError(
                    f"snowflake ids of {key} are below biggerThan {floor}; raise startTime's distance or timeBits",
                    metadata.where,
                )

    def _now(self) -> int:
        return int(time.time() - self.layout.start)

    def _peek(self, key: str) -> int:
        return self.layout.compose(max(self._now(), self._keys.get(key, _KeyClock()).second + 1), self.worker_id, 0)

    async def next_id(self, key: str, *, strong: bool, metadata: Mapping[str, str]) -> int:
        clock = self._keys.get(key)
        if clock is None:
            clock = self._keys[key] = _KeyClock()
        deadline = time.monotonic() + self._req_timeout
        while True:
            now = self._now()
            if now > clock.second:
                clock.second, clock.seq = now, 0
                break
            if clock.seq < self.layout.max_seq:
                clock.seq += 1
                break
            if clock.second + 1 - now <= self._max_lead:
                clock.second, clock.seq = clock.second + 1, 0  # borrow the next second
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ComponentError("request id time out")
            # Wait for the wall clock to reach the borrowed seconds (a short, bounded sleep).
            await asyncio.sleep(min(remaining, 0.05))
        if clock.second > self.layout.max_second:
            raise ComponentError(f"snowflake timeBits ({self.layout.time_bits}) exhausted since startTime")
        return self.layout.compose(clock.second, self.worker_id, clock.seq)


def _layout(metadata: Metadata) -> Layout:
    time_bits = metadata.get_int("timeBits", 28)
    worker_bits = metadata.get_int("workerBits", 22)
    seq_bits = metadata.get_int("seqBits", 13)
    if time_bits + worker_bits + seq_bits + 1 != 64 or min(time_bits, worker_bits, seq_bits) < 1:
        raise ConfigError("not enough 64bits", f"{metadata.where}.metadata")
    raw_start = metadata.get_str("startTime", "2022-01-01")
    try:
        # Upstream parses the date in the sidecar's local time zone.
        start = dt.datetime.strptime(raw_start, "%Y-%m-%d").timestamp()
    except ValueError:
        raise ConfigError(f"startTime must be YYYY-MM-DD, got {raw_start!r}", f"{metadata.where}.metadata") from None
    return Layout(time_bits, worker_bits, seq_bits, start)


async def _register_worker(metadata: Metadata) -> int:
    """Insert this sidecar's row into the worker table; its AUTO_INCREMENT id is the worker id."""
    host = metadata.required("mysqlHost")
    database = metadata.required("databaseName")
    user = metadata.required("userName")
    # Upstream insists on a non-empty password; a password-less account works here.
    password = metadata.get_str("password")
    try:
        address, port = mysql.split_host_port(host)
    except ValueError as exc:
        raise ConfigError(str(exc), f"{metadata.where}.metadata.mysqlHost") from None
    table = sql.table_name(metadata, DEFAULT_TABLE)
    port_tag = f"{int(time.time())}-{random.randrange(100000)}"
    try:
        conn = await aiomysql.connect(
            host=address,
            port=port,
            user=user,
            password=password,
            db=database,
            autocommit=True,
            connect_timeout=metadata.get_duration("timeout", 5.0),
        )
    except (OSError, aiomysql.OperationalError) as exc:
        raise BackendUnavailableError(f"snowflake worker registry (mysql at {host}) is unavailable: {exc}") from exc
    try:
        async with conn.cursor() as cursor:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", aiomysql.Warning)  # "table already exists" note
                await cursor.execute(
                    f"CREATE TABLE IF NOT EXISTS {table} (ID BIGINT NOT NULL AUTO_INCREMENT,"
                    " HOST_NAME VARCHAR(64) NOT NULL, PORT VARCHAR(64) NOT NULL, CREATED TIMESTAMP NOT NULL,"
                    " PRIMARY KEY (ID))"
                )
            await cursor.execute(
                f"INSERT INTO {table} (HOST_NAME, PORT, CREATED) VALUES (%s, %s, NOW())",
                (socket.gethostname()[:64], port_tag),
            )
            return int(cursor.lastrowid)
    except aiomysql.MySQLError as exc:
        raise ComponentError(f"snowflake cannot register a worker id in {table}: {exc}") from exc
    finally:
        conn.close()
