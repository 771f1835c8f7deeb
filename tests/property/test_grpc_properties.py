"""Property-based requests to every method of both gRPC APIs (Layotto's Runtime and Dapr's
Dapr service) against one in-process sidecar on the embedded backends.

Messages are built from the request descriptors with random field values (control
characters, NUL, huge and unicode-digit strings, extreme ints, nested messages, repeated
fields and maps), half the time with names the config knows; raw random bytes go to each
method too. Every call must end within a bound, never as UNKNOWN, and never as INTERNAL
carrying a Python exception; a failed state write must leave sentinel keys as they were."""

from __future__ import annotations

import asyncio
import json
import re
import tempfile
import tomllib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message as pb_message
from google.protobuf import message_factory
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layotto_proto.dapr.proto.runtime.v1 import dapr_pb2
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2, runtime_pb2_grpc
from tests.contract.bindings.httpkv import http_server
from tests.support.sidecar import running_sidecar

FD = pb_descriptor.FieldDescriptor
LAYOTTO = runtime_pb2.DESCRIPTOR.services_by_name["Runtime"]
DAPR = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]

APP_ID = "prop-app"
MEMORY, SQLITE = "memory", "sqlite"
STATE_STORES = (MEMORY, SQLITE)
SENTINELS = ("sentinel-a", "sentinel-b")
#: Keys and values the components know (sentinel keys, secrets, files, operations, the app).
KNOWN = [APP_ID, *SENTINELS, "topic", "db", "nested", "a.txt", "dir/", "get", "create", "delete", "key", "1", ""]
#: Component names by the words in a method's name: the method's block's names.
BLOCK_NAMES = {
    "State": list(STATE_STORES),
    "Lock": ["lock_store"],
    "Publish": ["ps"],
    "Subscribe": ["ps", "config"],
    "Secret": ["secrets"],
    "Binding": ["kv", "web"],
    "Configuration": ["config"],
    "File": ["files"],
    "NextId": ["seq"],
    "Hello": ["helloworld"],
    "Invoke": [APP_ID],
}
ALL_NAMES = sorted({name for names in BLOCK_NAMES.values() for name in names})


def names_for(method: pb_descriptor.MethodDescriptor) -> list[str]:
    found = [name for word, names in BLOCK_NAMES.items() if word in method.name for name in names]
    return found or ALL_NAMES


#: Method call bound; a call that takes longer counts as a hang.
BOUND = 5.0
EXAMPLES = 40
RAW_EXAMPLES = 10
STREAM_EXAMPLES = 5

#: Methods not driven at all, and why.
EXCLUDED = {
    # Stops the sidecar under the test; its own tests cover it.
    ("dapr.proto.runtime.v1.Dapr", "Shutdown"),
}
#: Methods that write state: sentinel keys are checked after each failure, rewritten after a success.
STATE_WRITES = {"SaveState", "DeleteState", "ExecuteStateTransaction"}
STATE_MUTATORS = STATE_WRITES | {"DeleteBulkState"}

PYTHON_EXCEPTION = re.compile(
    r"<class '|Unexpected <class|Traceback|File \"[^\"]*\", line \d+"
    r"|\b(?:Overflow|Recursion|Value|Type|Key|Attribute|Unicode\w*|Index|ZeroDivision|Assertion"
    r"|Runtime|NotImplemented|Lookup|Name|UnboundLocal|Memory|Buffer|Arithmetic|Import)Error\b"
    r"|\bStopIteration\b|\bStopAsyncIteration\b"
)


ROOT = Path(__file__).parents[2]


#: An answers-file section's methods: those whose name has the word.
SECTION_WORDS = {
    "state": "State",
    "lock": "Lock",
    "sequencer": "NextId",
    "configuration": "Configuration",
    "pubsub": "Publish",
    "pubsub-subscribe": "Subscribe",
    "secrets": "Secret",
    "bindings": "Binding",
    "file": "File",
    "file-get": "GetFile",
}


def parity_unknowns() -> list[tuple[str, re.Pattern[str]]]:
    """The answers both APIs give as UNKNOWN on purpose: upstream's plain (code-less) errors,
    from the answers files, and two the adapters word in code, each with the word its methods'
    names have. Any other UNKNOWN is grpc.aio's answer to an exception the sidecar did not handle."""
    found = [("Hello", re.compile(r"no instance found")), ("Invoke", re.compile(r"invoker not init: .*", re.S))]
    for api in ("layotto", "dapr"):
        doc = tomllib.loads((ROOT / "src" / "layotto" / "api" / api / "answers.toml").read_text())
        for section, answers in doc.items():
            for code, template in answers.values():
                if code == "UNKNOWN" or code.endswith("-unknown"):
                    parts = re.split(r"\{\w+\}", template)
                    pattern = re.compile("(?s:.*)".join(re.escape(part) for part in parts), re.S)
                    found.append((SECTION_WORDS[section], pattern))
    return found


PARITY_UNKNOWNS = parity_unknowns()


def parity_unknown(method: pb_descriptor.MethodDescriptor, details: str) -> bool:
    return any(word in method.name and pattern.fullmatch(details) for word, pattern in PARITY_UNKNOWNS)


def grpc_config(http_base: str, scratch: Path) -> dict[str, Any]:
    secrets_file = scratch / "secrets.json"
    secrets_file.write_text(json.dumps({"db": "pw", "nested": {"a": "x"}}))
    (scratch / "files").mkdir()
    (scratch / "files" / "a.txt").write_text("hello")
    return {
        "app": {"app_id": APP_ID},
        "hellos": {"helloworld": {"type": "helloworld", "hello": "greeting"}},
        "state": {
            MEMORY: {"type": "in-memory", "metadata": {}},
            SQLITE: {"type": "sqlite", "metadata": {"databasePath": str(scratch / "state.db")}},
        },
        "pub_subs": {"ps": {"type": "in-memory", "metadata": {}}},
        "lock": {"lock_store": {"type": "in-memory", "metadata": {}}},
        "sequencer": {"seq": {"type": "in-memory", "metadata": {}}},
        "secret_store": {"secrets": {"type": "local.file", "metadata": {"secretsFile": str(secrets_file)}}},
        "bindings": {
            "kv": {"type": "http", "metadata": {"url": f"{http_base}/kv"}},
            "web": {"type": "http", "metadata": {"url": http_base}},
        },
        "config_store": {"config": {"type": "in-memory", "metadata": {}}},
        "file": {"files": {"type": "local", "metadata": {"rootPath": str(scratch / "files")}}},
    }


@dataclass
class Target:
    channel: grpc.aio.Channel
    runtime: Any


@pytest.fixture(scope="module")
async def target() -> AsyncIterator[Target]:
    with tempfile.TemporaryDirectory(prefix="layotto-prop-") as scratch:
        async with (
            http_server() as base,
            running_sidecar(grpc_config(base, Path(scratch))) as (_, address),
            grpc.aio.insecure_channel(address) as channel,
        ):
            stub: Any = runtime_pb2_grpc.RuntimeStub(channel)
            await write_sentinels(stub)
            yield Target(channel, stub)


# ---- sentinels ----


def sentinel_value(store: str, key: str) -> bytes:
    return f"{store}/{key}/value".encode()


async def write_sentinels(stub: Any) -> None:
    for store in STATE_STORES:
        items = [runtime_pb2.StateItem(key=key, value=sentinel_value(store, key)) for key in SENTINELS]
        await stub.SaveState(runtime_pb2.SaveStateRequest(store_name=store, states=items))


async def read_sentinels(stub: Any) -> dict[tuple[str, str], bytes]:
    found = {}
    for store in STATE_STORES:
        reply = await stub.GetBulkState(runtime_pb2.GetBulkStateRequest(store_name=store, keys=list(SENTINELS)))
        for item in reply.items:
            found[(store, item.key)] = item.data
    return found


EXPECTED_SENTINELS = {(store, key): sentinel_value(store, key) for store in STATE_STORES for key in SENTINELS}


# ---- messages from descriptors ----

CONTROL = "".join(chr(c) for c in range(0x20)) + "\x7f\u200b\u202e\ufeff"
#: ASCII, Arabic-Indic, fullwidth, Extended Arabic-Indic and NKo digits, and number punctuation.
DIGITS = "0123456789" + "".join(map(chr, [*range(0x660, 0x66A), 0xFF10, 0xFF11, 0xFF12, 0x6F3, 0x7C0])) + "-+ .e"
WILD_STRINGS = st.one_of(
    st.text(max_size=24),
    st.text(alphabet=st.sampled_from(CONTROL + "ab/.\\:|%*?"), max_size=16),
    st.text(alphabet=st.sampled_from(DIGITS), max_size=12),
    st.sampled_from(["\x00", "a\x00b", "..", "../../etc/passwd", "/abs", "-1", "1e309", "nan", "\ud7ff", " "]),
    st.integers(min_value=1, max_value=3).map(lambda n: "x" * (70_000 * n)),
)
BYTES = st.one_of(
    st.binary(max_size=32),
    st.sampled_from([b"", b"{}", b'{"a":1}', b"[", b"\xff\xfe", b"null", b"1e400"]),
    st.just(b"\x00" * 200_000),
)


def int_range(bits: int, signed: bool) -> st.SearchStrategy[int]:
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    return st.one_of(st.sampled_from([low, high, 0, -1 if signed else 1, 1]), st.integers(low, high))


FLOATS = st.one_of(st.floats(allow_nan=True, allow_infinity=True, width=32), st.sampled_from([1e308, -0.0]))
SCALARS: dict[int, st.SearchStrategy[Any]] = {
    FD.TYPE_BYTES: BYTES,
    FD.TYPE_BOOL: st.booleans(),
    FD.TYPE_INT32: int_range(32, True),
    FD.TYPE_SINT32: int_range(32, True),
    FD.TYPE_SFIXED32: int_range(32, True),
    FD.TYPE_INT64: int_range(64, True),
    FD.TYPE_SINT64: int_range(64, True),
    FD.TYPE_SFIXED64: int_range(64, True),
    FD.TYPE_UINT32: int_range(32, False),
    FD.TYPE_FIXED32: int_range(32, False),
    FD.TYPE_UINT64: int_range(64, False),
    FD.TYPE_FIXED64: int_range(64, False),
    FD.TYPE_FLOAT: FLOATS,
    FD.TYPE_DOUBLE: FLOATS,
}


def message_class(desc: pb_descriptor.Descriptor) -> type[pb_message.Message]:
    return message_factory.GetMessageClass(desc)


def value_strategy(field: FD, depth: int, names: list[str]) -> st.SearchStrategy[Any]:
    if field.type == FD.TYPE_MESSAGE:
        assert field.message_type is not None
        return messages(field.message_type, names, depth + 1)
    if field.type == FD.TYPE_ENUM:
        assert field.enum_type is not None
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), int_range(32, True))
    if field.type == FD.TYPE_STRING:
        # Half the time a name the config knows: the block's components, or a known key.
        return st.one_of(st.sampled_from(names), st.sampled_from(KNOWN), WILD_STRINGS, WILD_STRINGS)
    return SCALARS[field.type]


def messages(desc: pb_descriptor.Descriptor, names: list[str], depth: int = 0) -> st.SearchStrategy[pb_message.Message]:
    cls = message_class(desc)

    @st.composite
    def build(draw: Callable[..., Any]) -> pb_message.Message:
        msg = cls()
        if depth > 3:
            return msg
        for field in desc.fields:
            if not draw(st.booleans()):
                continue
            if field.message_type is not None and field.message_type.GetOptions().map_entry:
                key_field = field.message_type.fields_by_name["key"]
                value_field = field.message_type.fields_by_name["value"]
                entries = draw(
                    st.lists(
                        st.tuples(value_strategy(key_field, depth, names), value_strategy(value_field, depth, names)),
                        max_size=3,
                    )
                )
                target = getattr(msg, field.name)
                for k, v in entries:
                    if value_field.type == FD.TYPE_MESSAGE:
                        target[k].CopyFrom(v)
                    else:
                        target[k] = v
            elif field.is_repeated:
                values = draw(st.lists(value_strategy(field, depth, names), max_size=3))
                target = getattr(msg, field.name)
                if field.type == FD.TYPE_MESSAGE:
                    for v in values:
                        target.add().CopyFrom(v)
                else:
                    target.extend(values)
            elif field.type == FD.TYPE_MESSAGE:
                getattr(msg, field.name).CopyFrom(draw(value_strategy(field, depth, names)))
            else:
                setattr(msg, field.name, draw(value_strategy(field, depth, names)))
        return msg

    return build()


# ---- methods ----


def unary_methods() -> list[Any]:
    found = []
    for service in (LAYOTTO, DAPR):
        for method in service.methods:
            if (service.full_name, method.name) in EXCLUDED:
                continue
            if method.client_streaming or method.server_streaming:
                continue
            found.append(pytest.param(method, id=f"{service.name}.{method.name}"))
    return found


def streaming_methods() -> list[Any]:
    return [
        pytest.param(method, id=f"{service.name}.{method.name}")
        for service in (LAYOTTO, DAPR)
        for method in service.methods
        if method.client_streaming or method.server_streaming
    ]


def path_of(method: pb_descriptor.MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def check_status(method: pb_descriptor.MethodDescriptor, code: grpc.StatusCode, details: str | None) -> None:
    details = details or ""
    if code == grpc.StatusCode.UNKNOWN:
        assert parity_unknown(method, details), f"{path_of(method)}: UNKNOWN: {details[:500]!r}"
    if code in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
        assert not PYTHON_EXCEPTION.search(details), f"{path_of(method)}: {code.name}: {details[:500]!r}"


async def call(target: Target, method: pb_descriptor.MethodDescriptor, payload: bytes) -> grpc.aio.AioRpcError | None:
    """One raw unary call within BOUND; the error, if it failed."""
    stub = target.channel.unary_unary(path_of(method), request_serializer=None, response_deserializer=None)
    try:
        async with asyncio.timeout(BOUND):
            await stub(payload)
    except grpc.aio.AioRpcError as error:
        check_status(method, error.code(), error.details())
        return error
    except TimeoutError:
        pytest.fail(f"{path_of(method)}: no answer within {BOUND}s")
    return None


async def after(target: Target, method: pb_descriptor.MethodDescriptor, error: grpc.aio.AioRpcError | None) -> None:
    if method.name not in STATE_MUTATORS:
        return
    if error is not None and method.name in STATE_WRITES:
        found = await read_sentinels(target.runtime)
        assert found == EXPECTED_SENTINELS, f"{path_of(method)} failed ({error.code()}) but changed sentinels"
    elif error is None:
        await write_sentinels(target.runtime)


SETTINGS = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    print_blob=False,
)


@pytest.mark.parametrize("method", unary_methods())
@settings(SETTINGS, max_examples=EXAMPLES)
@given(data=st.data())
async def test_random_messages(target: Target, method: pb_descriptor.MethodDescriptor, data: st.DataObject) -> None:
    request = data.draw(messages(method.input_type, names_for(method)), label="request")
    error = await call(target, method, request.SerializeToString())
    await after(target, method, error)


@pytest.mark.parametrize("method", unary_methods())
@settings(SETTINGS, max_examples=RAW_EXAMPLES)
@given(payload=st.one_of(st.binary(max_size=64), st.sampled_from([b"\xff" * 16, b"\x0a\xff\xff\xff\xff\x0f"])))
async def test_random_bytes(target: Target, method: pb_descriptor.MethodDescriptor, payload: bytes) -> None:
    error = await call(target, method, payload)
    await after(target, method, error)


@pytest.mark.parametrize("method", streaming_methods())
@settings(SETTINGS, max_examples=STREAM_EXAMPLES)
@given(data=st.data())
async def test_streams_take_one_message(
    target: Target, method: pb_descriptor.MethodDescriptor, data: st.DataObject
) -> None:
    """Open the stream, send one random message, read for a moment, close."""
    request = data.draw(messages(method.input_type, names_for(method)), label="request").SerializeToString()
    path = path_of(method)
    stream: Any
    channel: Any = target.channel
    if method.client_streaming and method.server_streaming:
        stream = channel.stream_stream(path)()
    elif method.client_streaming:
        stream = channel.stream_unary(path)()
    else:
        stream = channel.unary_stream(path)(request)
    try:
        async with asyncio.timeout(BOUND):
            if method.client_streaming:
                await stream.write(request)
                await stream.done_writing()
            if method.server_streaming:
                try:
                    async with asyncio.timeout(0.2):
                        await stream.read()
                except TimeoutError:
                    pass  # a subscription may rightly wait for events
            else:
                await stream
    except grpc.aio.AioRpcError as error:
        check_status(method, error.code(), error.details())
    except TimeoutError:
        pytest.fail(f"{path}: no answer within {BOUND}s")
    finally:
        stream.cancel()
    if stream.done() and not stream.cancelled():
        code = await stream.code()
        if code != grpc.StatusCode.OK:
            check_status(method, code, await stream.details())
