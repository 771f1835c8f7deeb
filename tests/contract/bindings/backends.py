"""The output bindings under test, one row each (tests/support/rows.BackendRow). Output
bindings have no optional features: what each one can do is its list of `operations()`."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from layotto.components.bindings.base import InvokeRequest, InvokeResponse
from tests.support.rows import BackendRow
from tests.support.services import POSTGRES_DSN
from tests.support.sidecar import free_port

#: One table for the postgres row, created and dropped by this module.
PG_TABLE = f"layotto_test_binding_{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class BindingTraits:
    """How to write, read and delete one record with the binding's own operations."""

    #: Metadata pointing at nothing (a closed port).
    dead_metadata: Callable[[], dict[str, Any]]
    write: Callable[[str, bytes], InvokeRequest]
    read: Callable[[str], InvokeRequest]
    delete: Callable[[str], InvokeRequest]
    #: The record's bytes from a read reply; b"" when there is no record.
    value: Callable[[InvokeResponse], bytes] = lambda reply: reply.data


#: A row's metadata is a function of the test HTTP server's base URL.
Row = BackendRow[BindingTraits]


def _pg_value(reply: InvokeResponse) -> bytes:
    rows = json.loads(reply.data)
    return base64.b64decode(rows[0][0]) if rows else b""


ROWS: list[Row] = [
    BackendRow(
        block="bindings",
        type="http",
        metadata=lambda base: {"url": f"{base}/kv"},
        traits=BindingTraits(
            dead_metadata=lambda: {"url": f"http://127.0.0.1:{free_port()}/kv"},
            write=lambda k, v: InvokeRequest("create", v, {"path": k}),
            read=lambda k: InvokeRequest("get", b"", {"path": k}),
            delete=lambda k: InvokeRequest("delete", b"", {"path": k}),
        ),
    ),
    BackendRow(
        block="bindings",
        type="redis",
        metadata=lambda base: {"redisHost": "127.0.0.1:6379", "maxRetries": "0"},
        requires=("redis",),
        traits=BindingTraits(
            dead_metadata=lambda: {"redisHost": f"127.0.0.1:{free_port()}", "maxRetries": "0", "dialTimeout": "1s"},
            write=lambda k, v: InvokeRequest("create", v, {"key": f"layotto-test-binding-{k}"}),
            read=lambda k: InvokeRequest("get", b"", {"key": f"layotto-test-binding-{k}"}),
            delete=lambda k: InvokeRequest("delete", b"", {"key": f"layotto-test-binding-{k}"}),
        ),
    ),
    BackendRow(
        block="bindings",
        type="postgresql",
        metadata=lambda base: {"url": POSTGRES_DSN},
        requires=("postgresql",),
        traits=BindingTraits(
            dead_metadata=lambda: {
                "url": f"postgresql://postgres@127.0.0.1:{free_port()}/test",
                "connectTimeout": "1s",
            },
            write=lambda k, v: InvokeRequest(
                "exec",
                b"",
                {
                    "sql": f"INSERT INTO {PG_TABLE} (k, v) VALUES ($1, $2)"
                    " ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                    "params": json.dumps([k, base64.b64encode(v).decode()]),
                },
            ),
            read=lambda k: InvokeRequest(
                "query", b"", {"sql": f"SELECT v FROM {PG_TABLE} WHERE k = $1", "params": json.dumps([k])}
            ),
            delete=lambda k: InvokeRequest(
                "exec", b"", {"sql": f"DELETE FROM {PG_TABLE} WHERE k = $1", "params": json.dumps([k])}
            ),
            value=_pg_value,
        ),
    ),
]
