"""A binding served by a pluggable component: an output binding when the socket serves Dapr's
OutputBinding, an input binding (BindingFeature.INPUT) when it serves InputBinding, both when
it serves both, as daprd maps them (dapr/dapr pkg/components/bindings/*_pluggable.go).

Input: one Read stream; the component streams events, each is answered on the stream once the
app has it (`response_error` when it failed: the component may deliver it again). A broken
stream is opened again until the reading is closed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc

from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings.base import (
    BindingEvent,
    BindingFeature,
    Handler,
    InvokeRequest,
    InvokeResponse,
    OutputBinding,
    Reading,
    TaskReading,
    close_readings,
    handled,
    pause,
)
from layotto.components.pluggable.connection import INIT_TIMEOUT, PING_TIMEOUT, Connection, properties
from layotto.components.pluggable.discovery import INPUT_BINDING, OUTPUT_BINDING
from layotto.errors import ComponentError
from layotto_proto.dapr.proto.components.v1 import bindings_pb2 as pb
from layotto_proto.dapr.proto.components.v1 import common_pb2

log = logging.getLogger("layotto.pluggable")

_Stream = grpc.aio.StreamStreamCall[Any, pb.ReadResponse]


class PluggableBinding(OutputBinding):
    """The binding of a component process on `socket`."""

    def __init__(self, socket: str, type_name: str, services: frozenset[str]) -> None:
        self.type_name = type_name
        self.services = services
        self.conn = Connection(socket, "bindings")
        self.features = frozenset({BindingFeature.INPUT}) if INPUT_BINDING in services else frozenset()
        self._operations: list[str] = []
        self._readings: set[TaskReading] = set()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.conn.open(context.name)
        given = common_pb2.MetadataRequest(properties=properties(metadata))
        if OUTPUT_BINDING in self.services:
            request = pb.OutputBindingInitRequest(metadata=given)
            await self.conn.unary(OUTPUT_BINDING, "Init", request, pb.OutputBindingInitResponse, within=INIT_TIMEOUT)
            reply = await self.conn.unary(
                OUTPUT_BINDING,
                "ListOperations",
                pb.ListOperationsRequest(),
                pb.ListOperationsResponse,
                within=INIT_TIMEOUT,
            )
            self._operations = list(reply.operations)
        if INPUT_BINDING in self.services:
            request_in = pb.InputBindingInitRequest(metadata=given)
            await self.conn.unary(INPUT_BINDING, "Init", request_in, pb.InputBindingInitResponse, within=INIT_TIMEOUT)

    def operations(self) -> list[str]:
        return list(self._operations)

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        asked = pb.InvokeRequest(data=request.data, metadata=request.metadata, operation=request.operation)
        reply = await self.conn.unary(OUTPUT_BINDING, "Invoke", asked, pb.InvokeResponse)
        return InvokeResponse(data=reply.data, metadata=dict(reply.metadata))

    async def read(self, handler: Handler) -> Reading:
        if BindingFeature.INPUT not in self.features:
            return await super().read(handler)
        call = await self._open()
        return TaskReading(self._read_loop(call, handler), f"pluggable-read-{self.context.name}", self._readings)

    async def _open(self) -> _Stream:
        # The stream starts with the component's first event; nothing is sent before it.
        call = self.conn.stream(INPUT_BINDING, "Read", pb.ReadResponse)
        try:
            await call.wait_for_connection()
        except grpc.aio.AioRpcError as exc:
            raise self.conn.failure(exc, "Read") from None
        return call

    async def _read_loop(self, first: _Stream, handler: Handler) -> None:
        failures = 0
        call: _Stream | None = first
        writing = asyncio.Lock()
        try:
            while True:
                try:
                    if call is None:
                        call = await self._open()
                    async for event in call:
                        failures = 0
                        await self._answer(call, event, handler, writing)
                    why = "the component ended the stream"
                except grpc.aio.AioRpcError as exc:
                    why = str(self.conn.failure(exc, "Read"))
                except ComponentError as exc:
                    why = str(exc)
                log.warning("reading %s stopped: %s; reading again", self.conn.what, why)
                if call is not None:
                    call.cancel()
                    call = None
                await pause(failures)
                failures += 1
        finally:
            if call is not None:
                call.cancel()

    async def _answer(self, call: _Stream, event: pb.ReadResponse, handler: Handler, writing: asyncio.Lock) -> None:
        """One event at a time, in the component's order, as the block's contract asks."""
        ok = await handled(handler, BindingEvent(data=event.data, metadata=dict(event.metadata)), self.conn.what)
        answer = pb.ReadRequest(message_id=event.message_id)
        if not ok:
            answer.response_error.message = "the app did not take the event"
        async with writing:
            try:
                await call.write(answer)
            except asyncio.InvalidStateError:  # the stream ended: the next read says how
                log.debug("answering event %s of %s: the stream ended", event.message_id, self.conn.what)

    async def ping(self) -> None:
        service = OUTPUT_BINDING if OUTPUT_BINDING in self.services else INPUT_BINDING
        await self.conn.unary(service, "Ping", common_pb2.PingRequest(), common_pb2.PingResponse, within=PING_TIMEOUT)

    async def close(self) -> None:
        await close_readings(self._readings)
        await self.conn.close()
