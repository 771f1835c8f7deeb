"""Abandoned streams give back what they hold: a sidecar process (real Redis behind pub/sub and
configuration) serves 500 streams of each kind -- Layotto's SubscribeTopicEvents and
SubscribeConfiguration, Dapr's SubscribeTopicEventsAlpha1 and SubscribeConfiguration -- that
the client then cancels, or whose client process is SIGKILLed; the sidecar's Redis connections
(its sockets that Redis' CLIENT LIST also lists) and its file descriptors come back to what
they were before.

Run as `python -m tests.e2e.test_stream_release KIND COUNT ADDRESS TAG`, this module is the
client that gets killed: it opens the streams, prints "ready" and waits."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psutil
import pytest
import redis

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.services import SERVICES, require
from tests.support.sidecar import SidecarProcess

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    from dapr.proto.runtime.v1 import configuration_pb2 as dconfig
    from dapr.proto.runtime.v1 import dapr_pb2_grpc
    from dapr.proto.runtime.v1 import pubsub_pb2 as dpubsub

REDIS_HOST, REDIS_PORT = SERVICES["redis"]
PUBSUB, CONFIG, DAPR_CONFIG = "ps", "cfg", "dcfg"
#: Streams of each kind opened by the test's own client, and by the client that is killed.
CANCELLED, KILLED = 500, 100
#: What may differ from the baseline, either way: a pool connection opened or dropped
#: meanwhile, an accepted socket being closed.
CONNECTION_SLACK, FD_SLACK = 3, 6
#: How long the sidecar may take to give everything back.
RELEASE_WITHIN = 30.0
KINDS = ["layotto-pubsub", "dapr-pubsub", "layotto-config", "dapr-config"]
#: The app ids Layotto's SubscribeConfiguration streams watch, spread over the streams.
CONFIG_APPS = 50
ROOT = Path(__file__).resolve().parents[2]


def sidecar_config(tag: str) -> dict[str, Any]:
    redis_host = f"{REDIS_HOST}:{REDIS_PORT}"
    return {
        "app": {"app_id": f"release-{tag}"},
        "pub_subs": {PUBSUB: {"type": "redis", "metadata": {"redisHost": redis_host, "poolSize": "4"}}},
        "config_store": {
            # Layotto's layout watches one channel per app id, on a connection of its own from
            # a pool of `poolSize` (64): the streams below use fewer app ids than that.
            CONFIG: {
                "type": "redis",
                "metadata": {"address": [redis_host], "keyLayout": "layotto", "keyPrefix": f"layotto-release-{tag}"},
            },
            DAPR_CONFIG: {"type": "redis", "metadata": {"redisHost": redis_host, "redisDB": "3", "poolSize": "4"}},
        },
    }


# ---- opening streams (also run by the client process that is killed)


async def _forever(first: Any) -> AsyncIterator[Any]:
    """A request stream that sends `first` and then stays open."""
    yield first
    await asyncio.Event().wait()


def _topic(tag: str, i: int) -> str:
    return f"release-{tag}-{i % 10}"


async def open_streams(kind: str, channel: grpc.aio.Channel, count: int, tag: str) -> list[Any]:
    """`count` open streams of `kind`; returns once the sidecar has answered each (for Layotto's
    SubscribeConfiguration, which answers nothing before a change, once the call is sent)."""
    calls: list[Any] = []
    if kind == "layotto-pubsub":
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        for i in range(count):
            initial = pb.SubscribeTopicEventsRequestInitial(pubsub_name=PUBSUB, topic=_topic(tag, i))
            calls.append(stub.SubscribeTopicEvents(_forever(pb.SubscribeTopicEventsRequest(initial_request=initial))))
    elif kind == "dapr-pubsub":
        dapr = dapr_pb2_grpc.DaprStub(channel)
        for i in range(count):
            d_initial = dpubsub.SubscribeTopicEventsRequestInitialAlpha1(pubsub_name=PUBSUB, topic=_topic(tag, i))
            request = dpubsub.SubscribeTopicEventsRequestAlpha1(initial_request=d_initial)
            calls.append(dapr.SubscribeTopicEventsAlpha1(_forever(request)))
    elif kind == "layotto-config":
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        for i in range(count):
            # A watcher, and its Redis connection, per app id.
            app_id = f"app-{tag}-{i % CONFIG_APPS}"
            sub = pb.SubscribeConfigurationRequest(store_name=CONFIG, app_id=app_id, keys=["k"])
            calls.append(stub.SubscribeConfiguration(_forever(sub)))
        return calls
    elif kind == "dapr-config":
        dapr = dapr_pb2_grpc.DaprStub(channel)
        for _ in range(count):
            calls.append(dapr.SubscribeConfiguration(dconfig.SubscribeConfigurationRequest(store_name=DAPR_CONFIG)))
    else:
        raise ValueError(kind)
    await asyncio.gather(*(call.read() for call in calls))
    return calls


def opened_connections(kind: str, count: int) -> int:
    """The Redis connections `count` open streams of `kind` hold at least: one per pub/sub
    subscription, one per app id watched (Dapr's streams are all of the sidecar's app)."""
    if kind == "layotto-config":
        return min(count, CONFIG_APPS)
    return 0 if kind == "dapr-config" else count


# ---- what the sidecar holds


@dataclass(frozen=True)
class Held:
    #: The sidecar's connections to Redis, and those of them a subscription holds (subscribed to
    #: channels, or last blocked in XREADGROUP): the others are idle members of its pools.
    connections: int
    subscribed: int
    fds: int

    @property
    def pooled(self) -> int:
        return self.connections - self.subscribed

    @property
    def other_fds(self) -> int:
        """Descriptors that are not Redis connections (the listener, gRPC's, epoll, ...)."""
        return self.fds - self.connections


def held(pid: int) -> Held:
    """What the sidecar holds: its sockets to Redis that Redis lists as clients (so that other
    processes' connections to the same server do not count), and its open FDs."""
    process = psutil.Process(pid)
    mine = {
        f"{c.laddr.ip}:{c.laddr.port}"
        for c in process.net_connections(kind="tcp")
        if c.raddr and c.raddr.port == REDIS_PORT and c.status == psutil.CONN_ESTABLISHED
    }
    with redis.Redis(host=REDIS_HOST, port=REDIS_PORT) as client:
        listed = [entry for entry in client.client_list() if str(entry["addr"]) in mine]
    subscribed = sum(
        1
        for entry in listed
        if int(entry.get("sub", 0) or 0) or int(entry.get("psub", 0) or 0) or entry.get("cmd") == "xreadgroup"
    )
    return Held(len(listed), subscribed, process.num_fds())


async def until(what: str, condition: Callable[[], bool], within: float, show: Callable[[], object]) -> float:
    """Poll `condition` (a tenth of a second apart) until it holds; how long it took. Fails
    after `within` seconds with `what` and the last state `show` gives."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            pytest.fail(f"{what} not within {within}s: {show()}")
        await asyncio.sleep(0.1)
    return time.monotonic() - start


def back_at(baseline: Held, peak: Held, pid: int) -> Callable[[], bool]:
    """Every subscription's connection is gone; the connections left are pool members the burst
    used (a pool keeps them); every other descriptor is as before."""

    def check() -> bool:
        now = held(pid)
        return (
            now.subscribed <= baseline.subscribed
            and now.pooled <= max(baseline.pooled, peak.pooled) + CONNECTION_SLACK
            and now.other_fds <= baseline.other_fds + FD_SLACK
        )

    return check


# ---- the tests


@pytest.fixture(scope="module")
def tag() -> str:
    return uuid.uuid4().hex[:8]


@pytest.fixture(scope="module")
def sidecar(tag: str) -> Iterator[SidecarProcess]:
    require("redis")
    process = SidecarProcess(sidecar_config(tag), actuator=False).start()
    try:
        yield process
    finally:
        process.terminate()
        with redis.Redis(host=REDIS_HOST, port=REDIS_PORT) as client:
            topics = [_topic(tag, i) for i in range(10)]
            client.delete(*topics)
            for key in client.scan_iter(f"layotto-release-{tag}*"):
                client.delete(key)


async def _baseline(kind: str, channel: grpc.aio.Channel, pid: int, tag: str) -> Held:
    """What the sidecar holds with this client connected, once as many streams of `kind` as a
    test opens came and went: modules loaded, consumer groups made, connection pools grown to
    what such a burst takes (they keep idle connections)."""
    calls = await open_streams(kind, channel, CANCELLED, tag)
    expected = opened_connections(kind, CANCELLED)
    await until("the streams' connections", lambda: held(pid).subscribed >= expected, 30, lambda: held(pid))
    for call in calls:
        call.cancel()
    samples = [held(pid)]

    def steady() -> bool:
        # The same five times in a row (half a second): the burst above is over.
        samples.append(held(pid))
        return len(samples) >= 5 and len(set(samples[-5:])) == 1

    await until("a steady baseline", steady, RELEASE_WITHIN, lambda: samples[-5:])
    return samples[-1]


@pytest.mark.parametrize("kind", KINDS)
async def test_cancelled_streams_give_back_what_they_hold(kind: str, sidecar: SidecarProcess, tag: str) -> None:
    assert sidecar.proc is not None
    pid = sidecar.proc.pid
    async with grpc.aio.insecure_channel(sidecar.address) as channel:
        baseline = await _baseline(kind, channel, pid, tag)
        calls = await open_streams(kind, channel, CANCELLED, tag)
        expected = baseline.subscribed + opened_connections(kind, CANCELLED)
        await until("the streams' connections", lambda: held(pid).subscribed >= expected, 30, lambda: held(pid))
        peak = held(pid)
        for call in calls:
            call.cancel()
        back = back_at(baseline, peak, pid)
        took = await until("everything given back", back, RELEASE_WITHIN, lambda: held(pid))
        after = held(pid)
    print(f"\n[{kind}] {CANCELLED} cancelled: baseline {baseline}, open {peak}, after {after} ({took:.1f}s)")
    if kind == "dapr-config":
        assert peak.fds >= baseline.fds  # one watcher for every stream of the app: nothing to count
    else:
        assert peak.subscribed >= baseline.subscribed + opened_connections(kind, CANCELLED)


@pytest.mark.parametrize("kind", KINDS)
async def test_streams_of_a_killed_client_are_given_back(kind: str, sidecar: SidecarProcess, tag: str) -> None:
    assert sidecar.proc is not None
    pid = sidecar.proc.pid
    async with grpc.aio.insecure_channel(sidecar.address) as channel:
        baseline = await _baseline(kind, channel, pid, tag)
    with _client(kind, KILLED, sidecar.address, tag) as client:
        assert client.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(client.stdout.readline), 60)
        assert line.strip() == b"ready", line
        expected = baseline.subscribed + opened_connections(kind, KILLED)
        await until("the streams' connections", lambda: held(pid).subscribed >= expected, 30, lambda: held(pid))
        peak = held(pid)
        client.send_signal(signal.SIGKILL)
        client.wait()
    took = await until("everything given back", back_at(baseline, peak, pid), RELEASE_WITHIN, lambda: held(pid))
    print(f"\n[{kind}] {KILLED} of a killed client: baseline {baseline}, open {peak}, after {held(pid)} ({took:.1f}s)")


@contextlib.contextmanager
def _client(kind: str, count: int, address: str, tag: str) -> Iterator[subprocess.Popen[bytes]]:
    command = [sys.executable, "-m", "tests.e2e.test_stream_release", kind, str(count), address, tag]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def _client_main(kind: str, count: int, address: str, tag: str) -> None:
    async with grpc.aio.insecure_channel(address) as channel:
        await open_streams(kind, channel, count, tag)
        print("ready", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(_client_main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]))
