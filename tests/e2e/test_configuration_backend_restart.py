"""Configuration subscriptions survive their backend going away.

Each test runs its OWN etcd / redis-server on free ports (own data dir), kills it and starts it
again, so the shared services other suites use are never disturbed.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aetcd
import grpc
import pytest
import redis.asyncio as aioredis

from layotto.components.configuration.base import ConfigurationStore
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.hooks import subscription_count
from tests.support.services import reachable, require_binary
from tests.support.sidecar import free_port, running_sidecar

STORE = "cfg"


class Server:
    """A backend process that can be SIGKILLed and started again on the same port and data."""

    def __init__(self, argv: list[str], port: int, workdir: Path) -> None:
        self.argv = argv
        self.port = port
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = (self.workdir / "server.log").open("ab")
        self.proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        deadline = time.monotonic() + 15
        while not reachable("127.0.0.1", self.port, timeout=0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((self.workdir / "server.log").read_text(errors="replace"))
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="layotto-cfg-restart-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def etcd(workdir: Path) -> Iterator[Server]:
    require_binary("etcd")
    client, peer = free_port(), free_port()
    argv = ["etcd", "--name", "default", "--data-dir", str(workdir / "data")]
    argv += ["--listen-client-urls", f"http://127.0.0.1:{client}"]
    argv += ["--advertise-client-urls", f"http://127.0.0.1:{client}"]
    argv += ["--listen-peer-urls", f"http://127.0.0.1:{peer}"]
    argv += ["--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}"]
    argv += ["--initial-cluster", f"default=http://127.0.0.1:{peer}"]
    server = Server(argv, client, workdir)
    server.start()
    yield server
    server.kill()


@pytest.fixture
def redis_server(workdir: Path) -> Iterator[Server]:
    require_binary("redis-server")
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "yes", "--dir", str(workdir)]
    server = Server(argv, port, workdir)
    server.start()
    yield server
    server.kill()


async def _stream(stub: runtime_pb2_grpc.RuntimeStub, app_id: str, keys: list[str]) -> Any:
    async def requests() -> AsyncIterator[pb.SubscribeConfigurationRequest]:
        yield pb.SubscribeConfigurationRequest(store_name=STORE, app_id=app_id, keys=keys)
        await asyncio.Event().wait()  # keep the request side open, as the SDKs do

    return stub.SubscribeConfiguration(requests())


async def _until(call: Any, key: str, content: str, within: float) -> float:
    started = time.monotonic()
    deadline = started + within
    while True:
        reply = await asyncio.wait_for(call.read(), max(0.01, deadline - time.monotonic()))
        assert reply is not grpc.aio.EOF
        if any(i.key == key and i.content == content for i in reply.items):
            return time.monotonic() - started


async def _registered(sidecar: Any) -> None:
    store = sidecar.rt.get("configuration", STORE)
    assert isinstance(store, ConfigurationStore)
    deadline = time.monotonic() + 5
    while subscription_count(store) == 0:
        assert time.monotonic() < deadline, "subscription never registered"
        await asyncio.sleep(0.01)


async def test_etcd_restart_keeps_subscription(etcd: Server) -> None:
    app_id = f"app-{uuid.uuid4().hex[:10]}"
    config = {
        "app": {"app_id": app_id},
        "config_store": {STORE: {"type": "etcd", "address": [f"127.0.0.1:{etcd.port}"], "timeout": "2"}},
    }
    async with running_sidecar(config) as (sidecar, address), grpc.aio.insecure_channel(address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        call = await _stream(stub, app_id, ["k"])
        await _registered(sidecar)
        item = pb.ConfigurationItem(key="k", content="before")
        await stub.SaveConfiguration(pb.SaveConfigurationRequest(store_name=STORE, app_id=app_id, items=[item]))
        await _until(call, "k", "before", 1.0)

        etcd.kill()
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await stub.GetConfiguration(pb.GetConfigurationRequest(store_name=STORE, app_id=app_id, keys=["k"]))
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "etcd at 127.0.0.1:" in (err.value.details() or "")

        etcd.start()
        # Written by another client the moment etcd is back: the resumed watch must catch it.
        async with aetcd.Client(port=etcd.port) as direct:
            await direct.put(f"/{app_id}/default/default/k".encode(), b"after-restart")
        latency = await _until(call, "k", "after-restart", 5.0)
        print(f"\netcd: change after restart pushed in {latency * 1000:.0f} ms")
        reply = await stub.GetConfiguration(pb.GetConfigurationRequest(store_name=STORE, app_id=app_id, keys=["k"]))
        assert [i.content for i in reply.items] == ["after-restart"]
        call.cancel()


def _redis_config(app_id: str, port: int) -> dict[str, Any]:
    return {
        "app": {"app_id": app_id},
        "config_store": {
            STORE: {"type": "redis", "metadata": {"redisHost": f"127.0.0.1:{port}", "keyLayout": "layotto"}}
        },
    }


async def _publish_unseen(direct: aioredis.Redis, app_id: str, content: str) -> None:
    """Kill every Pub/Sub connection, then change `k` and announce it: nobody hears the message,
    so only the re-read after resubscribing can report it."""
    async with direct.pipeline(transaction=False) as pipe:
        pipe.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
        pipe.hset(f"layotto-config:{app_id}:default:default", "k", content)
        pipe.publish(f"layotto-config:{app_id}", json.dumps({"group": "default", "label": "default", "items": []}))
        await pipe.execute()


async def test_redis_change_missed_while_disconnected_is_reported(redis_server: Server) -> None:
    app_id = f"app-{uuid.uuid4().hex[:10]}"
    async with running_sidecar(_redis_config(app_id, redis_server.port)) as (sidecar, address):
        async with grpc.aio.insecure_channel(address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            call = await _stream(stub, app_id, ["k"])
            await _registered(sidecar)
            direct = aioredis.Redis(port=redis_server.port)
            try:
                await _publish_unseen(direct, app_id, "missed-message")
                latency = await _until(call, "k", "missed-message", 2.0)
                print(f"\nredis: change made while disconnected pushed in {latency * 1000:.0f} ms")
            finally:
                await direct.aclose()

            redis_server.kill()
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await stub.GetConfiguration(pb.GetConfigurationRequest(store_name=STORE, app_id=app_id, keys=["k"]))
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
            redis_server.start()
            item = pb.ConfigurationItem(key="k", content="after-restart")
            await stub.SaveConfiguration(pb.SaveConfigurationRequest(store_name=STORE, app_id=app_id, items=[item]))
            latency = await _until(call, "k", "after-restart", 5.0)
            print(f"redis: change after restart pushed in {latency * 1000:.0f} ms")
            call.cancel()
