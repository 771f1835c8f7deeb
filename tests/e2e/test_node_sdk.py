"""Layotto's official Node.js SDK (npm `layotto` 1.18.0) against a sidecar process.

tests/e2e/node/run.js drives every block with the SDK and prints what it saw; the
assertions are here. `scripts/test` installs the SDK (npm install) when node_modules is
missing; locally the test skips without node or the SDK, under CI=true it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.services import missing, require
from tests.support.sidecar import SidecarProcess

NODE_DIR = Path(__file__).parent / "node"
REDIS = {"redisHost": "127.0.0.1:6379"}
CONFIG = {
    "app": {"app_id": "node-e2e"},
    "hellos": {"helloworld": {"type": "helloworld", "hello": "greeting"}},
    "state": {"redis": {"type": "redis", "metadata": REDIS}},
    "lock": {"redis": {"type": "redis", "metadata": REDIS}},
    "sequencer": {"redis": {"type": "redis", "metadata": REDIS}},
    "pub_subs": {"mem": {"type": "in-memory"}},
    "config_store": {"mem": {"type": "in-memory"}},
}


def _need(condition: bool, reason: str) -> None:
    if not condition:
        missing(reason)


@pytest.fixture(scope="module")
def node_output() -> dict[str, Any]:
    node = shutil.which("node")
    _need(node is not None, "node is not installed")
    _need((NODE_DIR / "node_modules" / "layotto").is_dir(), "run `npm install` in tests/e2e/node")
    require("redis")
    assert node is not None
    with SidecarProcess(CONFIG, actuator=False) as sidecar:
        env = {
            **os.environ,
            "runtime_GRPC_HOST": "127.0.0.1",
            "runtime_GRPC_PORT": str(sidecar.grpc_port),
            "TEST_PREFIX": f"node-{uuid.uuid4().hex[:12]}",
        }
        done = subprocess.run(
            [node, str(NODE_DIR / "run.js")], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=90
        )
        assert done.returncode == 0, f"{done.stderr}\n--- sidecar log ---\n{sidecar.log()}"
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_hello(node_output: dict[str, Any]) -> None:
    assert node_output["hello"] == {
        "plain": "greeting",
        "named": "greeting, node",
        "unknown": {"code": 2, "details": "no instance found"},
    }


def test_state(node_output: dict[str, Any]) -> None:
    state = node_output["state"]
    assert state["first"] == {"value": "v1", "etag": "1"}
    assert state["staleEtag"]["code"] == 10
    assert state["staleEtag"]["details"].startswith("failed saving state in state store redis: ")
    assert state["second"] == {"value": "v2", "etag": "2"}
    prefix_free = [[k.rsplit("-", 1)[-1], v] for k, v in state["bulk"]]
    assert prefix_free == [["b1", "bulk-0"], ["b2", "bulk-1"]]  # the missing key is left out by the SDK
    assert state["afterDeleteBulk"] == 0
    assert state["txUpserted"] == "tx-value"
    assert state["txDeleted"] is None
    assert state["afterDelete"] is None
    not_found = {"code": 3, "details": "state store notexists-store is not found"}
    assert state["unknownStore"] == not_found
    assert state["unknownStoreSave"] == not_found


def test_lock(node_output: dict[str, Any]) -> None:
    assert node_output["lock"] == {
        "acquired": True,
        "contended": False,
        "othersUnlock": {"status": 2},
        "unlock": {"status": 0},
        "unlockAgain": {"status": 1},
        "badExpire": {"code": 3, "details": "Expire is not positive in lock store redis"},
    }


def test_sequencer(node_output: dict[str, Any]) -> None:
    sequencer = node_output["sequencer"]
    assert sequencer["ids"] == ["1", "2", "3"]  # int64 with jstype=JS_STRING
    assert int(sequencer["weak"]) >= 1
    assert sequencer["emptyKey"] == {"code": 3, "details": "Key is empty in sequencer store redis"}


def test_pubsub(node_output: dict[str, Any]) -> None:
    assert node_output["pubsub"] == {"published": True, "unknown": {"code": 3, "details": "pubsub nope not found"}}


def test_configuration(node_output: dict[str, Any]) -> None:
    configuration = node_output["configuration"]
    [item] = configuration["got"]
    assert (item["content"], item["label"], item["group"].endswith("-group")) == ("c1", "l", True)
    assert configuration["pushedPrefix"] == "update"
    assert configuration["afterDelete"] == 0
