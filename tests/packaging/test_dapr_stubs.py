"""The runtime's Dapr stubs (layotto_proto.dapr, a descriptor pool of their own, see
scripts/gen-protos) beside Dapr's Python SDK (the default pool) in one process: no clash
whichever loads first, calls from the SDK's client answered, the same bytes on the wire."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import any_pb2, descriptor, descriptor_pool, struct_pb2

from layotto.config import layotto_json
from layotto.sidecar import Sidecar
from layotto_proto.dapr import _pool
from layotto_proto.dapr.proto.common.v1 import common_pb2
from layotto_proto.dapr.proto.runtime.v1 import appcallback_pb2, dapr_pb2_grpc, invoke_pb2
from tests.support.sidecar import free_port, layotto_config

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from dapr.clients import DaprClient
    from dapr.conf import settings
    from dapr.proto.common.v1 import common_pb2 as sdk_common_pb2
    from dapr.proto.runtime.v1 import appcallback_pb2 as sdk_appcallback_pb2
    from dapr.proto.runtime.v1 import invoke_pb2 as sdk_invoke_pb2

import layotto.api.dapr
import layotto.api.dapr_http.metadata

ROOT = Path(__file__).resolve().parents[2]
STUBS = ROOT / "proto/python/src/layotto_proto/dapr/proto"
#: The vendored proto files of Dapr's API, as the generated modules register them (Dapr's SDK
#: has these too; not the pluggable components' protocol, dapr/proto/components).
FILES = sorted(
    f"dapr/proto/{path.relative_to(STUBS).with_name(path.name.removesuffix('_pb2.py') + '.proto').as_posix()}"
    for path in STUBS.rglob("*_pb2.py")
    if path.relative_to(STUBS).parts[0] != "components"
)


def test_the_runtime_serves_dapr_from_our_stubs_in_their_own_pool() -> None:
    assert layotto.api.dapr.dapr_pb2_grpc is dapr_pb2_grpc
    assert layotto.api.dapr_http.metadata.pb.__name__ == "layotto_proto.dapr.proto.runtime.v1.metadata_pb2"
    assert "dapr/proto/runtime/v1/dapr.proto" in FILES and "dapr/proto/common/v1/common.proto" in FILES
    default = descriptor_pool.Default()
    for name in FILES:
        assert _pool.POOL.FindFileByName(name) is not default.FindFileByName(name)
    # Dapr's SDK has the default pool's copy; the runtime's messages are not in it.
    assert default.FindMessageTypeByName("dapr.proto.runtime.v1.GetStateRequest").file.pool is default
    assert common_pb2.InvokeRequest.DESCRIPTOR.file.pool is _pool.POOL


@pytest.mark.parametrize("first", ["sdk", "runtime"])
def test_either_import_order_works(first: str) -> None:
    sdk = "import dapr.clients\nfrom dapr.proto.runtime.v1 import dapr_pb2_grpc as sdk"
    runtime = "import layotto.api.dapr\nfrom layotto_proto.dapr.proto.runtime.v1 import dapr_pb2_grpc as ours"
    code = "\n".join(["import warnings", "warnings.simplefilter('ignore', FutureWarning)"])
    code += "\n" + "\n".join([sdk, runtime] if first == "sdk" else [runtime, sdk])
    code += "\nassert sdk.DaprStub is not ours.DaprStub\nprint('both loaded')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "both loaded" in done.stdout


@pytest.fixture
def http_api_port(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """The Dapr HTTP port DaprClient probes (/v1.0/healthz/outbound) before its first call."""
    port = free_port()
    monkeypatch.setattr(settings, "DAPR_HTTP_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(settings, "DAPR_HEALTH_TIMEOUT", 10)
    yield port


async def test_dapr_sdk_client_calls_the_runtime_in_the_same_process(http_api_port: int) -> None:
    grpc_port = free_port()
    doc = layotto_config(
        {"app": {"app_id": "stubs"}, "state": {"statestore": {"type": "in-memory", "metadata": {}}}},
        grpc_port=grpc_port,
    )
    doc["dapr_http"] = {"address": f"127.0.0.1:{http_api_port}"}
    sidecar = Sidecar(layotto_json.load_document(doc, source="<test>"))
    await sidecar.start()

    def calls() -> tuple[bytes, str, str, list[str]]:
        with DaprClient(address=f"127.0.0.1:{grpc_port}") as client:
            client.save_state("statestore", "order-1", '{"status":"paid"}', state_metadata={"contentType": "json"})
            got = client.get_state("statestore", "order-1")
            metadata = client.get_metadata()
            return got.data, got.etag, metadata.application_id, [c.name for c in metadata.registered_components]

    try:
        data, etag, app_id, components = await asyncio.to_thread(calls)
    finally:
        await sidecar.stop()
    assert data == b'{"status":"paid"}'
    assert etag
    assert app_id == "stubs"
    assert "statestore" in components


def _fields(message: descriptor.Descriptor) -> dict[str, tuple[int, int, bool, str]]:
    return {
        f.name: (f.number, f.type, f.message_type is not None and f.message_type.GetOptions().map_entry, _type(f))
        for f in message.fields
    }


def _type(field: descriptor.FieldDescriptor) -> str:
    kind: Any = field.message_type or field.enum_type
    return str(kind.full_name) if kind is not None else ""


def _messages(types: Any) -> Iterator[descriptor.Descriptor]:
    for message in types:
        yield message
        yield from _messages(message.nested_types)


def test_every_field_of_our_stubs_is_the_sdks() -> None:
    """Each message of the vendored protos, field by field (number, type, map or not), as the
    Dapr SDK under test has it: the SDK may know more (a newer Dapr), never otherwise."""
    default = descriptor_pool.Default()
    compared = 0
    for name in FILES:
        ours = _pool.POOL.FindFileByName(name)
        for message in _messages(ours.message_types_by_name.values()):
            try:
                theirs = default.FindMessageTypeByName(message.full_name)
            except KeyError:
                pytest.fail(f"{message.full_name} is not in Dapr's SDK")
            missing = {k: v for k, v in _fields(message).items() if _fields(theirs).get(k) != v}
            assert not missing, f"{message.full_name}: {missing} differ from the SDK's {_fields(theirs)}"
            compared += 1
    assert compared > 100


def test_the_default_pools_well_known_types_are_taken_and_the_bytes_are_the_sdks() -> None:
    reply = {"content_type": "text/plain"}
    ours = common_pb2.InvokeResponse(data=any_pb2.Any(type_url="t", value=b"\x00reply"), **reply)
    theirs = sdk_common_pb2.InvokeResponse(data=any_pb2.Any(type_url="t", value=b"\x00reply"), **reply)
    assert ours.SerializeToString(deterministic=True) == theirs.SerializeToString(deterministic=True)
    ours.data.CopyFrom(any_pb2.Any(value=b"copied"))
    assert ours.data.value == b"copied"

    extensions = struct_pb2.Struct()
    extensions.update({"traceid": "abc", "n": 2})
    event = appcallback_pb2.TopicEventRequest(id="e1", data=b"{}", extensions=extensions)
    sdk_event = sdk_appcallback_pb2.TopicEventRequest(id="e1", data=b"{}", extensions=extensions)
    assert event.SerializeToString(deterministic=True) == sdk_event.SerializeToString(deterministic=True)
    assert sdk_event.FromString(event.SerializeToString()).extensions["traceid"] == "abc"

    # And the other way: what the SDK sends parses into the runtime's classes unchanged.
    sent = sdk_invoke_pb2.InvokeServiceRequest(
        id="app", message=sdk_common_pb2.InvokeRequest(method="m", data=any_pb2.Any(value=b"x"))
    ).SerializeToString()
    assert invoke_pb2.InvokeServiceRequest.FromString(sent).SerializeToString() == sent


def test_generated_modules_name_no_dapr_package_and_no_default_pool() -> None:
    for path in STUBS.rglob("*.py"):
        text = path.read_text()
        assert "from dapr." not in text and "import dapr." not in text, path
        assert "_descriptor_pool.Default()" not in text, path
    for proto in (ROOT / "protos").rglob("*.proto"):
        assert "Licensed under the Apache License, Version 2.0" in proto.read_text(), proto
