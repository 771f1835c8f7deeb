"""Dapr's `bindings.postgres` output binding: exec and query SQL on a pooled connection.

Request metadata: `sql` (required) and, beyond v1.5.2, `params`: a JSON array bound to
$1, $2, ... so that apps need not build SQL from values.

Each call is bounded by `timeout` (Dapr's key, alias `timeoutInSeconds`; a Go duration or
seconds), 5 s by default where Dapr waits 20 s: a hung server fails the call with UNAVAILABLE.
A statement the server did not answer may have run; it is never retried.
"""

from __future__ import annotations

import base64
import datetime
import decimal
import json
import time
import uuid
from typing import Any

import asyncpg

from layotto.components._drivers import postgres, sql
from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings.base import InvokeRequest, InvokeResponse, OutputBinding
from layotto.errors import BackendUnavailableError, ComponentError, InvalidArgumentError

_OPERATIONS = ["exec", "query", "close"]


def _json_value(value: Any) -> Any:
    # As Go's encoding/json renders pgx values: times as RFC 3339, bytes as base64.
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (uuid.UUID, datetime.timedelta)):
        return str(value)
    return str(value)


def _rfc3339(moment: datetime.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class PostgresBinding(OutputBinding):
    metadata_keys: tuple[str, ...] = (
        "url",
        "connectionString",
        "timeout",
        "timeoutInSeconds",
        "connectTimeout",
        "maxConns",
    )
    _pool: asyncpg.Pool | None = None
    _timeout = sql.DEFAULT_TIMEOUT
    _describe = "postgresql"

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        key = "url" if metadata.get_str("url") else "connectionString"
        connect_args = postgres.connect_args(metadata.required(key), f"{metadata.where}.metadata.{key}")
        self._timeout = sql.call_timeout(metadata, "timeout", "timeoutInSeconds")
        self._describe = f"postgresql at {postgres.address(connect_args)}"
        #: How to open a connection of its own (an input binding's listener).
        self.connect_args = {"timeout": metadata.get_duration("connectTimeout", 5.0), **connect_args}
        try:
            self._pool = await asyncpg.create_pool(
                min_size=0, max_size=metadata.get_int("maxConns", 10), **self.connect_args
            )
            async with postgres.guarded(self._pool, self._timeout, self._describe) as conn:
                await conn.execute("SELECT 1")
        except (*postgres.CONNECTION_ERRORS, asyncpg.PostgresError, BackendUnavailableError) as exc:
            await self.close()
            raise BackendUnavailableError(f"unable to ping the DB: {exc}") from exc

    def operations(self) -> list[str]:
        return list(_OPERATIONS)

    async def ping(self) -> None:
        assert self._pool is not None
        async with postgres.guarded(self._pool, self._timeout, self._describe) as conn:
            await conn.execute("SELECT 1")

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        if request.operation == "close":
            # Upstream closes its pool for good; the pool here is the sidecar's, shared by all apps.
            return InvokeResponse()
        statement = request.metadata.get("sql", "")
        if not statement:
            raise InvalidArgumentError("required metadata not set: sql")
        params = self._params(request.metadata.get("params", ""))
        started = datetime.datetime.now(datetime.UTC)
        clock = time.perf_counter()
        metadata = {"operation": request.operation, "sql": statement, "start-time": _rfc3339(started)}
        pool = self._pool
        assert pool is not None, "init() was not called"
        data = b""
        try:
            async with postgres.guarded(pool, self._timeout, self._describe) as conn:
                if request.operation == "exec":
                    metadata["rows-affected"] = str(postgres.rows(await conn.execute(statement, *params)))
                elif request.operation == "query":
                    rows = await conn.fetch(statement, *params)
                    data = json.dumps([list(row.values()) for row in rows], default=_json_value).encode()
                else:
                    raise InvalidArgumentError(
                        f"invalid operation type: {request.operation}. Expected exec, query, or close"
                    )
        except BackendUnavailableError as exc:
            raise type(exc)(f"error executing {statement}: {exc}") from exc
        except (asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise ComponentError(f"error executing {statement}: {exc}") from exc
        ended = datetime.datetime.now(datetime.UTC)
        metadata["end-time"] = _rfc3339(ended)
        metadata["duration"] = f"{(time.perf_counter() - clock) * 1000:.3f}ms"
        return InvokeResponse(data=data, metadata=metadata)

    @staticmethod
    def _params(raw: str) -> list[Any]:
        if not raw:
            return []
        try:
            params = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(f"'params' must be a JSON array: {exc.msg}") from None
        if not isinstance(params, list):
            raise InvalidArgumentError("'params' must be a JSON array")
        return params

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()
