"""Calls the sidecar refuses without a traceback: request bytes that are not the method's message
(INVALID_ARGUMENT), methods no part implements (UNIMPLEMENTED, grpc-go's message, as daprd),
an HTTP verb the proto does not name (INVALID_ARGUMENT naming the field). Each is logged in one
line, at most once a second per method, whatever the client repeats."""

from __future__ import annotations

import logging
import time
import warnings
from collections.abc import Callable

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as lpb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc as lgrpc
from tests.api.clients import failure

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from dapr.proto.common.v1 import common_pb2 as dcommon
    from dapr.proto.runtime.v1 import dapr_pb2 as dpb
    from dapr.proto.runtime.v1 import dapr_pb2_grpc

C = grpc.StatusCode
#: Field 1, length-delimited, 127 bytes long -- and nothing after it.
TRUNCATED = b"\x0a\x7f"
LAYOTTO = "/spec.proto.runtime.v1.Runtime"
DAPR = "/dapr.proto.runtime.v1.Dapr"


def _unary(channel: grpc.aio.Channel, method: str) -> Callable[[bytes], grpc.aio.UnaryUnaryCall[bytes, bytes]]:
    return channel.unary_unary(method)


async def _stream_failure(call: grpc.aio.Call) -> tuple[grpc.StatusCode, str]:
    try:
        await call.read()  # type: ignore[attr-defined]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the stream was expected to fail")


def _refusals(caplog: pytest.LogCaptureFixture, method: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if method in r.getMessage()]


def _no_traceback_logged(caplog: pytest.LogCaptureFixture) -> None:
    noisy = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not noisy, [r.getMessage() for r in noisy]


@pytest.mark.parametrize("method", [f"{LAYOTTO}/GetState", f"{DAPR}/GetState", f"{LAYOTTO}/SayHello"])
async def test_undecodable_unary_request(
    method: str, channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    call = _unary(channel, method)
    start = time.monotonic()
    for _ in range(50):
        code, details = await failure(call(TRUNCATED))
        assert code == C.INVALID_ARGUMENT
        assert details.startswith("error unmarshalling request: "), details
    elapsed = time.monotonic() - start
    _no_traceback_logged(caplog)
    lines = _refusals(caplog, method)
    assert 1 <= len(lines) <= 1 + int(elapsed), [r.getMessage() for r in lines]
    assert "undecodable request" in lines[0].getMessage()


async def test_undecodable_requests_on_streams(channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    # Bidirectional (a coroutine handler reading the request iterator).
    subscribe = channel.stream_stream(f"{LAYOTTO}/SubscribeTopicEvents")
    assert (await _stream_failure(subscribe(iter([TRUNCATED]))))[0] == C.INVALID_ARGUMENT
    # A later message of a stream that began well.
    initial = lpb.SubscribeTopicEventsRequest(
        initial_request=lpb.SubscribeTopicEventsRequestInitial(pubsub_name="ps", topic="undecodable")
    )
    call = subscribe(iter([initial.SerializeToString(), TRUNCATED]))
    first = lpb.SubscribeTopicEventsResponse.FromString(await call.read())
    assert first.HasField("initial_response")
    code, details = await _stream_failure(call)
    assert (code, details.split(":")[0]) == (C.INVALID_ARGUMENT, "error unmarshalling request")
    # Client streaming, server streaming (an async generator handler, a coroutine one).
    put_file = channel.stream_unary(f"{LAYOTTO}/PutFile")
    assert (await failure(put_file(iter([TRUNCATED]))))[0] == C.INVALID_ARGUMENT
    get_file = channel.unary_stream(f"{LAYOTTO}/GetFile")
    assert (await _stream_failure(get_file(TRUNCATED)))[0] == C.INVALID_ARGUMENT
    watch = channel.unary_stream(f"{DAPR}/SubscribeConfiguration")
    assert (await _stream_failure(watch(TRUNCATED)))[0] == C.INVALID_ARGUMENT
    _no_traceback_logged(caplog)


@pytest.mark.parametrize("name", ["GetActorState", "StartWorkflowBeta1", "ScheduleJobAlpha1", "ConverseAlpha1"])
async def test_unimplemented_dapr_methods(
    name: str, channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    method = getattr(dapr_pb2_grpc.DaprStub(channel), name)
    request_type = dpb.DESCRIPTOR.services_by_name["Dapr"].methods_by_name[name].input_type
    request = _message_class(request_type.full_name)
    start = time.monotonic()
    for _ in range(50):
        assert await failure(method(request())) == (C.UNIMPLEMENTED, f"method {name} not implemented")
    elapsed = time.monotonic() - start
    _no_traceback_logged(caplog)
    lines = _refusals(caplog, f"{DAPR}/{name}")
    assert 1 <= len(lines) <= 1 + int(elapsed), [r.getMessage() for r in lines]


async def test_unimplemented_dapr_streams(channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    for name in ("EncryptAlpha1", "DecryptAlpha1", "SubscribeActorEventsAlpha1"):
        call = channel.stream_stream(f"{DAPR}/{name}")(iter([b""]))
        assert await _stream_failure(call) == (C.UNIMPLEMENTED, f"method {name} not implemented")
    _no_traceback_logged(caplog)


def _message_class(full_name: str) -> type:
    from google.protobuf import symbol_database

    return symbol_database.Default().GetSymbol(full_name)  # type: ignore[no-any-return]


async def test_an_unknown_http_verb_names_the_field(channel: grpc.aio.Channel) -> None:
    expected = (C.INVALID_ARGUMENT, "message.http_extension.verb: unknown HTTP verb 99")
    layotto = lgrpc.RuntimeStub(channel)
    message = lpb.CommonInvokeRequest(method="m", http_extension=lpb.HTTPExtension(verb=99))  # type: ignore[arg-type]
    assert await failure(layotto.InvokeService(lpb.InvokeServiceRequest(id="app", message=message))) == expected
    dapr = dapr_pb2_grpc.DaprStub(channel)
    d_message = dcommon.InvokeRequest(method="m", http_extension=dcommon.HTTPExtension(verb=99))  # type: ignore[arg-type]
    request = _message_class("dapr.proto.runtime.v1.InvokeServiceRequest")(id="app", message=d_message)
    assert await failure(dapr.InvokeService(request)) == expected
