"""WASM functions through a real sidecar: upstream's flow, every host call, routing."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import grpc
import pytest

from layotto.components.configuration.base import ConfigItem
from layotto.components.configuration.base import SetRequest as ConfigSet
from layotto.components.pubsub.base import Message
from layotto.wasm.abi import WasmResult, decode_pairs
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.wasm import guests, support
from tests.wasm.support import Running, function, running

OK, NOT_FOUND, BAD_ARGUMENT = WasmResult.OK, WasmResult.NOT_FOUND, WasmResult.BAD_ARGUMENT


@pytest.fixture
def demo(tmp_path: Path) -> dict[str, object]:
    """Upstream's two demo functions, rebuilt from the WAT sources of this repository."""
    return {
        "function1": function(guests.write(tmp_path, "client", id="id_1")),
        "function2": function(guests.write(tmp_path, "server", id="id_2")),
    }


async def _save(address: str, key: str, value: bytes) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        item = pb.StateItem(key=key, value=value)
        await runtime_pb2_grpc.RuntimeStub(channel).SaveState(
            pb.SaveStateRequest(store_name="state_demo", states=[item])
        )


async def test_upstream_flow_get_state_through_function_to_function_invoke(demo: dict[str, object]) -> None:
    async with running(demo) as rt:
        await _save(rt.grpc, "book1", b"100")
        # Upstream's demo request: curl -H 'id:id_1' 'localhost:2045?name=book1'
        async with rt.http.get(rt.url + "?name=book1", headers={"id": "id_1"}) as response:
            assert response.status == 200
            assert await response.text() == "There are 100 inventories for book1."
        assert await rt.call("id_2", b"book1") == (200, "100")
        # A book nobody saved: upstream's GetState answers Ok with no data.
        assert await rt.call("id_1", b"name=book2") == (200, "There are  inventories for book2.")


async def test_unknown_and_missing_function_id(demo: dict[str, object]) -> None:
    async with running(demo) as rt:
        status, text = await rt.call("id_9", b"x")
        assert (status, text) == (404, "no function with id 'id_9' is loaded")
        async with rt.http.post(rt.url, data=b"x") as response:
            assert response.status == 400
            assert "`id` header" in await response.text()
        # The guest pauses (its demo code does when the query has no name): an error, not an answer.
        status, text = await rt.call("id_1", b"title=x")
        assert (status, text) == (500, "function id_1 paused the request")


@pytest.fixture
def blocks(tmp_path: Path) -> dict[str, object]:
    return support.blocks(tmp_path, fn_a={}, fn_b={})


async def _op(rt: Running, op: str, body: bytes = b"", function_id: str = "fn_a", **headers: str) -> str:
    status, text = await rt.call(function_id, body, op=op, **headers)
    assert status == 200, text
    return text


async def test_state_save_get_delete_through_the_state_core(blocks: dict[str, object]) -> None:
    async with running(blocks) as rt:
        assert await _op(rt, "save", b"42", store="state_demo", key="k1") == f"{OK}:"
        assert await _op(rt, "get", store="state_demo", key="k1") == f"{OK}:42"
        # The same data as the gRPC API's: one core, one key layout.
        async with grpc.aio.insecure_channel(rt.grpc) as channel:
            got = await runtime_pb2_grpc.RuntimeStub(channel).GetState(
                pb.GetStateRequest(store_name="state_demo", key="k1")
            )
        assert got.data == b"42"
        assert await _op(rt, "delete", store="state_demo", key="k1") == f"{OK}:"
        assert await _op(rt, "get", store="state_demo", key="k1") == f"{OK}:"
        # Problems of the core, answered from wasm/answers.toml.
        assert await _op(rt, "get", store="nope", key="k1") == f"{NOT_FOUND}:"
        assert await _op(rt, "save", b"x", store="state_demo", key="") == f"{BAD_ARGUMENT}:"
        assert await _op(rt, "get", store="state_demo", key="a||b") == f"{BAD_ARGUMENT}:"


async def test_publish_reaches_subscribers_as_a_cloudevent(blocks: dict[str, object]) -> None:
    async with running(blocks) as rt:
        got: asyncio.Queue[Message] = asyncio.Queue()

        async def handler(message: Message) -> bool:
            await got.put(message)
            return True

        pubsub = rt.sidecar.rt.components("pubsub")["ps"]
        subscription = await pubsub.subscribe("orders", handler, {})  # type: ignore[attr-defined]
        try:
            text = await _op(rt, "publish", b'{"n": 1}', pubsub="ps", topic="orders", ct="application/json")
            assert text == f"{OK}:"
            event = json.loads((await asyncio.wait_for(got.get(), 5)).data)
            assert event["data"] == {"n": 1} and event["topic"] == "orders" and event["pubsubname"] == "ps"
        finally:
            await subscription.close()
        assert await _op(rt, "publish", b"x", pubsub="nope", topic="orders") == f"{NOT_FOUND}:"
        assert await _op(rt, "publish", b"x", pubsub="ps", topic="") == f"{BAD_ARGUMENT}:"


async def test_next_id_and_locks(blocks: dict[str, object]) -> None:
    async with running(blocks) as rt:
        first = await _op(rt, "next_id", store="seq", key="orders")
        second = await _op(rt, "next_id", store="seq", key="orders")
        assert first.startswith(f"{OK}:") and int(second.split(":")[1]) == int(first.split(":")[1]) + 1
        assert await _op(rt, "next_id", store="nope", key="orders") == f"{NOT_FOUND}:"
        lock = {"store": "lk", "resource": "r1"}
        assert await _op(rt, "try_lock", owner="me", **lock) == f"{OK}:1"
        assert await _op(rt, "try_lock", owner="you", **lock) == f"{OK}:0"
        assert await _op(rt, "unlock", owner="you", **lock) == f"{OK}:2"  # LOCK_BELONG_TO_OTHERS
        assert await _op(rt, "unlock", owner="me", **lock) == f"{OK}:0"  # SUCCESS
        assert await _op(rt, "try_lock", owner="", **lock) == f"{BAD_ARGUMENT}:"


async def test_configuration_and_secrets(blocks: dict[str, object], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASM_TEST_DB", "s3cret")
    async with running(blocks) as rt:
        store = rt.sidecar.rt.components("configuration")["cfg"]
        item = ConfigItem("colour", "blue", group=store.default_group, label=store.default_label)  # type: ignore[attr-defined]
        await store.set(ConfigSet("", [item]))  # type: ignore[attr-defined]
        assert await _op(rt, "config", store="cfg", key="colour") == f"{OK}:blue"
        assert await _op(rt, "config", store="nope", key="colour") == f"{NOT_FOUND}:"
        text = await _op(rt, "secret", store="env", key="DB")
        assert text.startswith(f"{OK}:")
        assert decode_pairs(text.split(":", 1)[1].encode()) == [("DB", "s3cret")]
        assert await _op(rt, "secret", store="nope", key="DB") == f"{NOT_FOUND}:"


async def test_output_binding(blocks: dict[str, object]) -> None:
    from aiohttp import web

    async def echo(request: web.Request) -> web.Response:
        return web.Response(body=b"got " + await request.read())

    app = web.Application()
    app.router.add_post("/hook", echo)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    components = {"bindings": {"hook": {"type": "http", "metadata": {"url": f"http://127.0.0.1:{port}/hook"}}}}
    try:
        async with running(blocks, grpc_config=components) as rt:
            assert await _op(rt, "binding", b"ping", name="hook", operation="post") == f"{OK}:got ping"
            assert await _op(rt, "binding", b"ping", name="hook", operation="fly") == f"{BAD_ARGUMENT}:"
            assert await _op(rt, "binding", b"ping", name="nope", operation="post") == f"{NOT_FOUND}:"
    finally:
        await runner.cleanup()


async def test_function_to_function_invoke_and_standard_host_calls(blocks: dict[str, object]) -> None:
    async with running(blocks) as rt:
        # fn_b, called by fn_a with no `op`, echoes what fn_a sent it.
        assert await _op(rt, "invoke", b"hello", target="fn_b") == f"{OK}:hello"
        # An id that is no function goes to the invocation engine: there is no app here.
        assert await _op(rt, "invoke", b"x", target="some-app", method="m") == f"{WasmResult.INTERNAL_FAILURE}:"
        assert await _op(rt, "log", b"hello from the guest") == f"{OK}:"
        assert await _op(rt, "property", b"plugin_name") == f"{OK}:fn_a"
        assert await _op(rt, "property", b"request\0method") == f"{OK}:POST"
        assert await _op(rt, "property", b"nothing") == f"{NOT_FOUND}:"
        assert await _op(rt, "shared", b"v1", key="sk") == f"{OK}:{OK}:v1"
        assert await _op(rt, "unimplemented") == f"{WasmResult.UNIMPLEMENTED}:"
        assert await _op(rt, "bad_pointer") == f"{WasmResult.INVALID_MEMORY_ACCESS}:"
        assert await rt.call("fn_a", b"same bytes") == (200, "same bytes")
        async with rt.http.post(rt.url, data=b"yes", headers={"id": "fn_a", "op": "header"}) as response:
            assert response.headers["x-guest"] == "yes"
            assert await response.text() == f"{OK}:"
        assert await rt.call("fn_a", b"teapot", op="local") == (418, "teapot")
