"""Publish -> delivery on Redis Streams, end to end, run in its own process by bench.run.

`layotto`: this process is the app. It serves AppCallback (ListTopicSubscriptions names one
topic, OnTopicEvent resolves the waiting publisher) and starts a sidecar whose app config
points at it; each of `concurrency` workers publishes through the sidecar's PublishEvent and
waits until its own event comes back through OnTopicEvent. Latency is publish -> handler.

`direct`: the same closed loop with redis-py alone: XADD, and one reader doing
XREADGROUP/XACK, which is what the sidecar's component does for the app.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import grpc
import psutil
from google.protobuf import empty_pb2

from bench.loadgen import drive
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc as cb_grpc
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import free_port

PUBSUB = "redis"


class App(cb_grpc.AppCallbackServicer):
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.waiters: dict[bytes, asyncio.Future[None]] = {}

    async def ListTopicSubscriptions(self, request: empty_pb2.Empty, context: Any) -> cb.ListTopicSubscriptionsResponse:
        return cb.ListTopicSubscriptionsResponse(
            subscriptions=[cb.TopicSubscription(pubsub_name=PUBSUB, topic=self.topic)]
        )

    async def OnTopicEvent(self, request: cb.TopicEventRequest, context: Any) -> cb.TopicEventResponse:
        waiter = self.waiters.pop(request.data, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        return cb.TopicEventResponse(status=cb.TopicEventResponse.SUCCESS)


async def _layotto(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.run import _peak_rss_mb, start_sidecar

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    app = App(topic)
    server = grpc.aio.server()
    cb_grpc.add_AppCallbackServicer_to_server(app, server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    md = {"redisHost": spec["redis"]}
    config = {
        "pub_subs": {PUBSUB: {"type": "redis", "metadata": md}},
        "app": {"app_id": "bench", "grpc_callback_port": port},
    }
    workdir = Path(tempfile.mkdtemp(prefix="layotto-bench-pubsub-"))
    sidecar = await asyncio.to_thread(start_sidecar, config, workdir)
    assert sidecar.proc is not None
    ps = psutil.Process(sidecar.proc.pid)
    loop = asyncio.get_running_loop()
    try:
        async with grpc.aio.insecure_channel(sidecar.address) as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            counter = itertools.count()

            async def publish_and_wait() -> None:
                token = b"%d" % next(counter)
                delivered: asyncio.Future[None] = loop.create_future()
                app.waiters[token] = delivered
                await stub.PublishEvent(
                    pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=token, data_content_type="text/plain")
                )
                await delivered

            # The sidecar subscribes once it has asked the app: wait until an event goes round.
            for _ in range(60):
                try:
                    await asyncio.wait_for(publish_and_wait(), 1.0)
                    break
                except TimeoutError:
                    continue
            else:
                raise SystemExit("the sidecar never delivered an event")
            app.waiters.clear()
            me = psutil.Process()
            cpu0, app_cpu0 = sum(ps.cpu_times()[:2]), sum(me.cpu_times()[:2])
            result = await drive(lambda _: publish_and_wait, spec["concurrency"], spec["warmup"], spec["duration"])
            cpu = sum(ps.cpu_times()[:2]) - cpu0
            app_cpu = sum(me.cpu_times()[:2]) - app_cpu0
            result["cpu_s_per_1k"] = cpu / max(1, result["total_calls"]) * 1000
            # The app and its publishers share the machine with the sidecar: their cost bounds the rate too.
            result["app_cpu_s_per_1k"] = app_cpu / max(1, result["total_calls"]) * 1000
            result["peak_rss_mb"] = _peak_rss_mb(ps.pid)
            return result
    finally:
        sidecar.proc.terminate()
        await asyncio.to_thread(sidecar.proc.wait, 10)
        await server.stop(None)
        await _drop_stream(spec["redis"], topic)


async def _drop_stream(address: str, topic: str) -> None:
    import redis.asyncio as aioredis

    host, _, port = address.rpartition(":")
    client = aioredis.Redis(host=host, port=int(port))
    try:
        await client.delete(topic)  # a stream this run created under a unique name
    finally:
        await client.aclose()


async def _direct(spec: dict[str, Any]) -> dict[str, Any]:
    import redis.asyncio as aioredis

    host, _, port = spec["redis"].rpartition(":")
    client = aioredis.Redis(host=host, port=int(port), max_connections=spec["concurrency"] + 8)
    reader = aioredis.Redis(host=host, port=int(port))
    topic = f"bench-direct-{uuid.uuid4().hex[:8]}"
    await client.xgroup_create(topic, "g", id="0", mkstream=True)
    waiters: dict[bytes, asyncio.Future[None]] = {}
    loop = asyncio.get_running_loop()

    running = True

    async def consume() -> None:
        # Stopped by the flag: a cancelled blocking XREADGROUP can leave redis-py waiting.
        while running:
            replies = await reader.xreadgroup("g", "c", {topic: ">"}, count=100, block=100)
            for _, entries in replies or []:
                ids = []
                for entry_id, fields in entries:
                    ids.append(entry_id)
                    waiter = waiters.pop(fields[b"data"], None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                if ids:
                    await reader.xack(topic, "g", *ids)

    consumer = asyncio.ensure_future(consume())
    counter = itertools.count()

    async def publish_and_wait() -> None:
        token = b"%d" % next(counter)
        delivered: asyncio.Future[None] = loop.create_future()
        waiters[token] = delivered
        await client.xadd(topic, {"data": token})
        await delivered

    try:
        result = await drive(lambda _: publish_and_wait, spec["concurrency"], spec["warmup"], spec["duration"])
        return result
    finally:
        running = False
        await consumer
        await client.delete(topic)
        await client.aclose()
        await reader.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", help="JSON: variant (layotto|direct), redis, concurrency, warmup, duration")
    spec = json.loads(parser.parse_args().spec)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    runner = _layotto if spec["variant"] == "layotto" else _direct
    result = asyncio.run(runner(spec))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
