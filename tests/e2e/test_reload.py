"""Hot reload of components (runtime/reload.py): Dapr component files under --resources-path
(and, with --watch-config, the Layotto JSON file) reloaded while the sidecar serves."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis

from layotto.components.base import ComponentContext, Metadata
from layotto.components.custom.helloworld import HelloWorld
from layotto.components.state import base as state
from layotto.components.state.memory import InMemoryStateStore
from layotto.config import dapr_yaml, layotto_json
from layotto.config.model import RuntimeConfig
from layotto.runtime.delivery import DeliveryService
from layotto.runtime.registry import ComponentRegistry
from layotto.runtime.reload import Reloader
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.extension.v1.delay_queue import delay_queue_pb2, delay_queue_pb2_grpc
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.e2e.test_app_subscriptions import HttpApp, serving
from tests.support.services import require
from tests.support.sidecar import free_port, layotto_config, wait_for_sidecar

APP_ID = "reload-app"


def component(name: str, type_: str, **metadata: str) -> str:
    items = "".join(f"\n  - name: {k}\n    value: {json.dumps(v)}" for k, v in metadata.items())
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\n"
        f"metadata:\n  name: {name}\nspec:\n  type: {type_}\n  version: v1\n  metadata:{items or ' []'}\n"
    )


def write(path: Path, text: str) -> None:
    """As a deployment does: write beside, then rename over."""
    staged = path.with_name(f".{path.name}.new")
    staged.write_text(text)
    os.replace(staged, path)


def reloader(sidecar: Sidecar) -> Reloader:
    assert sidecar.reloader is not None
    return sidecar.reloader


@contextlib.asynccontextmanager
async def sidecar_over(folder: Path, registry: ComponentRegistry | None = None) -> AsyncIterator[Sidecar]:
    """An in-process sidecar on the components of `folder`, looking at them every 50 ms."""
    cfg = RuntimeConfig(grpc_address=f"127.0.0.1:{free_port()}", actuator_address=None, source=str(folder))
    cfg.app.app_id = APP_ID
    dapr_yaml.load_into(cfg, str(folder))
    cfg.resources_path = str(folder)
    sidecar = Sidecar(cfg, registry)
    await sidecar.start()
    reloader(sidecar).interval = 0.05
    try:
        yield sidecar
    finally:
        await sidecar.stop()


@contextlib.asynccontextmanager
async def client(sidecar: Sidecar) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    async with grpc.aio.insecure_channel(sidecar.config.grpc_address) as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)


async def until(sidecar: Sidecar, predicate: Callable[[], bool]) -> None:
    """Until `predicate` holds after a reload was applied or refused (at most 10 s)."""
    await asyncio.wait_for(reloader(sidecar).wait_for(predicate), 10.0)


async def eventually(predicate: Callable[[], bool]) -> None:
    """Until `predicate` holds, looking every 10 ms, at most 10 s (for what no event announces)."""
    deadline = asyncio.get_running_loop().time() + 10.0
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def round_trip(stub: runtime_pb2_grpc.RuntimeStub, store: str, key: str) -> None:
    value = f"{store}/{key}".encode()
    await stub.SaveState(pb.SaveStateRequest(store_name=store, states=[pb.StateItem(key=key, value=value)]))
    got = await stub.GetState(pb.GetStateRequest(store_name=store, key=key))
    assert got.data == value, (store, key, got.data)


async def test_a_changed_file_reloads_its_component_under_load_without_a_failed_call(tmp_path: Path) -> None:
    require("redis")
    old_prefix, new_prefix = f"v1-{uuid.uuid4().hex[:8]}", f"v2-{uuid.uuid4().hex[:8]}"
    write(tmp_path / "a.yaml", component("store-a", "state.in-memory"))
    write(tmp_path / "b.yaml", component("store-b", "state.redis", redisHost="127.0.0.1:6379", keyPrefix=old_prefix))
    redis = aioredis.Redis(host="127.0.0.1", port=6379)
    async with sidecar_over(tmp_path) as sidecar, client(sidecar) as stub:
        store_a = sidecar.rt.get("state", "store-a")
        store_b = sidecar.rt.get("state", "store-b")
        calls = {"store-a": 0, "store-b": 0}
        failures: list[tuple[str, str]] = []
        #: B's reads that found nothing: a write under the old prefix read under the new one.
        straddling: list[str] = []
        stop = asyncio.Event()

        async def hammer(worker: int, store: str) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                key = f"w{worker}-{i}"
                value = f"{store}/{key}".encode()
                try:
                    await stub.SaveState(
                        pb.SaveStateRequest(store_name=store, states=[pb.StateItem(key=key, value=value)])
                    )
                    got = await stub.GetState(pb.GetStateRequest(store_name=store, key=key))
                except grpc.aio.AioRpcError as exc:
                    failures.append((store, f"{exc.code().name}: {exc.details()}"))
                else:
                    if got.data == b"" and store == "store-b":
                        straddling.append(key)
                    elif got.data != value:
                        failures.append((store, f"{key} read {got.data!r}"))
                calls[store] += 1

        load = [asyncio.ensure_future(hammer(w, s)) for w in range(4) for s in calls]
        await eventually(lambda: min(calls.values()) >= 50)
        write(
            tmp_path / "b.yaml", component("store-b", "state.redis", redisHost="127.0.0.1:6379", keyPrefix=new_prefix)
        )
        await until(sidecar, lambda: reloader(sidecar).applied == 1)
        after = dict(calls)
        await eventually(lambda: min(calls[s] - after[s] for s in calls) >= 100)
        stop.set()
        await asyncio.gather(*load)
        assert failures == []
        assert len(straddling) <= 4  # at most one call per client spans the swap
        # Only B was made again; A is the component it was.
        assert sidecar.rt.get("state", "store-a") is store_a
        assert sidecar.rt.get("state", "store-b") is not store_b
        # B's new metadata is in effect: what it stores now is under the new prefix.
        await round_trip(stub, "store-b", "after")
        assert await redis.exists(f"{new_prefix}||after") == 1
        assert await redis.exists(f"{old_prefix}||after") == 0
        assert await redis.exists(f"{old_prefix}||w0-1") == 1
    for pattern in (old_prefix, new_prefix):
        keys = [k async for k in redis.scan_iter(f"{pattern}||*")]
        if keys:
            await redis.delete(*keys)
    await redis.aclose()


#: The calls the gated store holds until the test lets them go, and the stores closed.
GATE = asyncio.Event()
CLOSED: list[GatedStore] = []


class GatedStore(InMemoryStateStore):
    """In-memory state whose reads of key `slow` wait for GATE."""

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.label = metadata.get_str("label")

    async def get(self, request: state.GetRequest) -> state.GetResponse | None:
        if request.key.endswith("||slow"):  # after the app id prefix Dapr manifests default to
            await GATE.wait()
            return state.GetResponse(self.label.encode(), "1")
        return await super().get(request)

    async def close(self) -> None:
        CLOSED.append(self)


async def test_calls_in_progress_finish_on_the_old_component_before_it_closes(tmp_path: Path) -> None:
    GATE.clear()
    CLOSED.clear()
    write(tmp_path / "gated.yaml", component("gated", "state.gated", label="old"))
    registry = ComponentRegistry({("state", "gated"): GatedStore})
    async with sidecar_over(tmp_path, registry) as sidecar, client(sidecar) as stub:
        old = sidecar.rt.get("state", "gated")
        slow = asyncio.ensure_future(stub.GetState(pb.GetStateRequest(store_name="gated", key="slow")))
        await eventually(lambda: sidecar.rt.calls.calls(old) == 1)
        generation = sidecar.rt.generation
        write(tmp_path / "gated.yaml", component("gated", "state.gated", label="new"))
        await eventually(lambda: sidecar.rt.generation != generation)
        # Swapped: new calls reach the new component while the old one still serves its call.
        new = sidecar.rt.get("state", "gated")
        assert new is not old and isinstance(new, GatedStore) and new.label == "new"
        await round_trip(stub, "gated", "k")
        assert not slow.done() and CLOSED == []
        GATE.set()
        reply = await slow
        assert reply.data == b"old"
        await until(sidecar, lambda: reloader(sidecar).applied == 1)
        assert CLOSED == [old]


async def test_an_added_file_adds_its_component_and_a_removed_one_removes_it(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", component("store-a", "state.in-memory"))
    async with sidecar_over(tmp_path) as sidecar, client(sidecar) as stub:
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await round_trip(stub, "store-c", "k")
        assert missing.value.details() == "state store store-c is not found"
        write(tmp_path / "c.yml", component("store-c", "state.in-memory"))
        await until(sidecar, lambda: reloader(sidecar).applied == 1)
        await round_trip(stub, "store-c", "k")
        (tmp_path / "c.yml").unlink()
        await until(sidecar, lambda: reloader(sidecar).applied == 2)
        with pytest.raises(grpc.aio.AioRpcError) as removed:
            await round_trip(stub, "store-c", "k")
        assert removed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert removed.value.details() == "state store store-c is not found"
        await round_trip(stub, "store-a", "k")


@pytest.mark.parametrize(
    ("broken", "why"),
    [
        (component("store-b", "state.nosuch"), "unknown state component type 'nosuch'"),
        ("apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: store-b\n", "malformed YAML"),
        (component("store-b", "state.redis"), "redis store error: missing host address"),
    ],
    ids=["unknown-type", "malformed", "init-fails"],
)
async def test_a_broken_definition_keeps_the_running_component_and_logs_why(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, broken: str, why: str
) -> None:
    caplog.set_level(logging.INFO, "layotto.reload")
    write(tmp_path / "b.yaml", component("store-b", "state.in-memory"))
    async with sidecar_over(tmp_path) as sidecar, client(sidecar) as stub:
        await round_trip(stub, "store-b", "before")
        running = sidecar.rt.get("state", "store-b")
        write(tmp_path / "b.yaml", broken)
        await until(sidecar, lambda: reloader(sidecar).refused == 1)
        assert sidecar.rt.get("state", "store-b") is running
        got = await stub.GetState(pb.GetStateRequest(store_name="store-b", key="before"))
        assert got.data == b"store-b/before"
        refusal = [r for r in caplog.records if r.name == "layotto.reload" and r.levelno == logging.ERROR]
        assert len(refusal) == 1
        assert "b.yaml changed, and is not applied" in refusal[0].getMessage()
        assert why in refusal[0].getMessage() and "running components are kept" in refusal[0].getMessage()
        # Fixed again: applied, and the refused version is not retried meanwhile.
        write(tmp_path / "b.yaml", component("store-b", "state.in-memory", keyPrefix="name"))
        await until(sidecar, lambda: reloader(sidecar).applied == 1)
        assert reloader(sidecar).refused == 1
        await round_trip(stub, "store-b", "fixed")


async def test_a_reloaded_pubsub_publishes_and_has_a_delay_queue_of_its_own(tmp_path: Path) -> None:
    write(tmp_path / "events.yaml", component("events", "pubsub.in-memory"))
    async with sidecar_over(tmp_path) as sidecar, grpc.aio.insecure_channel(sidecar.config.grpc_address) as channel:
        scheduler = sidecar.delay_schedulers["events"]
        write(tmp_path / "events.yaml", component("events", "pubsub.in-memory", consumerID="other"))
        await until(sidecar, lambda: reloader(sidecar).applied == 1)
        assert sidecar.delay_schedulers["events"] is not scheduler
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        await stub.PublishEvent(pb.PublishEventRequest(pubsub_name="events", topic="t", data=b"x"))
        delay = delay_queue_pb2_grpc.DelayQueueStub(channel)
        request = delay_queue_pb2.DelayMessageRequest(
            component_name="events", topic="t", data=b"x", delay_in_seconds=60
        )
        assert (await delay.PublishDelayMessage(request)).message_id


async def test_events_reach_the_app_through_a_reloaded_pubsub(tmp_path: Path) -> None:
    app = HttpApp([{"pubsubname": "events", "topic": "t", "route": "/t"}])
    write(tmp_path / "events.yaml", component("events", "pubsub.in-memory"))
    cfg = RuntimeConfig(grpc_address=f"127.0.0.1:{free_port()}", actuator_address=None, source=str(tmp_path))
    dapr_yaml.load_into(cfg, str(tmp_path))
    cfg.resources_path = str(tmp_path)
    async with serving(app) as port:
        cfg.app.http_port = port
        sidecar = Sidecar(cfg)
        await sidecar.start()
        try:
            reloader(sidecar).interval = 0.05

            async def delivering() -> None:
                delivery = next(s for s in sidecar.rt.services if isinstance(s, DeliveryService))
                await asyncio.wait_for(delivery.ready.wait(), 10)

            await delivering()
            async with client(sidecar) as stub:
                await stub.PublishEvent(pb.PublishEventRequest(pubsub_name="events", topic="t", data=b"before"))
                assert (await app.next_event())[1]["data"] == "before"
                write(tmp_path / "events.yaml", component("events", "pubsub.in-memory", consumerID="again"))
                await until(sidecar, lambda: reloader(sidecar).applied == 1)
                await delivering()
                await stub.PublishEvent(pb.PublishEventRequest(pubsub_name="events", topic="t", data=b"after"))
                assert (await app.next_event())[1]["data"] == "after"
        finally:
            await sidecar.stop()


async def test_a_definition_its_core_refuses_keeps_the_running_component(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write(tmp_path / "lock.yaml", component("locks", "lock.in-memory"))
    async with sidecar_over(tmp_path) as sidecar:
        running = sidecar.rt.get("lock", "locks")
        write(tmp_path / "lock.yaml", component("locks", "lock.in-memory", keyPrefix="a||b"))
        await until(sidecar, lambda: reloader(sidecar).refused == 1)
        assert sidecar.rt.get("lock", "locks") is running
        assert "input key/keyPrefix 'a||b' can't contain '||'" in caplog.text


async def test_a_rewritten_file_with_the_same_components_changes_nothing(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", component("store-a", "state.in-memory"))
    async with sidecar_over(tmp_path) as sidecar:
        running = sidecar.rt.get("state", "store-a")
        write(tmp_path / "a.yaml", "# a comment\n" + component("store-a", "state.in-memory"))
        await until(sidecar, lambda: reloader(sidecar).applied == 1)
        assert sidecar.rt.get("state", "store-a") is running
        assert sidecar.rt.generation == 0


async def test_a_component_named_by_another_file_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path / "a.yaml", component("store-a", "state.in-memory"))
    async with sidecar_over(tmp_path) as sidecar:
        write(tmp_path / "b.yaml", component("store-a", "state.in-memory", keyPrefix="name"))
        await until(sidecar, lambda: reloader(sidecar).refused == 1)
        assert "duplicate state component name 'store-a'" in caplog.text


async def test_a_changed_secret_store_brings_the_components_referencing_it_along(tmp_path: Path) -> None:
    """The component whose metadata came from the old store is made again from the new one."""
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "one.json").write_text(json.dumps({"greeting": "Hi"}))
    (secrets / "two.json").write_text(json.dumps({"greeting": "Bonjour"}))
    folder = tmp_path / "components"
    folder.mkdir()
    write(folder / "secrets.yaml", component("vault", "secretstores.local.file", secretsFile=str(secrets / "one.json")))
    from_secret = "  metadata:\n  - name: greeting\n    secretKeyRef: {name: greeting, key: greeting}\n"
    greeter = component("demo", "custom.helloworld.in-memory").replace("  metadata: []\n", from_secret)
    greeter += "auth:\n  secretStore: vault\n"
    write(folder / "greeter.yaml", greeter)
    async with sidecar_over(folder) as sidecar:
        demo = sidecar.rt.custom("helloworld")["demo"]
        assert isinstance(demo, HelloWorld) and await demo.say_hello("x") == "Hi x"
        write(
            folder / "secrets.yaml",
            component("vault", "secretstores.local.file", secretsFile=str(secrets / "two.json")),
        )
        await until(sidecar, lambda: reloader(sidecar).applied == 1)
        demo = sidecar.rt.custom("helloworld")["demo"]
        assert isinstance(demo, HelloWorld) and await demo.say_hello("x") == "Bonjour x"
        # A store others reference is not removed from under them.
        (folder / "secrets.yaml").unlink()
        await until(sidecar, lambda: reloader(sidecar).refused == 1)
        assert sidecar.rt.get("secretstores", "vault") is not None


async def test_watch_config_reloads_a_changed_component_entry_of_the_json_file(tmp_path: Path) -> None:
    port = free_port()

    def document(greeting: str) -> dict[str, Any]:
        grpc_config = {
            "app": {"app_id": APP_ID},
            "hellos": {"quick": {"type": "helloworld", "hello": greeting}},
            "state": {"store": {"type": "in-memory"}},
        }
        return layotto_config(grpc_config, grpc_port=port)

    path = tmp_path / "config.json"
    path.write_text(json.dumps(document("greeting")))
    cfg = layotto_json.load_file(path)
    cfg.watch_config = True
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        reloader(sidecar).interval = 0.05
        store = sidecar.rt.get("state", "store")
        async with client(sidecar) as stub:
            assert (await stub.SayHello(pb.SayHelloRequest(service_name="quick"))).hello == "greeting"
            write(path, json.dumps(document("bonjour")))
            await until(sidecar, lambda: reloader(sidecar).applied == 1)
            assert (await stub.SayHello(pb.SayHelloRequest(service_name="quick"))).hello == "bonjour"
        assert sidecar.rt.get("state", "store") is store
    finally:
        await sidecar.stop()


def test_the_watch_config_flag_of_layotto_start(tmp_path: Path) -> None:
    """The command's flag, in a sidecar process of its own (its files looked at every 0.5 s)."""
    port = free_port()

    def document(greeting: str) -> str:
        return json.dumps(
            layotto_config({"hellos": {"quick": {"type": "helloworld", "hello": greeting}}}, grpc_port=port)
        )

    path, log = tmp_path / "config.json", tmp_path / "sidecar.log"
    path.write_text(document("greeting"))
    with log.open("wb") as out:
        argv = [sys.executable, "-m", "layotto.cli", "start", "-c", str(path), "--watch-config"]
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_sidecar(proc, f"127.0.0.1:{port}", log)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            assert stub.SayHello(pb.SayHelloRequest(service_name="quick")).hello == "greeting"
            write(path, document("bonjour"))
            deadline = time.monotonic() + 10
            while stub.SayHello(pb.SayHelloRequest(service_name="quick")).hello != "bonjour":
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    assert "reloaded: hello 'quick' changed" in log.read_text()


async def test_without_watch_config_the_json_file_is_not_watched(tmp_path: Path) -> None:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(layotto_config({"hellos": {"q": {"type": "helloworld"}}}, grpc_port=free_port())))
    sidecar = Sidecar(layotto_json.load_file(path))
    await sidecar.start()
    try:
        assert sidecar.reloader is None and not sidecar.rt.swappable
    finally:
        await sidecar.stop()
