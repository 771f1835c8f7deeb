"""Sidecars serving WASM functions, in upstream's config shape (demo/faas/config.json)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from layotto.config import layotto_json
from layotto.sidecar import Sidecar
from layotto.wasm import WasmServer
from tests.support.sidecar import free_port, layotto_config

#: Embedded backends for every block a function reaches.
COMPONENTS: dict[str, Any] = {
    "state": {"state_demo": {"type": "in-memory"}},
    "pub_subs": {"ps": {"type": "in-memory"}},
    "sequencer": {"seq": {"type": "in-memory"}},
    "lock": {"lk": {"type": "in-memory"}},
    "config_store": {"cfg": {"type": "in-memory"}},
    "secret_store": {"env": {"type": "local.env", "metadata": {"prefix": "WASM_TEST_"}}},
}

_PROXY = [
    {
        "filters": [
            {
                "type": "proxy",
                "config": {"downstream_protocol": "Http1", "upstream_protocol": "Http1", "router_config_name": "r"},
            }
        ]
    }
]


def function(path: Path, *, instances: int = 1, **limits: Any) -> dict[str, Any]:
    """One entry of the `Layotto` filter's config; `limits` are timeout_ms / memory_mb."""
    entry: dict[str, Any] = {
        "name": path.stem,
        "instance_num": instances,
        "vm_config": {"engine": "wasmtime", "path": str(path)},
    }
    if limits:
        entry["limits"] = limits
    return entry


def blocks(directory: Path, **functions: dict[str, Any]) -> dict[str, Any]:
    """The `blocks` guest under each id given, with that id's `function` options."""
    from tests.wasm import guests

    return {fid: function(guests.write(directory, "blocks", id=fid), **options) for fid, options in functions.items()}


def config(
    functions: dict[str, Any],
    *,
    grpc_port: int,
    wasm_port: int,
    admin_port: int | None = None,
    actuator_port: int | None = None,
    grpc_config: dict[str, Any] | None = None,
    tracing: dict[str, Any] | None = None,
) -> dict[str, Any]:
    doc = layotto_config(grpc_config or COMPONENTS, grpc_port=grpc_port, actuator_port=actuator_port, tracing=tracing)
    listeners = doc["servers"][0]["listeners"]
    listeners.append(
        {
            "name": "wasm",
            "address": f"127.0.0.1:{wasm_port}",
            "filter_chains": _PROXY,
            "stream_filters": [{"type": "Layotto", "config": functions}],
        }
    )
    if admin_port is not None:
        listeners.append(
            {
                "name": "wasm_filter",
                "address": f"127.0.0.1:{admin_port}",
                "filter_chains": _PROXY,
                "stream_filters": [{"type": "wasm_filter"}],
            }
        )
    return doc


@dataclass
class Running:
    sidecar: Sidecar
    grpc: str
    url: str
    admin: str
    http: aiohttp.ClientSession

    @property
    def wasm(self) -> WasmServer:
        assert self.sidecar.wasm is not None
        return self.sidecar.wasm

    async def call(self, function_id: str, body: bytes = b"", **headers: str) -> tuple[int, str]:
        """One request to a function: (status, body text)."""
        async with self.http.post(self.url, data=body, headers={"id": function_id, **headers}) as response:
            return response.status, await response.text()


@contextlib.asynccontextmanager
async def running(functions: dict[str, Any], **kwargs: Any) -> AsyncIterator[Running]:
    grpc_port, wasm_port, admin_port = free_port(), free_port(), free_port()
    doc = config(functions, grpc_port=grpc_port, wasm_port=wasm_port, admin_port=admin_port, **kwargs)
    sidecar = Sidecar(layotto_json.load_document(doc, source="<test>"))
    await sidecar.start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            yield Running(
                sidecar,
                f"127.0.0.1:{grpc_port}",
                f"http://127.0.0.1:{wasm_port}/",
                f"http://127.0.0.1:{admin_port}",
                http,
            )
    finally:
        await sidecar.stop()
