"""A pluggable state store (tests/contract/state/pluggable_store.py, a process of its own on a
Unix socket) through both gRPC APIs, declared either way: in Layotto JSON (`"type":
"test-pluggable-state"`) and in Dapr YAML (`type: state.test-pluggable-state`). The state
conformance suite runs it through the Layotto API (its `pluggable` row); here the same
behaviours go through Dapr's, with each API's codes and messages, and a component process that
dies and comes back on its socket.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from layotto.components.state.base import GetRequest, StateStore
from layotto.config import dapr_yaml, layotto_json
from layotto.runtime.registry import ComponentRegistry
from layotto.sidecar import Sidecar
from tests.api.clients import APIS, DAPR, LAYOTTO, Api, Item, client, failure
from tests.contract.pluggable_process import STATE_MODULE, ComponentProcess, socket_folder, state_registry
from tests.support.sidecar import free_port, layotto_config

C = grpc.StatusCode
APP_ID = "pluggable-state-app"
TYPE = "test-pluggable-state"
JSON_STORE, YAML_STORE = "json_store", "yaml_store"
STORES = [JSON_STORE, YAML_STORE]
WITHIN = 15.0

YAML = f"""
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: {YAML_STORE}
spec:
  type: state.{TYPE}
  version: v1
  metadata:
  - name: anySetting
    value: "passed to Init"
"""


def new_key() -> str:
    return f"pl-{uuid.uuid4().hex[:16]}"


async def _sidecar(registry: ComponentRegistry, resources: Path) -> tuple[Sidecar, str]:
    port = free_port()
    grpc_config = {"app": {"app_id": APP_ID}, "state": {JSON_STORE: {"type": TYPE, "metadata": {}}}}
    cfg = layotto_json.load_document(layotto_config(grpc_config, grpc_port=port), source="<test>")
    (resources / "store.yaml").write_text(YAML)
    dapr_yaml.load_into(cfg, str(resources))
    sidecar = Sidecar(cfg, registry)
    await sidecar.start()
    return sidecar, f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
async def running() -> AsyncIterator[tuple[Sidecar, grpc.aio.Channel]]:
    with tempfile.TemporaryDirectory(prefix="layotto-pluggable-yaml-") as resources:
        sidecar, address = await _sidecar(await state_registry(), Path(resources))
        try:
            async with grpc.aio.insecure_channel(address) as channel:
                yield sidecar, channel
        finally:
            await sidecar.stop()


@pytest.fixture(params=APIS)
def api(request: pytest.FixtureRequest, running: tuple[Sidecar, grpc.aio.Channel]) -> Api:
    return client(request.param, running[1])


@pytest.mark.parametrize("store", STORES)
async def test_save_get_delete_with_etags(api: Api, store: str) -> None:
    key = new_key()
    assert await api.get_state(store, key) == (b"", "")
    await api.save_state(store, Item(key, b"v1"))
    assert await api.get_state(store, key) == (b"v1", "1")
    await api.save_state(store, Item(key, b"v2", etag="1"))
    assert await api.get_state(store, key) == (b"v2", "2")
    await api.delete_state(store, key, etag="2")
    assert await api.get_state(store, key) == (b"", "")
    await api.delete_state(store, key)  # a missing key without an etag is no error


@pytest.mark.parametrize("store", STORES)
async def test_the_components_refusals_are_each_apis_answers(api: Api, store: str) -> None:
    key = new_key()
    await api.save_state(store, Item(key, b"a"))
    await api.save_state(store, Item(key, b"b"))
    assert await failure(api.save_state(store, Item(key, b"x", etag="1"))) == (
        C.ABORTED,
        f"failed saving state in state store {store}: possible etag mismatch",
    )
    assert await failure(api.save_state(store, Item(key, b"x", first_write=True))) == (
        C.ABORTED,
        f"failed saving state in state store {store}: possible etag mismatch: the key exists",
    )
    assert await failure(api.delete_state(store, key, etag="1")) == (
        C.ABORTED,
        f"failed deleting state with key {key}: possible etag mismatch",
    )
    # The etag's format is the component's: it refuses one that is not a version.
    assert await failure(api.save_state(store, Item(key, b"x", etag="not-a-number"))) == (
        C.INVALID_ARGUMENT,
        f"failed saving state in state store {store}: invalid etag value: 'not-a-number'",
    )
    assert await api.get_state(store, key) == (b"b", "2")


@pytest.mark.parametrize("store", STORES)
async def test_bulk_and_transactions(api: Api, store: str) -> None:
    keys = [new_key() for _ in range(3)]
    await api.save_state(store, *(Item(k, k.encode()) for k in keys))
    missing = new_key()
    assert await api.bulk_get(store, [keys[2], missing, keys[0]]) == [
        (keys[2], keys[2].encode(), "1", ""),
        (missing, b"", "", ""),
        (keys[0], keys[0].encode(), "1", ""),
    ]
    await api.bulk_delete(store, Item(keys[0]), Item(keys[1], etag="1"))
    assert [data for _, data, _, _ in await api.bulk_get(store, keys)] == [b"", b"", keys[2].encode()]

    kept, fresh = keys[2], new_key()
    await api.transaction(store, ("upsert", Item(kept, b"new", etag="1")), ("upsert", Item(fresh, b"f")))
    assert [await api.get_state(store, k) for k in (kept, fresh)] == [(b"new", "2"), (b"f", "1")]
    other = new_key()
    failed = api.transaction(store, ("upsert", Item(other, b"o")), ("delete", Item(kept, etag="1")))
    code = {LAYOTTO: C.INTERNAL, DAPR: C.ABORTED}[api.name]
    assert await failure(failed) == (code, "error while executing state transaction: possible etag mismatch")
    assert await api.get_state(store, other) == (b"", ""), "a failed transaction applies nothing"


async def test_ttl_the_component_reports(api: Api) -> None:
    key = new_key()
    await api.save_state(YAML_STORE, Item(key, b"soon gone", metadata={"ttlInSeconds": "1"}))
    assert await api.get_state(YAML_STORE, key) == (b"soon gone", "1")
    deadline = time.monotonic() + 5.0
    while (await api.get_state(YAML_STORE, key))[0]:
        assert time.monotonic() < deadline, "a key saved with ttlInSeconds=1 is still there after 5 s"
        await asyncio.sleep(0.1)


async def test_both_apis_read_one_store_under_daprs_key_layout(running: tuple[Sidecar, grpc.aio.Channel]) -> None:
    sidecar, channel = running
    key = new_key()
    await client(DAPR, channel).save_state(YAML_STORE, Item(key, b"from dapr"))
    assert await client(LAYOTTO, channel).get_state(YAML_STORE, key) == (b"from dapr", "1")
    component = sidecar.rt.get("state", YAML_STORE)
    assert isinstance(component, StateStore)
    found = await component.get(GetRequest(f"{APP_ID}||{key}"))
    assert found is not None and found.data == b"from dapr", "a Dapr YAML store keeps daprd's <app id>||<key>"


async def test_dapr_metadata_lists_the_features_the_component_reports(
    running: tuple[Sidecar, grpc.aio.Channel],
) -> None:
    from dapr.proto.runtime.v1 import dapr_pb2_grpc
    from google.protobuf import empty_pb2

    stub = dapr_pb2_grpc.DaprStub(running[1])  # type: ignore[no-untyped-call]
    reply = await stub.GetMetadata(empty_pb2.Empty())
    registered = {c.name: (c.type, list(c.capabilities)) for c in reply.registered_components}
    assert registered[YAML_STORE] == (f"state.{TYPE}", ["ETAG", "TRANSACTIONAL", "TTL"])
    assert registered[JSON_STORE] == (f"state.{TYPE}", ["ETAG", "TRANSACTIONAL", "TTL"])


# ---- a component process that dies ----


async def _until_served(api: Api, store: str, key: str) -> None:
    deadline = time.monotonic() + WITHIN
    while True:
        try:
            await api.save_state(store, Item(key, b"back"))
            return
        except grpc.aio.AioRpcError as exc:
            assert exc.code() == C.UNAVAILABLE, exc.details()
            assert time.monotonic() < deadline, f"still {exc.code().name} {WITHIN}s after the restart"
            await asyncio.sleep(0.05)


async def test_a_component_that_dies_is_unavailable_then_reconnected() -> None:
    folder = socket_folder()
    socket = folder / f"{TYPE}.sock"
    store = await ComponentProcess(STATE_MODULE, socket).start()
    try:
        with tempfile.TemporaryDirectory(prefix="layotto-pluggable-yaml-") as resources:
            sidecar, address = await _sidecar(ComponentRegistry(socket_folders=[str(folder)]), Path(resources))
            try:
                async with grpc.aio.insecure_channel(address) as channel:
                    apis = [client(name, channel) for name in APIS]
                    key = new_key()
                    await apis[0].save_state(JSON_STORE, Item(key, b"before"))

                    store.kill()  # SIGKILL: the socket file stays
                    for api in apis:
                        for store_name in STORES:
                            code, message = await failure(api.get_state(store_name, key))
                            assert code == C.UNAVAILABLE, message
                            assert f"pluggable state component '{store_name}' ({socket}) is unavailable" in message
                    assert (await sidecar.rt.health())[("state", JSON_STORE)] == "DOWN"

                    await store.start()  # the same socket
                    for api in apis:
                        for store_name in STORES:
                            fresh = new_key()  # the new process starts empty
                            await _until_served(api, store_name, fresh)
                            assert await api.get_state(store_name, fresh) == (b"back", "1")
                    assert (await sidecar.rt.health())[("state", JSON_STORE)] == "UP"
            finally:
                await sidecar.stop()
    finally:
        store.stop()
