"""Dapr's official Python SDK (DaprClient, dapr.ext.grpc.App) against a layotto sidecar
started from Dapr component manifests, as a Dapr app would be moved over."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as lpb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc as lgrpc
from tests.support.services import require
from tests.support.sidecar import free_port, wait_for_sidecar

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from dapr.clients import DaprClient
    from dapr.clients.exceptions import DaprGrpcError
    from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
    from dapr.ext.grpc import App
    from dapr.proto.common.v1 import common_pb2
    from dapr.proto.runtime.v1 import dapr_pb2_grpc, lock_pb2, metadata_pb2, state_pb2


def dapr_stub(channel: grpc.Channel) -> Any:
    return dapr_pb2_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]


APP_ID = "orders"
#: The SDK raises DaprGrpcError from some methods and grpc's own RpcError from others.
RPC_ERRORS = (DaprGrpcError, grpc.RpcError)
RUN = uuid.uuid4().hex[:8]
TOPIC = f"dapr-orders-{RUN}"


def _components(secrets_file: Path, http_port: int) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: localsecrets}}
        spec:
          type: secretstores.local.file
          version: v1
          metadata:
          - {{name: secretsFile, value: "{secrets_file}"}}
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: statestore}}
        spec:
          type: state.redis
          version: v1
          metadata:
          - {{name: redisHost, value: "localhost:6379"}}
          - {{name: actorStateStore, value: "true"}}
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: pubsub}}
        spec:
          type: pubsub.in-memory
          version: v1
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: lockstore}}
        spec:
          type: lock.in-memory
          version: v1
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: configstore}}
        spec:
          type: configuration.in-memory
          version: v1
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: info}}
        spec:
          type: bindings.http
          version: v1
          metadata:
          - name: url
            secretKeyRef: {{name: info-url, key: info-url}}
        auth:
          secretStore: localsecrets
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: not-ours}}
        spec:
          type: state.in-memory
          version: v1
        scopes: [someone-else]
        """
    )


class DaprSidecar:
    """`layotto start --resources-path DIR --app-id ... --dapr-grpc-port ...` in its own process."""

    def __init__(self, app_port: int, env: dict[str, str] | None = None) -> None:
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="layotto-dapr-"))
        secrets = self.dir / "secrets.json"
        secrets.write_text(
            json.dumps(
                {
                    "db-password": "s3cret",
                    "info-url": f"http://127.0.0.1:{self.http_port}/v1.0/metadata",
                }
            )
        )
        resources = self.dir / "components"
        resources.mkdir()
        (resources / "components.yaml").write_text(_components(secrets, self.http_port))
        self.log_path = self.dir / "sidecar.log"
        argv = [
            sys.executable,
            "-m",
            "layotto.cli",
            "start",
            "--resources-path",
            str(resources),
            "--app-id",
            APP_ID,
            "--app-port",
            str(app_port),
            "--dapr-grpc-port",
            str(self.grpc_port),
            "--dapr-http-port",
            str(self.http_port),
        ]
        self.proc = subprocess.Popen(
            argv,
            stdout=self.log_path.open("ab"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        self.address = f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, timeout: float = 30.0) -> None:
        wait_for_sidecar(self.proc, self.address, self.log_path, timeout)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


class DaprApp:
    """A Dapr gRPC app (dapr.ext.grpc.App) in a thread: subscribes TOPIC and serves `echo`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.events: queue.Queue[Any] = queue.Queue()
        self.app = App()

        @self.app.subscribe(pubsub_name="pubsub", topic=TOPIC)
        def on_order(event: Any) -> None:
            self.events.put(event)

        @self.app.method(name="echo")
        def echo(request: Any) -> bytes:
            return b"echo:" + request.data

        self.thread = threading.Thread(target=self.app.run, args=(self.port, "127.0.0.1"), daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.app.stop()
        self.thread.join(5)


@pytest.fixture(scope="module")
def dapr_env() -> Iterator[tuple[DaprSidecar, DaprApp]]:
    require("redis")
    app = DaprApp()
    sidecar = DaprSidecar(app.port)
    with pytest.MonkeyPatch.context() as mp:
        # How a Dapr app finds its sidecar: the SDK settings come from these variables.
        mp.setenv("DAPR_GRPC_PORT", str(sidecar.grpc_port))
        mp.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
        mp.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
        mp.setenv("DAPR_HEALTH_TIMEOUT", "20")
        try:
            sidecar.wait_ready()
            yield sidecar, app
        finally:
            code = sidecar.stop()
            app.stop()
            assert code == 0, sidecar.log()


@pytest.fixture
def client(dapr_env: tuple[DaprSidecar, DaprApp]) -> Iterator[DaprClient]:
    # The constructor polls /v1.0/healthz/outbound on DAPR_HTTP_PORT (Dapr's HTTP API).
    with DaprClient() as c:
        yield c


def test_state_round_trip_with_etags(client: DaprClient) -> None:
    key = f"order-{uuid.uuid4().hex}"
    client.save_state("statestore", key, "v1")
    got = client.get_state("statestore", key)
    assert got.data == b"v1"
    assert got.etag == "1"  # the redis store's versions, as daprd's
    client.save_state("statestore", key, "v2", etag=got.etag)
    with pytest.raises(RPC_ERRORS) as stale:
        client.save_state("statestore", key, "v3", etag=got.etag)
    assert stale.value.code() == grpc.StatusCode.ABORTED
    assert stale.value.details().startswith("failed saving state in state store statestore: ")
    with pytest.raises(RPC_ERRORS) as invalid:
        client.save_state("statestore", key, "v3", etag="not-a-number")
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert client.get_state("statestore", key).data == b"v2"
    client.delete_state("statestore", key, etag="2")
    assert client.get_state("statestore", key).data == b""
    with pytest.raises(RPC_ERRORS) as unknown:
        client.get_state("nope", key)
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert unknown.value.details() == "state store nope is not found"


def test_bulk_and_transaction(client: DaprClient, dapr_env: tuple[DaprSidecar, DaprApp]) -> None:
    prefix = f"bulk-{uuid.uuid4().hex}"
    keys = [f"{prefix}-{i}" for i in range(3)]
    client.save_bulk_state("statestore", [_state_item(k, f"value-{k}") for k in keys])
    items = client.get_bulk_state("statestore", [*keys, f"{prefix}-missing"]).items
    assert {i.key: i.data for i in items} == {**{k: f"value-{k}".encode() for k in keys}, f"{prefix}-missing": b""}
    client.execute_state_transaction(
        "statestore",
        [
            TransactionalStateOperation(key=keys[0], data="changed"),
            TransactionalStateOperation(key=keys[1], data="", operation_type=TransactionOperationType.delete),
        ],
    )
    assert client.get_state("statestore", keys[0]).data == b"changed"
    assert client.get_state("statestore", keys[1]).data == b""
    with grpc.insecure_channel(dapr_env[0].address) as channel:  # the SDK has no bulk delete
        dapr_stub(channel).DeleteBulkState(
            state_pb2.DeleteBulkStateRequest(
                store_name="statestore", states=[common_pb2.StateItem(key=keys[0]), common_pb2.StateItem(key=keys[2])]
            )
        )
    assert [i.data for i in client.get_bulk_state("statestore", keys).items] == [b"", b"", b""]


def _state_item(key: str, value: str) -> Any:
    from dapr.clients.grpc._state import StateItem

    return StateItem(key=key, value=value)


def test_one_store_two_apis(client: DaprClient, dapr_env: tuple[DaprSidecar, DaprApp]) -> None:
    sidecar, _ = dapr_env
    key = f"shared-{uuid.uuid4().hex}"
    with grpc.insecure_channel(sidecar.address) as channel:
        layotto = lgrpc.RuntimeStub(channel)
        layotto.SaveState(lpb.SaveStateRequest(store_name="statestore", states=[lpb.StateItem(key=key, value=b"L")]))
        got = client.get_state("statestore", key)
        assert (got.data, got.etag) == (b"L", "1")
        client.save_state("statestore", key, "D", etag=got.etag)
        reply = layotto.GetState(lpb.GetStateRequest(store_name="statestore", key=key))
        assert (reply.data, reply.etag) == (b"D", "2")
    # Stored under daprd's own layout, so data of an existing Dapr deployment stays readable.
    import redis

    raw = redis.Redis(host="127.0.0.1", port=6379)
    try:
        assert raw.hget(f"{APP_ID}||{key}", "data") == b"D"
        raw.delete(f"{APP_ID}||{key}")
    finally:
        raw.close()


def test_publish_is_delivered_to_a_dapr_app(client: DaprClient, dapr_env: tuple[DaprSidecar, DaprApp]) -> None:
    _, app = dapr_env
    deadline = time.monotonic() + 15
    # Delivery subscribes once the app answered ListTopicSubscriptions; republish until it is in.
    payload = {"order": RUN}
    event = None
    while event is None:
        client.publish_event("pubsub", TOPIC, json.dumps(payload), data_content_type="application/json")
        try:
            event = app.events.get(timeout=0.5)
        except queue.Empty:
            assert time.monotonic() < deadline, "no event delivered to the Dapr app"
    assert json.loads(event.data) == payload
    assert event.source == APP_ID
    assert event.type == "com.dapr.event.sent"
    assert event.content_type == "application/json"
    with pytest.raises(RPC_ERRORS) as unknown:
        client.publish_event("nope", TOPIC, "x")
    assert unknown.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_bulk_publish(client: DaprClient) -> None:
    reply = client.publish_events("pubsub", f"bulk-{RUN}", ["a", "b"], data_content_type="text/plain")
    assert reply.failed_entries == []


def test_secrets(client: DaprClient) -> None:
    assert client.get_secret("localsecrets", "db-password").secret == {"db-password": "s3cret"}
    bulk = client.get_bulk_secret("localsecrets").secrets
    assert bulk["db-password"] == {"db-password": "s3cret"}
    with pytest.raises(RPC_ERRORS) as missing:
        client.get_secret("nope", "x")
    assert missing.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert missing.value.details() == "failed finding secret store with key nope"


def test_binding_with_url_from_a_secret(client: DaprClient) -> None:
    reply = client.invoke_binding("info", "get", b"")
    assert json.loads(reply.data)["id"] == APP_ID
    with pytest.raises(RPC_ERRORS) as bad:
        client.invoke_binding("info", "fly", b"")
    assert bad.value.code() == grpc.StatusCode.INTERNAL
    assert "binding info does not support operation fly" in bad.value.details()


def test_lock(client: DaprClient, dapr_env: tuple[DaprSidecar, DaprApp]) -> None:
    resource = f"res-{uuid.uuid4().hex}"
    first = client.try_lock("lockstore", resource, "owner-a", 30)
    assert first.success
    assert not client.try_lock("lockstore", resource, "owner-b", 30).success
    from dapr.clients.grpc._response import UnlockResponseStatus

    assert client.unlock("lockstore", resource, "owner-b").status == UnlockResponseStatus.lock_belongs_to_others
    assert client.unlock("lockstore", resource, "owner-a").status == UnlockResponseStatus.success
    assert client.unlock("lockstore", resource, "owner-a").status == UnlockResponseStatus.lock_does_not_exist
    with grpc.insecure_channel(dapr_env[0].address) as channel, pytest.raises(grpc.RpcError) as bad:
        request = lock_pb2.TryLockRequest(store_name="lockstore", resource_id=resource, lock_owner="a")
        dapr_stub(channel).TryLockAlpha1(request)  # the SDK refuses this before sending it
    assert bad.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert bad.value.details() == "ExpiryInSeconds is not positive in lock store lockstore"


def test_configuration_get_and_subscribe(client: DaprClient, dapr_env: tuple[DaprSidecar, DaprApp]) -> None:
    sidecar, _ = dapr_env
    key = f"cfg-{uuid.uuid4().hex}"
    with grpc.insecure_channel(sidecar.address) as channel:
        layotto = lgrpc.RuntimeStub(channel)

        def save(content: str) -> None:
            item = lpb.ConfigurationItem(key=key, content=content)
            layotto.SaveConfiguration(
                lpb.SaveConfigurationRequest(store_name="configstore", app_id=APP_ID, items=[item])
            )

        save("one")
        got = client.get_configuration("configstore", [key])
        assert got.items[key].value == "one"
        changes: queue.Queue[tuple[str, Any]] = queue.Queue()
        sub_id = client.subscribe_configuration("configstore", [key], lambda sid, resp: changes.put((sid, resp)))
        assert sub_id
        save("two")
        deadline = time.monotonic() + 10
        seen = ""
        while seen != "two":
            sid, resp = changes.get(timeout=max(0.1, deadline - time.monotonic()))
            assert sid == sub_id
            seen = resp.items[key].value
        assert client.unsubscribe_configuration("configstore", sub_id)
        assert not client.unsubscribe_configuration("configstore", sub_id)


def test_metadata(client: DaprClient, dapr_env: tuple[DaprSidecar, DaprApp]) -> None:
    client.set_metadata("team", "checkout")
    meta = client.get_metadata()
    assert meta.application_id == APP_ID
    components = {c.name: c for c in meta.registered_components}
    assert "not-ours" not in components  # scoped to another app id
    assert components["statestore"].type == "state.redis"
    assert components["statestore"].version == "v1"
    assert "ETAG" in components["statestore"].capabilities
    assert components["localsecrets"].type == "secretstores.local.file"
    assert meta.extended_metadata["team"] == "checkout"
    # The SDK's response leaves out subscriptions; they appear once delivery subscribed them.
    with grpc.insecure_channel(dapr_env[0].address) as channel:
        deadline = time.monotonic() + 15
        while True:
            raw = dapr_stub(channel).GetMetadata(metadata_pb2.GetMetadataRequest())
            if any((s.pubsub_name, s.topic) == ("pubsub", TOPIC) for s in raw.subscriptions):
                break
            assert time.monotonic() < deadline, raw.subscriptions
            time.sleep(0.1)
    assert raw.app_connection_properties.port == dapr_env[1].port
    assert raw.app_connection_properties.protocol == "grpc"


def test_invoke_the_local_dapr_app(client: DaprClient) -> None:
    reply = client.invoke_method(APP_ID, "echo", data=b"hi", http_verb="POST")
    assert reply.data == b"echo:hi"
    with pytest.raises(RPC_ERRORS) as missing:
        client.invoke_method(APP_ID, "no-such-method", data=b"")
    assert missing.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_unimplemented_blocks(client: DaprClient) -> None:
    with pytest.raises(RPC_ERRORS) as caught:
        client.query_state("statestore", '{"filter": {}}')
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_streaming_subscribe_receives_and_answers_events(client: DaprClient) -> None:
    """The SDK's `subscribe()` opens SubscribeTopicEventsAlpha1; a RETRY is redelivered on the
    stream, a SUCCESS is not."""
    topic = f"stream-{RUN}"
    subscription = client.subscribe(pubsub_name="pubsub", topic=topic)
    try:
        client.publish_event("pubsub", topic, json.dumps({"n": 1}), data_content_type="application/json")
        first = subscription.next_message()
        assert first is not None and first.topic() == topic and first.data() == {"n": 1}
        subscription.respond_retry(first)
        again = subscription.next_message()
        assert again is not None and again.id() == first.id()
        subscription.respond_success(again)
        client.publish_event("pubsub", topic, "two", data_content_type="text/plain")
        second = subscription.next_message()
        assert second is not None and second.data() == "two" and second.id() != first.id()
        subscription.respond_success(second)
    finally:
        subscription.close()


def test_streaming_subscribe_refuses_an_unknown_pubsub(client: DaprClient) -> None:
    with pytest.raises(Exception, match="pubsub nope not found"):
        client.subscribe(pubsub_name="nope", topic="t")
