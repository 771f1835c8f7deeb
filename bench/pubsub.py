"""Publish -> delivery on Redis Streams, end to end, run in its own process by bench.run.

This process is the app: it serves the callbacks and starts a sidecar whose app config points
at it; publishers call the sidecar's PublishEvent.

- `layotto`: a Layotto app, one OnTopicEvent per event.
- `layotto-bulk`: a Dapr app subscribing with `bulkSubscribe` (`bulk`: maxMessagesCount,
  maxAwaitDurationMs), its events in OnBulkTopicEvent batches.
- `direct`: redis-py alone: XADD, and one reader doing XREADGROUP COUNT 100 / XACK, which is
  what the sidecar's component does for the app.

`mode`:
- `closed`: each of `concurrency` workers publishes one event and waits until it comes back
  to the app; latency is publish -> handler.
- `stream`: `concurrency` publishers publish without waiting for delivery; the result is the
  rate at which events reach the app (bounded by the slower of publishing and delivery) and
  each event's publish -> handler latency. With `publish_batch` n > 1 each publisher sends n
  events per call, through Dapr's BulkPublishEventAlpha1 (each entry is still one XADD). With
  `publish_via: redis` the publishers XADD the events' CloudEvents to Redis themselves, so the
  sidecar only delivers: its delivery capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import shutil
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import psutil
from google.protobuf import empty_pb2

from bench.loadgen import drive, percentile
from layotto_proto.dapr.proto.runtime.v1 import appcallback_pb2 as dcb
from layotto_proto.dapr.proto.runtime.v1 import appcallback_pb2_grpc as dcb_grpc
from layotto_proto.dapr.proto.runtime.v1 import dapr_pb2_grpc as dapr_grpc
from layotto_proto.dapr.proto.runtime.v1 import pubsub_pb2 as dpb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2_grpc as cb_grpc
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import free_port

PUBSUB = "redis"


class Inbox:
    """What the app does with an event: resolve its closed-loop waiter, or note its latency
    (its data is its publish time)."""

    def __init__(self) -> None:
        self.waiters: dict[bytes, asyncio.Future[None]] = {}
        self.delivered = 0
        #: (arrival, latency) of each event, in stream mode.
        self.arrivals: list[tuple[float, float]] = []
        self.stream = False

    def take(self, data: bytes) -> None:
        self.delivered += 1
        if self.stream:
            now = time.monotonic()
            self.arrivals.append((now, now - float(data)))
            return
        waiter = self.waiters.pop(data, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class App(cb_grpc.AppCallbackServicer):
    def __init__(self, topic: str, inbox: Inbox) -> None:
        self.topic = topic
        self.inbox = inbox

    async def ListTopicSubscriptions(self, request: empty_pb2.Empty, context: Any) -> cb.ListTopicSubscriptionsResponse:
        return cb.ListTopicSubscriptionsResponse(
            subscriptions=[cb.TopicSubscription(pubsub_name=PUBSUB, topic=self.topic)]
        )

    async def OnTopicEvent(self, request: cb.TopicEventRequest, context: Any) -> cb.TopicEventResponse:
        self.inbox.take(request.data)
        return cb.TopicEventResponse(status=cb.TopicEventResponse.SUCCESS)


class BulkApp(dcb_grpc.AppCallbackServicer):  # type: ignore[misc]
    def __init__(self, topic: str, inbox: Inbox, bulk: tuple[int, int]) -> None:
        self.topic = topic
        self.inbox = inbox
        self.bulk = bulk

    async def ListTopicSubscriptions(self, request: empty_pb2.Empty, context: Any) -> Any:
        count, wait = self.bulk
        settings = dcb.BulkSubscribeConfig(enabled=True, max_messages_count=count, max_await_duration_ms=wait)
        return dcb.ListTopicSubscriptionsResponse(
            subscriptions=[dcb.TopicSubscription(pubsub_name=PUBSUB, topic=self.topic, bulk_subscribe=settings)]
        )

    async def OnBulkTopicEvent(self, request: Any, context: Any) -> Any:
        statuses = []
        for entry in request.entries:
            self.inbox.take(entry.cloud_event.data if entry.HasField("cloud_event") else entry.bytes)
            statuses.append(dcb.TopicEventBulkResponseEntry(entry_id=entry.entry_id))  # SUCCESS is 0
        return dcb.TopicEventBulkResponse(statuses=statuses)


async def _stream(target: dict[str, Any], inbox: Inbox, spec: dict[str, Any]) -> dict[str, Any]:
    """Publishers (in a process of their own, as producers are) publishing their own time as
    fast as they can; the rate and latency of what reaches the app inside the measured window."""
    inbox.stream = True
    start = time.monotonic()
    window_start, window_end = start + spec["warmup"], start + spec["warmup"] + spec["duration"]
    job = {
        **target,
        "concurrency": spec["concurrency"],
        "batch": int(spec.get("publish_batch", 1)),
        "window": [window_start, window_end],
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.pubsub", "--publisher", json.dumps(job), stdout=asyncio.subprocess.PIPE
    )
    out, _ = await child.communicate()
    if child.returncode != 0:
        raise SystemExit(f"the publishers failed ({child.returncode})")
    publishers = json.loads(out)
    inside = sorted(latency for at, latency in inbox.arrivals if window_start <= at <= window_end)
    ms = 1000.0
    return {
        "concurrency": spec["concurrency"],
        "requests": len(inside),
        "total_calls": inbox.delivered,
        "errors": publishers["errors"],
        "throughput": len(inside) / spec["duration"],
        "published_per_s": publishers["published"] / spec["duration"],
        "p50_ms": percentile(inside, 0.50) * ms,
        "p90_ms": percentile(inside, 0.90) * ms,
        "p99_ms": percentile(inside, 0.99) * ms,
        "max_ms": (inside[-1] if inside else 0.0) * ms,
    }


async def _publishers(job: dict[str, Any]) -> dict[str, Any]:
    """The stream mode's publishers: `concurrency` of them until the window ends, through the
    sidecar (`sidecar`: its address) or straight to Redis (`redis`), `batch` events a call."""
    window_start, window_end = job["window"]
    batch, topic = job["batch"], job["topic"]
    published = errors = 0
    publish: Callable[[list[bytes]], Awaitable[None]]
    closers: list[Callable[[], Awaitable[Any]]] = []
    if "redis" not in job:
        channel = grpc.aio.insecure_channel(job["sidecar"])
        closers.append(lambda: channel.close(None))
        publish = _sidecar_publisher(channel, topic)
    else:
        import redis.asyncio as aioredis

        host, _, port = job["redis"].rpartition(":")
        client = aioredis.Redis(host=host, port=int(port), max_connections=job["concurrency"] + 8)
        closers.append(client.aclose)

        wrap = _envelope if job.get("envelope") else _same

        async def publish(data: list[bytes]) -> None:
            if len(data) == 1:
                await client.xadd(topic, {"data": wrap(topic, data[0])})
                return
            pipe = client.pipeline(transaction=False)
            for item in data:
                pipe.xadd(topic, {"data": wrap(topic, item)})
            await pipe.execute()

    async def publisher() -> None:
        nonlocal published, errors
        while (now := time.monotonic()) < window_end:
            try:
                await publish([b"%.9f" % now] * batch)
            except grpc.aio.AioRpcError:
                errors += 1
                continue
            if now >= window_start:
                published += batch

    try:
        await asyncio.gather(*(publisher() for _ in range(job["concurrency"])))
    finally:
        for close in closers:
            await close()
    return {"published": published, "errors": errors}


def _same(topic: str, data: bytes) -> bytes:
    return data


def _envelope(topic: str, data: bytes) -> bytes:
    """`data` in the CloudEvent the sidecar would have published."""
    from layotto.core.cloudevents import encode, new_envelope

    return encode(new_envelope(topic=topic, pubsub_name=PUBSUB, data=data, content_type="text/plain"))


def _sidecar_publisher(channel: grpc.aio.Channel, topic: str) -> Callable[[list[bytes]], Awaitable[None]]:
    """PublishEvent for one event; Dapr's BulkPublishEventAlpha1 for several."""
    stub = runtime_pb2_grpc.RuntimeStub(channel)
    dapr = dapr_grpc.DaprStub(channel)  # type: ignore[no-untyped-call]

    async def publish(data: list[bytes]) -> None:
        if len(data) == 1:
            await stub.PublishEvent(
                pb.PublishEventRequest(pubsub_name=PUBSUB, topic=topic, data=data[0], data_content_type="text/plain")
            )
            return
        entries = [
            dpb.BulkPublishRequestEntry(entry_id=str(i), event=d, content_type="text/plain") for i, d in enumerate(data)
        ]
        reply = await dapr.BulkPublishEventAlpha1(
            dpb.BulkPublishRequest(pubsub_name=PUBSUB, topic=topic, entries=entries)
        )
        if reply.failedEntries:
            raise SystemExit(f"bulk publish failed: {reply.failedEntries[0]}")

    return publish


async def _closed(
    publish: Callable[[list[bytes]], Awaitable[None]], inbox: Inbox, spec: dict[str, Any]
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    counter = itertools.count()

    async def publish_and_wait() -> None:
        token = b"%d" % next(counter)
        delivered: asyncio.Future[None] = loop.create_future()
        inbox.waiters[token] = delivered
        await publish([token])
        await delivered

    return await drive(lambda _: publish_and_wait, spec["concurrency"], spec["warmup"], spec["duration"])


async def _layotto(spec: dict[str, Any]) -> dict[str, Any]:
    from bench.run import _peak_rss_mb, start_sidecar

    topic = f"bench-{uuid.uuid4().hex[:8]}"
    inbox = Inbox()
    server = grpc.aio.server()
    bulk = spec["variant"] == "layotto-bulk"
    if bulk:
        dcb_grpc.add_AppCallbackServicer_to_server(BulkApp(topic, inbox, tuple(spec["bulk"])), server)  # type: ignore[no-untyped-call]
    else:
        cb_grpc.add_AppCallbackServicer_to_server(App(topic, inbox), server)
    port = free_port()
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    md = {"redisHost": spec["redis"]}
    # The callback API is found by asking the app (Layotto's AppCallback first, then Dapr's).
    app = {"app_id": "bench", "grpc_callback_port": port}
    config = {"pub_subs": {PUBSUB: {"type": "redis", "metadata": md}}, "app": app}
    workdir = Path(tempfile.mkdtemp(prefix="layotto-bench-pubsub-"))
    sidecar = await asyncio.to_thread(start_sidecar, config, workdir)
    assert sidecar.proc is not None
    ps = psutil.Process(sidecar.proc.pid)
    loop = asyncio.get_running_loop()
    try:
        async with grpc.aio.insecure_channel(sidecar.address) as channel:
            publish = _sidecar_publisher(channel, topic)

            # The sidecar subscribes once it has asked the app: wait until an event goes round.
            for attempt in range(60):
                token = b"warm-up-%d" % attempt
                delivered: asyncio.Future[None] = loop.create_future()
                inbox.waiters[token] = delivered
                await publish([token])
                try:
                    await asyncio.wait_for(delivered, 1.0)
                    break
                except TimeoutError:
                    continue
            else:
                raise SystemExit("the sidecar never delivered an event")
            inbox.waiters.clear()
            me = psutil.Process()
            cpu0, app_cpu0 = sum(ps.cpu_times()[:2]), sum(me.cpu_times()[:2])
            delivered0 = inbox.delivered
            if spec.get("mode") == "stream":
                via = {"redis": spec["redis"], "envelope": True} if spec.get("publish_via") == "redis" else {}
                result = await _stream({"sidecar": sidecar.address, "topic": topic, **via}, inbox, spec)
            else:
                result = await _closed(publish, inbox, spec)
            events = max(1, inbox.delivered - delivered0)
            cpu = sum(ps.cpu_times()[:2]) - cpu0
            app_cpu = sum(me.cpu_times()[:2]) - app_cpu0
            result["cpu_s_per_1k"] = cpu / events * 1000
            # The app and its publishers share the machine with the sidecar: their cost bounds the rate too.
            result["app_cpu_s_per_1k"] = app_cpu / events * 1000
            result["peak_rss_mb"] = _peak_rss_mb(ps.pid)
            return result
    finally:
        sidecar.proc.terminate()
        await asyncio.to_thread(sidecar.proc.wait, 10)
        await server.stop(None)
        await _drop_stream(spec["redis"], topic)
        shutil.rmtree(workdir, ignore_errors=True)


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
    inbox = Inbox()

    running = True

    async def consume() -> None:
        # Stopped by the flag: a cancelled blocking XREADGROUP can leave redis-py waiting.
        while running:
            replies = await reader.xreadgroup("g", "c", {topic: ">"}, count=100, block=100)
            for _, entries in replies or []:
                ids = []
                for entry_id, fields in entries:
                    ids.append(entry_id)
                    inbox.take(fields[b"data"])
                if ids:
                    await reader.xack(topic, "g", *ids)

    consumer = asyncio.ensure_future(consume())

    async def publish(data: list[bytes]) -> None:
        await client.xadd(topic, {"data": data[0]})

    try:
        if spec.get("mode") == "stream":
            return await _stream({"redis": spec["redis"], "topic": topic}, inbox, spec)
        return await _closed(publish, inbox, spec)
    finally:
        running = False
        await consumer
        await client.delete(topic)
        await client.aclose()
        await reader.aclose()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "spec",
        help="JSON: variant (layotto|layotto-bulk|direct), mode (closed|stream), redis, concurrency, warmup, "
        "duration, bulk ([maxMessagesCount, maxAwaitDurationMs], for layotto-bulk), publish_batch and "
        "publish_via (sidecar|redis) (stream)",
    )
    parser.add_argument("--publisher", action="store_true", help="run the stream mode's publishers (internal)")
    args = parser.parse_args()
    spec = json.loads(args.spec)
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.publisher:
        json.dump(asyncio.run(_publishers(spec)), sys.stdout)
        return
    runner = _direct if spec["variant"] == "direct" else _layotto
    result = asyncio.run(runner(spec))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
