"""Values saved through the embedded `sqlite` store survive a sidecar restart, even a crash."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import grpc

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import SidecarProcess

STORE = "state_demo"


def _config() -> dict[str, object]:
    # "~" as in the CLI's embedded default: expanded, and the missing folder is created.
    return {"state": {STORE: {"type": "sqlite", "metadata": {"databasePath": "~/.layotto/state.db"}}}}


def test_sqlite_values_survive_restart_and_crash() -> None:
    home = tempfile.mkdtemp(prefix="layotto-home-")
    key = f"restart-{uuid.uuid4().hex}"
    first = SidecarProcess(_config(), actuator=False, env={"HOME": home}).start()
    try:
        with grpc.insecure_channel(first.address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[pb.StateItem(key=key, value=b"one")]))
            stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[pb.StateItem(key=key, value=b"two")]))
    finally:
        assert first.terminate() == 0, first.log()
    assert (Path(home) / ".layotto" / "state.db").is_file()

    second = SidecarProcess(_config(), actuator=False, env={"HOME": home}).start()
    try:
        with grpc.insecure_channel(second.address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            reply = stub.GetState(pb.GetStateRequest(store_name=STORE, key=key))
            assert (reply.data, reply.etag) == (b"two", "2")
            item = pb.StateItem(key=key, value=b"three", etag=pb.Etag(value="2"))
            stub.SaveState(pb.SaveStateRequest(store_name=STORE, states=[item]))
    finally:
        second.kill()  # a crash: no orderly close of the database

    third = SidecarProcess(_config(), actuator=False, env={"HOME": home}).start()
    try:
        with grpc.insecure_channel(third.address) as channel:
            reply = runtime_pb2_grpc.RuntimeStub(channel).GetState(pb.GetStateRequest(store_name=STORE, key=key))
            assert (reply.data, reply.etag) == (b"three", "3")
    finally:
        third.terminate()
