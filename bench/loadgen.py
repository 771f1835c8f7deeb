"""Closed-loop load generator, run in its own process.

Each of `concurrency` workers sends a call, waits for the answer, and sends the next, for
`warmup + duration` seconds; only calls that start and end inside the measured window count.
Requests are serialised once up front and sent as raw bytes, so the generator spends as
little CPU per call as Python allows and the server under test gets the cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

Call = Callable[[], Awaitable[Any]]


def _identity(data: bytes) -> bytes:
    return data


def grpc_calls(channel: grpc.aio.Channel, steps: list[tuple[str, bytes]]) -> Call:
    """A call that performs each (method path, request bytes) in turn: one iteration."""
    stubs = [
        (channel.unary_unary(path, request_serializer=_identity, response_deserializer=_identity), body)
        for path, body in steps
    ]

    if len(stubs) == 1:
        stub, body = stubs[0]

        async def one() -> Any:
            return await stub(body)

        return one

    async def several() -> Any:
        for stub, body in stubs:
            await stub(body)

    return several


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def drive(make_call: Callable[[int], Call], concurrency: int, warmup: float, duration: float) -> dict[str, Any]:
    start = time.perf_counter()
    window_start = start + warmup
    window_end = window_start + duration
    latencies: list[float] = []
    errors = 0
    total = 0

    async def worker(index: int) -> None:
        nonlocal errors, total
        call = make_call(index)
        now = time.perf_counter()
        while now < window_end:
            t0 = now
            try:
                await call()
            except grpc.aio.AioRpcError:
                errors += 1
            total += 1
            now = time.perf_counter()
            if t0 >= window_start and now <= window_end:
                latencies.append(now - t0)

    await asyncio.gather(*(worker(i) for i in range(concurrency)))
    latencies.sort()
    ms = 1000.0
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "total_calls": total,
        "errors": errors,
        "throughput": len(latencies) / duration,
        "p50_ms": percentile(latencies, 0.50) * ms,
        "p90_ms": percentile(latencies, 0.90) * ms,
        "p99_ms": percentile(latencies, 0.99) * ms,
        "max_ms": (latencies[-1] if latencies else 0.0) * ms,
    }


async def _main(spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec["kind"]
    if kind == "grpc":
        steps = [(path, bytes.fromhex(body)) for path, body in spec["steps"]]
        per_worker = spec.get("per_worker_steps")  # list per worker index, for distinct resources
        async with grpc.aio.insecure_channel(spec["target"]) as channel:
            await asyncio.wait_for(channel.channel_ready(), 10)

            def make(index: int) -> Call:
                if per_worker:
                    chosen = [(p, bytes.fromhex(b)) for p, b in per_worker[index % len(per_worker)]]
                    return grpc_calls(channel, chosen)
                return grpc_calls(channel, steps)

            return await drive(make, spec["concurrency"], spec["warmup"], spec["duration"])
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
