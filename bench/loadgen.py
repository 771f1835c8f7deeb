"""Load generator, run in its own process.

Closed loop (the default): each of `concurrency` workers sends a call, waits for the answer, and
sends the next, for `warmup + duration` seconds; only calls that start and end inside the
measured window count. Open loop (`"rate": N` in the spec): calls are sent at N per second on a
fixed schedule whether or not earlier ones have answered, as many in flight as that takes; every
call scheduled inside the window counts, its latency taken from when it was due (so a stalled
server is not hidden by a generator that waited for it).
Requests are serialised once up front and sent as raw bytes, so the generator spends as
little CPU per call as Python allows and the server under test gets the cores.

Optional spec keys: `timeout` (seconds, a per-call deadline), `watch` ({name: pid}: the CPU
seconds of those processes over the measured window, sampled here at its edges).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Call = Callable[[], Awaitable[Any]]


def _identity(data: bytes) -> bytes:
    return data


def grpc_calls(channel: grpc.aio.Channel, steps: list[tuple[str, bytes]], timeout: float | None = None) -> Call:
    """A call that performs each (method path, request bytes) in turn: one iteration."""
    stubs = [
        (channel.unary_unary(path, request_serializer=_identity, response_deserializer=_identity), body)
        for path, body in steps
    ]

    if len(stubs) == 1:
        stub, body = stubs[0]

        async def one() -> Any:
            return await stub(body, timeout=timeout)

        return one

    async def several() -> Any:
        for stub, body in stubs:
            await stub(body, timeout=timeout)

    return several


class Outcomes:
    """Status codes of every call (warmup included), with the first message seen for each error code."""

    def __init__(self) -> None:
        self.codes: Counter[str] = Counter()
        self.details: dict[str, str] = {}

    def error(self, exc: grpc.aio.AioRpcError) -> None:
        name = exc.code().name
        self.codes[name] += 1
        self.details.setdefault(name, exc.details() or "")

    def report(self, total: int) -> dict[str, Any]:
        errors = sum(self.codes.values())
        return {"errors": errors, "codes": {"OK": total - errors, **self.codes}, "error_details": self.details}


class CpuWatch:
    """User+system CPU seconds of other processes between two instants of the measured window."""

    def __init__(self, pids: dict[str, int]) -> None:
        import psutil

        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.first: tuple[float, dict[str, float]] | None = None
        self.result: dict[str, dict[str, float]] = {}

    def _sample(self) -> tuple[float, dict[str, float]]:
        return time.perf_counter(), {name: sum(p.cpu_times()[:2]) for name, p in self.procs.items()}

    async def run(self, window_start: float, window_end: float) -> None:
        await asyncio.sleep(max(0.0, window_start - time.perf_counter()))
        self.first = self._sample()
        await asyncio.sleep(max(0.0, window_end - time.perf_counter()))
        t1, cpu1 = self._sample()
        t0, cpu0 = self.first
        wall = t1 - t0
        self.result = {
            name: {"cpu_s": cpu1[name] - cpu0[name], "wall_s": wall, "vcpu": (cpu1[name] - cpu0[name]) / wall}
            for name in self.procs
        }


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


def _summary(latencies: list[float], duration: float) -> dict[str, Any]:
    latencies.sort()
    ms = 1000.0
    return {
        "requests": len(latencies),
        "throughput": len(latencies) / duration,
        "p50_ms": percentile(latencies, 0.50) * ms,
        "p90_ms": percentile(latencies, 0.90) * ms,
        "p99_ms": percentile(latencies, 0.99) * ms,
        "max_ms": (latencies[-1] if latencies else 0.0) * ms,
    }


async def drive(
    make_call: Callable[[int], Call],
    concurrency: int,
    warmup: float,
    duration: float,
    watch: dict[str, int] | None = None,
) -> dict[str, Any]:
    start = time.perf_counter()
    window_start = start + warmup
    window_end = window_start + duration
    latencies: list[float] = []
    outcomes = Outcomes()
    total = 0
    cpu = CpuWatch(watch) if watch else None
    sampler = asyncio.ensure_future(cpu.run(window_start, window_end)) if cpu else None

    async def worker(index: int) -> None:
        nonlocal total
        call = make_call(index)
        now = time.perf_counter()
        while now < window_end:
            t0 = now
            try:
                await call()
            except grpc.aio.AioRpcError as exc:
                outcomes.error(exc)
            total += 1
            now = time.perf_counter()
            if t0 >= window_start and now <= window_end:
                latencies.append(now - t0)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    if sampler is not None:
        await sampler
    return {
        "concurrency": concurrency,
        "total_calls": total,
        **_summary(latencies, duration),
        **outcomes.report(total),
        **({"cpu": cpu.result} if cpu else {}),
    }


async def drive_open(
    call: Call, rate: float, warmup: float, duration: float, watch: dict[str, int] | None = None
) -> dict[str, Any]:
    """`rate` calls per second on a fixed schedule; waits at the end for the calls still in flight."""
    start = time.perf_counter()
    window_start = start + warmup
    window_end = window_start + duration
    interval = 1.0 / rate
    latencies: list[float] = []
    completed = 0  # answers (any status) that arrived inside the window
    outcomes = Outcomes()
    in_flight = max_in_flight = 0
    running: set[asyncio.Task[None]] = set()
    cpu = CpuWatch(watch) if watch else None
    sampler = asyncio.ensure_future(cpu.run(window_start, window_end)) if cpu else None

    async def one(due: float) -> None:
        nonlocal in_flight, max_in_flight, completed
        in_flight += 1
        max_in_flight = max(max_in_flight, in_flight)
        try:
            await call()
        except grpc.aio.AioRpcError as exc:
            outcomes.error(exc)
        in_flight -= 1
        now = time.perf_counter()
        if due >= window_start:
            latencies.append(now - due)
        if window_start <= now <= window_end:
            completed += 1

    sent = in_window = 0
    while (due := start + sent * interval) < window_end:
        # A late wake-up sends every call that fell due meanwhile: the rate holds on average.
        now = time.perf_counter()
        while due <= now and due < window_end:
            task = asyncio.ensure_future(one(due))
            running.add(task)
            task.add_done_callback(running.discard)
            sent += 1
            in_window += due >= window_start
            due = start + sent * interval
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
    if running:
        await asyncio.gather(*running)
    if sampler is not None:
        await sampler
    return {
        "concurrency": max_in_flight,
        "rate": rate,
        "total_calls": sent,
        "scheduled_in_window": in_window,
        "completed_in_window": completed,
        **_summary(latencies, duration),
        # What the server kept up with: below `rate` the backlog (and the latency) only grows.
        "throughput": completed / duration,
        **outcomes.report(sent),
        **({"cpu": cpu.result} if cpu else {}),
    }


async def _main(spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec["kind"]
    if kind == "grpc":
        steps = [(path, bytes.fromhex(body)) for path, body in spec["steps"]]
        per_worker = spec.get("per_worker_steps")  # list per worker index, for distinct resources
        timeout = spec.get("timeout")
        watch = spec.get("watch")
        async with grpc.aio.insecure_channel(spec["target"]) as channel:
            await asyncio.wait_for(channel.channel_ready(), 10)
            if spec.get("rate"):
                return await drive_open(
                    grpc_calls(channel, steps, timeout), spec["rate"], spec["warmup"], spec["duration"], watch
                )

            def make(index: int) -> Call:
                if per_worker:
                    chosen = [(p, bytes.fromhex(b)) for p, b in per_worker[index % len(per_worker)]]
                    return grpc_calls(channel, chosen, timeout)
                return grpc_calls(channel, steps, timeout)

            return await drive(make, spec["concurrency"], spec["warmup"], spec["duration"], watch)
    if kind == "redis-hgetall":
        import redis.asyncio as aioredis

        client = aioredis.Redis(host="127.0.0.1", port=6379)
        key = spec["key"]

        def make_redis(_: int) -> Call:
            async def call() -> Any:
                return await client.hgetall(key)

            return call

        try:
            return await drive(make_redis, spec["concurrency"], spec["warmup"], spec["duration"])
        finally:
            await client.aclose()
    if kind == "redis-hset":
        import redis.asyncio as aioredis

        client = aioredis.Redis(host="127.0.0.1", port=6379)
        key, value = spec["key"], bytes.fromhex(spec["value"])

        def make_set(_: int) -> Call:
            async def call() -> Any:
                return await client.hset(key, mapping={"data": value, "version": 1})

            return call

        try:
            return await drive(make_set, spec["concurrency"], spec["warmup"], spec["duration"])
        finally:
            await client.aclose()
    raise SystemExit(f"unknown load kind {kind}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", help="JSON load spec")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_main(json.loads(args.spec)))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
