"""Dapr's JavaScript SDK as an HTTP app (DaprServer, CommunicationProtocolEnum.HTTP) behind a
sidecar started the way Dapr starts one (`--app-protocol http`): its subscriptions (a dead-letter
topic, content routes), RETRY and DROP, and invocation both ways."""

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

from tests.e2e.test_dapr_js_sdk import NODE_DIR
from tests.support.services import missing
from tests.support.sidecar import free_port, wait_for_sidecar

APP_ID = "js-server"


@pytest.fixture(scope="module")
def run() -> Iterator[dict[str, Any]]:
    node = shutil.which("node")
    if node is None:
        missing("node is not installed")
    if not (NODE_DIR / "node_modules" / "@dapr" / "dapr").is_dir():
        missing("run `npm install` in tests/e2e/node")
    assert node is not None
    folder = Path(tempfile.mkdtemp(prefix="layotto-js-server-"))
    resources = folder / "components"
    resources.mkdir()
    (resources / "pubsub.yaml").write_text(
        textwrap.dedent(
            """\
            apiVersion: dapr.io/v1alpha1
            kind: Component
            metadata: {name: pubsub}
            spec:
              type: pubsub.in-memory
              version: v1
              metadata:
              - {name: maxRetries, value: "0"}
              - {name: maxDeliveryAttempts, value: "2"}
              - {name: retryBackoff, value: "0.01"}
            """
        )
    )
    grpc_port, http_port, app_port = free_port(), free_port(), free_port()
    log = folder / "sidecar.log"
    argv = [sys.executable, "-m", "layotto.cli", "start", "--resources-path", str(resources), "--app-id", APP_ID]
    argv += ["--app-port", str(app_port), "--app-protocol", "http"]
    argv += ["--dapr-grpc-port", str(grpc_port), "--dapr-http-port", str(http_port)]
    proc = subprocess.Popen(argv, stdout=log.open("ab"), stderr=subprocess.STDOUT)
    try:
        wait_for_sidecar(proc, f"127.0.0.1:{grpc_port}", log)
        node_env = {
            **os.environ,
            "APP_ID": APP_ID,
            "APP_PORT": str(app_port),
            "DAPR_HTTP_PORT": str(http_port),
            "TEST_PREFIX": f"js-{uuid.uuid4().hex[:10]}",
        }
        done = subprocess.run(
            [node, str(NODE_DIR / "dapr_http_server.js")],
            cwd=NODE_DIR,
            env=node_env,
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert done.returncode == 0, f"{done.stderr}\n--- sidecar log ---\n{log.read_text()}"
        yield json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def test_the_sidecar_subscribes_what_the_app_lists(run: dict[str, Any]) -> None:
    assert run["subscriptions"] == 3


def test_retry_is_redelivered_and_drop_or_failure_ends_in_the_dead_letter_topic(run: dict[str, Any]) -> None:
    # 1 succeeds; 2 is retried once then succeeds; 3 is dropped (dead-lettered, as daprd does);
    # 4 is retried until maxDeliveryAttempts (2), then dead-lettered.
    assert run["orders"] == [1, 2, 2, 3, 4, 4]
    assert run["dead"] == [3, 4]


def test_content_routes_pick_the_handler(run: dict[str, Any]) -> None:
    assert run["routed"]["widgets"] == [{"w": 1}]
    assert run["routed"]["others"] == [{"plain": True}]


def test_invocation_reaches_the_app_over_http(run: dict[str, Any]) -> None:
    assert run["invoked"] == {"echoed": {"hello": "js"}}
