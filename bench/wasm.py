"""GetState through a WASM function, beside GetState over gRPC on the same sidecar, run in its
own process by bench.run.

The sidecar serves upstream's demo function 2 (rebuilt from tests/wasm/guests/server.wat: the
body names a key, the function answers its value through proxy_get_state) on an HTTP/1
listener. `function`: each of `concurrency` workers POSTs the key with the function's id and
waits for the value. `grpc`: the same closed loop with GetState on the sidecar's gRPC port.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import psutil

from bench.loadgen import drive
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import free_port
from tests.wasm import guests
from tests.wasm.support import config, function

STORE = "state_demo"


async def _run(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.run import _peak_rss_mb, _wait_ready

    workdir = Path(tempfile.mkdtemp(prefix="layotto-bench-wasm-"))
    grpc_port, wasm_port = free_port(), free_port()
    functions = {"function2": function(guests.write(workdir, "server", id="id_2"), instances=spec.get("instances", 2))}
    doc = config(
        functions, grpc_port=grpc_port, wasm_port=wasm_port, grpc_config={"state": {STORE: {"type": "in-memory"}}}
    )
    path = workdir / "bench-config.json"
    path.write_text(json.dumps(doc))
    log = (workdir / "sidecar.log").open("ab")
    env = {**os.environ, "LAYOTTO_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "layotto.cli", "start", "-c", str(path)]
    # Started off the loop: nothing else runs in this process yet, but the lint is right in general.
    proc = await asyncio.to_thread(subprocess.Popen, command, stdout=log, stderr=log, env=env)
    address = f"127.0.0.1:{grpc_port}"
    ps = psutil.Process(proc.pid)
    key, value = f"bench-{uuid.uuid4().hex[:8]}", b"v" * spec.get("value_size", 100)
    try:
        await asyncio.to_thread(_wait_ready, address, proc)
        async with (
            grpc.aio.insecure_channel(address) as channel,
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http,
        ):
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            await stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[pb.StateItem(key=key, value=value)]))
            url, headers, errors = f"http://127.0.0.1:{wasm_port}/", {"id": "id_2"}, 0

            async def through_function() -> None:
                nonlocal errors
                async with http.post(url, data=key.encode(), headers=headers) as response:
                    if response.status != 200 or await response.read() != value:
                        errors += 1

            async def over_grpc() -> None:
                await stub.GetState(pb.GetStateRequest(store_name=STORE, key=key))

            call = through_function if spec["variant"] == "function" else over_grpc
            for _ in range(20):  # the function's instances and the connections, warm
                await call()
            cpu0 = sum(ps.cpu_times()[:2])
            result = await drive(lambda _: call, spec["concurrency"], spec["warmup"], spec["duration"])
            result["errors"] += errors
            result["cpu_s_per_1k"] = (sum(ps.cpu_times()[:2]) - cpu0) / max(1, result["total_calls"]) * 1000
            result["peak_rss_mb"] = _peak_rss_mb(ps.pid)
            return result
    finally:
        proc.terminate()
        await asyncio.to_thread(proc.wait, 10)


def main() -> None:
    json.dump(asyncio.run(_run(json.loads(sys.argv[1]))), sys.stdout)


if __name__ == "__main__":
    main()
