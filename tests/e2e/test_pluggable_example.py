"""docs/extending.md's example, run as it says: examples/pluggable_state/memstore.py in a process,
then `layotto start --resources-path examples/pluggable_state/components` in another, both with
`DAPR_COMPONENTS_SOCKETS_FOLDER`; the store serves Dapr's gRPC and HTTP APIs and Layotto's."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp
import grpc

from tests.api.clients import DAPR, LAYOTTO, Item, client
from tests.contract.pluggable_process import ROOT, ComponentProcess, socket_folder
from tests.support.sidecar import free_port, wait_for_sidecar

EXAMPLE = ROOT / "examples" / "pluggable_state"


async def test_the_python_example_store() -> None:
    folder = socket_folder()
    env = {"DAPR_COMPONENTS_SOCKETS_FOLDER": str(folder)}
    argv = [sys.executable, str(EXAMPLE / "memstore.py")]
    store = await ComponentProcess("memstore", folder / "memstore.sock", argv=argv, env=env).start()
    grpc_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="layotto-example-") as scratch:
        log = Path(scratch) / "sidecar.log"
        command = [
            *(sys.executable, "-m", "layotto.cli", "start"),
            *("--resources-path", str(EXAMPLE / "components"), "--app-id", "example"),
            *("--dapr-grpc-port", str(grpc_port), "--dapr-http-port", str(http_port)),
        ]
        with log.open("ab") as out:
            sidecar = subprocess.Popen(  # noqa: ASYNC220  (waited for below, in a thread)
                command, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
            )
        try:
            await asyncio.to_thread(wait_for_sidecar, sidecar, f"127.0.0.1:{grpc_port}", log)
            async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
                await client(DAPR, channel).save_state("statestore", Item("order-1", b'{"status":"paid"}'))
                # No etags: the store reports no features.
                assert await client(LAYOTTO, channel).get_state("statestore", "order-1") == (b'{"status":"paid"}', "")
            async with aiohttp.ClientSession() as http:
                url = f"http://127.0.0.1:{http_port}/v1.0/state/statestore"
                async with http.post(url, json=[{"key": "order-2", "value": {"status": "shipped"}}]) as saved:
                    assert saved.status == 204, await saved.text()
                async with http.get(f"{url}/order-2") as got:
                    assert (got.status, await got.json()) == (200, {"status": "shipped"})
                async with http.delete(f"{url}/order-1") as deleted:
                    assert deleted.status == 204
                async with http.get(f"{url}/order-1") as gone:
                    assert gone.status == 204
        finally:
            sidecar.terminate()
            assert await asyncio.to_thread(sidecar.wait, 20) == 0, log.read_text(errors="replace")
            store.stop()
