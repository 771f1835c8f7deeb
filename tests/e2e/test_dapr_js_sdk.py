"""Dapr's JavaScript SDK (npm `@dapr/dapr`, over HTTP: `CommunicationProtocolEnum.HTTP`) against
a sidecar process started as a Dapr app's sidecar (`--resources-path` manifests,
`--dapr-http-port`): state with etags, bulk and transactions, publish (read back from the Redis
stream), secrets, bindings, locks, metadata, health.

tests/e2e/node/dapr_http.js drives the SDK and prints what it saw; the assertions are here.
`scripts/test` installs the SDK (npm install) when node_modules is missing; locally the test
skips without node or the SDK, under CI=true it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.services import missing, require
from tests.support.sidecar import free_port, layotto_config, wait_for_sidecar

NODE_DIR = Path(__file__).parent / "node"
APP_ID = "js-orders"


def _manifests(secrets_file: Path, http_port: int) -> str:
    return textwrap.dedent(
        f"""\
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: statestore}}
        spec: {{type: state.in-memory, version: v1}}
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: pubsub}}
        spec:
          type: pubsub.redis
          version: v1
          metadata:
          - {{name: redisHost, value: "127.0.0.1:6379"}}
        ---
        apiVersion: dapr.io/v1alpha1
        kind: Component
        metadata: {{name: lockstore}}
        spec: {{type: lock.in-memory, version: v1}}
        ---
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
        metadata: {{name: info}}
        spec:
          type: bindings.http
          version: v1
          metadata:
          - {{name: url, value: "http://127.0.0.1:{http_port}/v1.0/metadata"}}
        """
    )


@pytest.fixture(scope="module")
def sdk_run() -> Iterator[tuple[dict[str, Any], str]]:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed")
    if not (NODE_DIR / "node_modules" / "@dapr" / "dapr").is_dir():
        missing("run `npm install` in tests/e2e/node")
    require("redis")
    assert node is not None
    folder = Path(tempfile.mkdtemp(prefix="layotto-dapr-js-"))
    grpc_port, http_port = free_port(), free_port()
    secrets = folder / "secrets.json"
    secrets.write_text(json.dumps({"db-password": "s3cret", "api-key": "k"}))
    resources = folder / "components"
    resources.mkdir()
    (resources / "components.yaml").write_text(_manifests(secrets, http_port))
    # A JSON config without an actuator listener, so that nothing else takes a fixed port.
    config = folder / "config.json"
    config.write_text(json.dumps(layotto_config({"app": {"app_id": APP_ID}}, grpc_port=grpc_port)))
    log = folder / "sidecar.log"
    argv = [sys.executable, "-m", "layotto.cli", "start", "-c", str(config), "--resources-path", str(resources)]
    argv += ["--dapr-http-port", str(http_port)]
    proc = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    prefix = f"js-{uuid.uuid4().hex[:12]}"
    try:
        wait_for_sidecar(proc, f"127.0.0.1:{grpc_port}", log)
        env = {**os.environ, "DAPR_HTTP_PORT": str(http_port), "TEST_PREFIX": prefix}
        done = subprocess.run(
            [node, str(NODE_DIR / "dapr_http.js")], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=90
        )
        assert done.returncode == 0, f"{done.stderr}\n--- sidecar log ---\n{log.read_text()}"
        output: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        yield output, prefix
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, log.read_text()
        assert "layotto stopped" in log.read_text()


def test_health(sdk_run: tuple[dict[str, Any], str]) -> None:
    assert sdk_run[0]["healthy"] is True


def test_state_with_etags_bulk_and_transactions(sdk_run: tuple[dict[str, Any], str]) -> None:
    state = sdk_run[0]["state"]
    assert state["saved"] == {}
    assert state["first"] == {"n": 1, "text": "one"}
    assert state["firstEtag"] == "1"
    assert state["stale"]["status"] == 409
    assert state["stale"]["body"]["errorCode"] == "ERR_STATE_SAVE"
    assert state["stale"]["body"]["message"].startswith("failed saving state in state store statestore: ")
    assert state["fresh"] == {}
    assert state["second"] == "two"
    assert state["wrongDelete"]["status"] == 409
    assert state["wrongDelete"]["body"]["errorCode"] == "ERR_STATE_DELETE"
    assert state["bulk"] == [["b1", "bulk-0"], ["b2", "bulk-1"], ["missing", None]]
    assert state["txUpserted"] == {"tx": True}
    assert state["txDeleted"] == ""  # 204: the SDK reads the empty body
    assert state["unknownStore"] == {
        "status": 400,
        "body": {"errorCode": "ERR_STATE_STORE_NOT_FOUND", "message": "state store nope is not found"},
    }


def test_publish(sdk_run: tuple[dict[str, Any], str]) -> None:
    pubsub = sdk_run[0]["pubsub"]
    assert (pubsub["text"], pubsub["object"], pubsub["bulk"]) == ({}, {}, {"failedMessages": []})
    assert pubsub["unknown"] is True
    client = redis.Redis(host="127.0.0.1", port=6379)
    try:
        entries = client.xrange(pubsub["topic"])
    finally:
        client.delete(pubsub["topic"])
        client.close()
    events = [json.loads(fields[b"data"]) for _, fields in entries]
    assert [(e["datacontenttype"], e["data"]) for e in events] == [
        ("text/plain", "hello"),
        ("application/json", {"order": 7}),
        ("text/plain", "b-1"),
        ("application/json", {"order": 8}),
    ]
    assert {(e["source"], e["type"], e["pubsubname"], e["topic"]) for e in events} == {
        (APP_ID, "com.dapr.event.sent", "pubsub", pubsub["topic"])
    }


def test_secrets(sdk_run: tuple[dict[str, Any], str]) -> None:
    secrets = sdk_run[0]["secrets"]
    assert secrets["one"] == {"db-password": "s3cret"}
    assert secrets["bulk"] == {"api-key": {"api-key": "k"}, "db-password": {"db-password": "s3cret"}}
    assert secrets["unknown"] == {
        "status": 401,
        "body": {"errorCode": "ERR_SECRET_STORE_NOT_FOUND", "message": "failed finding secret store with key nope"},
    }


def test_bindings(sdk_run: tuple[dict[str, Any], str]) -> None:
    bindings = sdk_run[0]["bindings"]
    assert bindings["get"]["id"] == APP_ID
    assert bindings["unsupported"]["status"] == 500
    assert bindings["unsupported"]["body"]["errorCode"] == "ERR_INVOKE_OUTPUT_BINDING"
    assert "binding info does not support operation fly" in bindings["unsupported"]["body"]["message"]


def test_lock(sdk_run: tuple[dict[str, Any], str]) -> None:
    assert sdk_run[0]["lock"] == {
        "acquired": {"success": True},
        "contended": {"success": False},
        "othersUnlock": {"status": 2},
        "unlock": {"status": 0},
        "unlockAgain": {"status": 1},
        "badExpire": {
            "status": 400,
            "body": {
                "errorCode": "ERR_MALFORMED_REQUEST",
                "message": "ExpiryInSeconds is not positive in lock store lockstore",
            },
        },
    }


def test_metadata_and_invoke(sdk_run: tuple[dict[str, Any], str]) -> None:
    output = sdk_run[0]
    metadata = output["metadata"]
    assert metadata["id"] == APP_ID
    assert metadata["extended"]["color"] == "blue"
    types = {c["name"]: c["type"] for c in metadata["components"]}
    assert types["statestore"] == "state.in-memory" and types["pubsub"] == "pubsub.redis"
    assert output["invokeUnknown"]["status"] == 500
    assert output["invokeUnknown"]["body"]["errorCode"] == "ERR_DIRECT_INVOKE"
