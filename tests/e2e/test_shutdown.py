"""SIGTERM drains a sidecar process in order: gRPC health says NOT_SERVING and readiness 503
first, while the listener still takes connections; then open subscription streams end at once
with UNAVAILABLE "the sidecar is shutting down" (they do not hold the shutdown for the grace
period); a unary call in flight still completes; then the listener closes and the process
exits."""

from __future__ import annotations

import asyncio
import signal
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
import warnings
from typing import Any

import grpc
from google.protobuf import any_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.e2e.invoke_apps import grpc_app
from tests.support.services import SERVICES, require
from tests.support.sidecar import SidecarProcess

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from dapr.proto.runtime.v1 import dapr_pb2_grpc
    from dapr.proto.runtime.v1 import pubsub_pb2 as dpubsub

NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
SERVING = health_pb2.HealthCheckResponse.SERVING
SHUTTING_DOWN = (grpc.StatusCode.UNAVAILABLE, "the sidecar is shutting down")
#: A subscription stream must end this soon after SIGTERM (the grace period is 10 s).
STREAMS_END_WITHIN = 1.0


async def _forever(first: Any) -> Any:
    yield first
    await asyncio.Event().wait()


async def _end_of(call: Any) -> tuple[float, grpc.StatusCode, str]:
    """When a stream ended (monotonic), with which code and details."""
    try:
        while True:
            await call.read()
    except grpc.aio.AioRpcError as exc:
        return time.monotonic(), exc.code(), exc.details() or ""


async def _until(condition: Any, what: str, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {within}s")
        await asyncio.sleep(0.01)


class _ListenerWatch(threading.Thread):
    """Notes when a TCP port stops taking connections (polled every few milliseconds)."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.closed_at: float | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            except OSError:
                self.closed_at = time.monotonic()
                return
            time.sleep(0.005)


class _ReadinessWatch(threading.Thread):
    """Notes the first time readiness is not 200."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/actuator/health/readiness"
        self.unready: tuple[float, int] | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.unready is None:
            try:
                with urllib.request.urlopen(self.url, timeout=1) as reply:
                    status = reply.status
            except urllib.error.HTTPError as exc:
                status = exc.code
            except OSError:
                return
            if status != 200:
                self.unready = (time.monotonic(), status)
            time.sleep(0.01)


async def test_sigterm_drains_in_order() -> None:
    require("redis")
    host, port = SERVICES["redis"]
    app_id, topic = f"shutdown-{uuid.uuid4().hex[:8]}", f"shutdown-{uuid.uuid4().hex[:8]}"
    async with grpc_app(app_id) as (app, app_port):
        config = {
            "app": {"app_id": app_id, "grpc_callback_port": app_port},
            "pub_subs": {"ps": {"type": "redis", "metadata": {"redisHost": f"{host}:{port}"}}},
        }
        sidecar = SidecarProcess(config)
        await asyncio.to_thread(sidecar.start)
        assert sidecar.proc is not None and sidecar.actuator_port is not None
        try:
            async with grpc.aio.insecure_channel(sidecar.address) as channel:
                health = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""))
                assert (await health.read()).status == SERVING
                initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name="ps", topic=topic)
                layotto_stream = runtime_pb2_grpc.RuntimeStub(channel).SubscribeTopicEvents(
                    _forever(pb.SubscribeTopicEventsRequest(initial_request=initial))
                )
                d_initial = dpubsub.SubscribeTopicEventsRequestInitialAlpha1(pubsub_name="ps", topic=topic)
                dapr_stream = dapr_pb2_grpc.DaprStub(channel).SubscribeTopicEventsAlpha1(
                    _forever(dpubsub.SubscribeTopicEventsRequestAlpha1(initial_request=d_initial))
                )
                assert (await layotto_stream.read()).HasField("initial_response")
                assert (await dapr_stream.read()).HasField("initial_response")
                # A unary call in flight: the app takes 2 s to answer "sleep".
                message = pb.CommonInvokeRequest(method="sleep", data=any_pb2.Any(value=b"x"))
                in_flight = asyncio.ensure_future(
                    runtime_pb2_grpc.RuntimeStub(channel).InvokeService(
                        pb.InvokeServiceRequest(id=app_id, message=message), timeout=20
                    )
                )
                await _until(lambda: bool(app.seen.calls), "the app got the call")

                listener, readiness = _ListenerWatch(sidecar.grpc_port), _ReadinessWatch(sidecar.actuator_port)
                listener.start()
                readiness.start()
                layotto_end = asyncio.ensure_future(_end_of(layotto_stream))
                dapr_end = asyncio.ensure_future(_end_of(dapr_stream))
                sigterm = time.monotonic()
                sidecar.proc.send_signal(signal.SIGTERM)

                statuses: list[int] = []
                while (reply := await health.read()) is not grpc.aio.EOF:
                    statuses.append(reply.status)
                    if reply.status == NOT_SERVING:
                        break
                not_serving = time.monotonic()
                assert statuses[-1:] == [NOT_SERVING], statuses
                watch_end = await _end_of(health)
                assert watch_end[1:] == SHUTTING_DOWN

                (layotto_at, *layotto_status), (dapr_at, *dapr_status) = await asyncio.gather(layotto_end, dapr_end)
                assert tuple(layotto_status) == SHUTTING_DOWN and tuple(dapr_status) == SHUTTING_DOWN
                assert layotto_at - sigterm < STREAMS_END_WITHIN and dapr_at - sigterm < STREAMS_END_WITHIN

                reply = await in_flight
                answered = time.monotonic()
                assert reply.content_type == "application/x-echo"
            code = await asyncio.to_thread(sidecar.proc.wait, 20)
            exited = time.monotonic()
        finally:
            await asyncio.to_thread(sidecar.terminate)
        listener.stop.set()
        readiness.stop.set()
        listener.join(5)
        readiness.join(5)

    assert code == 0, sidecar.log()
    assert readiness.unready is not None and readiness.unready[1] == 503, readiness.unready
    assert listener.closed_at is not None
    # NOT_SERVING came while the listener still took connections; readiness said 503 while the
    # call in flight was finishing.
    assert not_serving < listener.closed_at, (not_serving - sigterm, listener.closed_at - sigterm)
    assert readiness.unready[0] < answered
    print(
        f"\nSIGTERM +{not_serving - sigterm:.3f}s NOT_SERVING, +{readiness.unready[0] - sigterm:.3f}s readiness 503, "
        f"+{layotto_at - sigterm:.3f}/{dapr_at - sigterm:.3f}s streams ended, "
        f"+{listener.closed_at - sigterm:.3f}s listener closed, +{answered - sigterm:.3f}s in-flight call answered, "
        f"+{exited - sigterm:.3f}s exited"
    )
