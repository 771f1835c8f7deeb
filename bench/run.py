"""One command for the whole benchmark: `python -m bench.run` (see docs/benchmarks.md).

It starts a layotto sidecar and a bare grpc.aio server as separate processes, drives each
scenario and its baseline with the load generator (another process) at each concurrency,
and reports throughput, latency percentiles, the server's CPU seconds per 1,000 requests and
its peak RSS. Service invocation through two sidecars has its own runner, `python -m bench.invoke`
(bench/invoke.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil

from layotto.runtime.registry import ComponentRegistry
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from tests.support.sidecar import free_port, layotto_config

ROOT = Path(__file__).resolve().parent.parent
REDIS_HOST = "127.0.0.1:6379"
RUNTIME = "/spec.proto.runtime.v1.Runtime/"


@dataclass
class Target:
    name: str
    proc: subprocess.Popen[bytes] | None = None
    address: str = ""

    @property
    def ps(self) -> psutil.Process | None:
        return psutil.Process(self.proc.pid) if self.proc else None


@dataclass
class Row:
    scenario: str
    variant: str
    target: str
    load: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / (1024 * 1024)


def _wait_ready(address: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{address}: server exited with {proc.returncode}")
            try:
                grpc.channel_ready_future(channel).result(timeout=1)
                return
            except grpc.FutureTimeoutError:
                if time.monotonic() > deadline:
                    raise


def start_sidecar(grpc_config: dict[str, Any], workdir: Path) -> Target:
    port = free_port()
    path = workdir / "bench-config.json"
    path.write_text(json.dumps(layotto_config(grpc_config, grpc_port=port)))
    log = (workdir / "sidecar.log").open("ab")
    env = {**os.environ, "LAYOTTO_LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "layotto.cli", "start", "-c", str(path)], stdout=log, stderr=subprocess.STDOUT, env=env
    )
    target = Target("layotto", proc, f"127.0.0.1:{port}")
    _wait_ready(target.address, proc)
    return target


def start_bare(value_size: int) -> Target:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_server", "--port", str(port), "--value-size", str(value_size)], cwd=ROOT
    )
    target = Target("bare grpc.aio", proc, f"127.0.0.1:{port}")
    _wait_ready(target.address, proc)
    return target


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    # Pub/sub runs its own sidecar beside the app it plays (see bench/pubsub.py), WASM functions
    # one serving a function (bench/wasm.py).
    module = {"pubsub": "bench.pubsub", "wasm": "bench.wasm"}.get(spec["kind"], "bench.loadgen")
    out = subprocess.run([sys.executable, "-m", module, json.dumps(spec)], cwd=ROOT, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{module} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def measure(target: Target | None, spec: dict[str, Any]) -> dict[str, Any]:
    ps = target.ps if target else None
    cpu0 = sum(ps.cpu_times()[:2]) if ps else 0.0
    result = run_load(spec)
    if ps is not None and result["total_calls"]:
        cpu = sum(ps.cpu_times()[:2]) - cpu0
        result["cpu_s_per_1k"] = cpu / result["total_calls"] * 1000
        result["peak_rss_mb"] = _peak_rss_mb(ps.pid)
    return result


def _hex(message: Any) -> str:
    return str(message.SerializeToString().hex())


def grpc_load(target: Target, steps: list[tuple[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "kind": "grpc",
        "target": target.address,
        "steps": [(RUNTIME + method, _hex(msg)) for method, msg in steps],
        **extra,
    }


def available(block: str, type_name: str) -> bool:
    return type_name in ComponentRegistry().types_of(block)


def build_rows(sidecar: Target, bare: Target, value: bytes, run_id: str) -> list[Row]:
    hello = pb.SayHelloRequest(service_name="helloworld", name="bench")
    rows = [
        Row("SayHello", "layotto", "layotto", grpc_load(sidecar, [("SayHello", hello)])),
        Row("SayHello", "bare grpc.aio server", "bare", grpc_load(bare, [("SayHello", hello)])),
    ]
    bare_get = Row("", "bare grpc.aio server", "bare", grpc_load(bare, [("GetState", pb.GetStateRequest(key="k"))]))
    key = f"bench-{run_id}"
    save = [pb.StateItem(key=key, value=value)]
    rows += [
        Row(
            "GetState in-memory",
            "layotto",
            "layotto",
            grpc_load(sidecar, [("GetState", pb.GetStateRequest(store_name="mem", key=key))]),
        ),
        Row("GetState in-memory", bare_get.variant, "bare", bare_get.load),
        Row(
            "SaveState in-memory",
            "layotto",
            "layotto",
            grpc_load(sidecar, [("SaveState", pb.SaveStateRequest(store_name="mem", states=save))]),
        ),
    ]
    wasm = {"kind": "wasm", "value_size": len(value)}
    rows += [
        Row("GetState via WASM function", "HTTP -> function (get_state)", "wasm", {**wasm, "variant": "function"}),
        Row("GetState via WASM function", "gRPC GetState, same sidecar", "wasm", {**wasm, "variant": "grpc"}),
    ]
    if available("state", "redis"):
        rows += [
            Row(
                "GetState redis",
                "layotto",
                "layotto",
                grpc_load(sidecar, [("GetState", pb.GetStateRequest(store_name="redis", key=key))]),
            ),
            Row("GetState redis", bare_get.variant, "bare", bare_get.load),
            Row("GetState redis", "direct redis-py asyncio HGETALL", "direct", {"kind": "redis-hgetall", "key": key}),
            Row(
                "SaveState redis",
                "layotto",
                "layotto",
                grpc_load(sidecar, [("SaveState", pb.SaveStateRequest(store_name="redis", states=save))]),
            ),
            Row(
                "SaveState redis",
                "direct redis-py asyncio HSET",
                "direct",
                {"kind": "redis-hset", "key": f"{key}-direct", "value": value.hex()},
            ),
        ]
    if available("sequencer", "redis"):
        rows += [
            Row(
                "GetNextId redis",
                "layotto, segment cache",
                "layotto",
                grpc_load(sidecar, [("GetNextId", pb.GetNextIdRequest(store_name="seq_cached", key=key))]),
            ),
            Row(
                "GetNextId redis",
                "layotto, no cache",
                "layotto",
                grpc_load(sidecar, [("GetNextId", pb.GetNextIdRequest(store_name="seq_plain", key=key))]),
            ),
            Row("GetNextId redis", bare_get.variant, "bare", grpc_load(bare, [("SayHello", hello)])),
        ]
    if available("lock", "redis"):
        per_worker = [
            [
                (
                    RUNTIME + "TryLock",
                    _hex(pb.TryLockRequest(store_name="lock", resource_id=f"{key}-{i}", lock_owner=f"o{i}", expire=30)),
                ),
                (
                    RUNTIME + "Unlock",
                    _hex(pb.UnlockRequest(store_name="lock", resource_id=f"{key}-{i}", lock_owner=f"o{i}")),
                ),
            ]
            for i in range(64)
        ]
        bare_two = [("GetState", pb.GetStateRequest(key="k"))] * 2
        rows += [
            Row(
                "TryLock+Unlock redis",
                "layotto (2 calls per iteration)",
                "layotto",
                {"kind": "grpc", "target": sidecar.address, "steps": per_worker[0], "per_worker_steps": per_worker},
            ),
            Row("TryLock+Unlock redis", "bare grpc.aio server (2 calls)", "bare", grpc_load(bare, bare_two)),
        ]
    if available("pubsub", "redis"):
        pubsub = {"kind": "pubsub", "redis": REDIS_HOST}
        # Bulk: Dapr's bulkSubscribe, batches of up to 100 sent at most 5 ms after their first event.
        bulk = {**pubsub, "variant": "layotto-bulk", "bulk": [100, 5]}
        rows += [
            Row(
                "Publish->delivery redis",
                "layotto PublishEvent -> app OnTopicEvent",
                "pubsub",
                {**pubsub, "variant": "layotto"},
            ),
            Row("Publish->delivery redis", "layotto PublishEvent -> app OnBulkTopicEvent", "pubsub", bulk),
            Row(
                "Publish->delivery redis",
                "direct redis-py XADD -> XREADGROUP",
                "direct",
                {**pubsub, "variant": "direct"},
            ),
        ]
        # Open loop: publishers (a process of their own) do not wait for delivery; events/s reaching the app.
        for scenario, batch, how, via in (
            ("Publish->app stream redis", 1, "PublishEvent", "sidecar"),
            ("Publish->app stream redis, bulk publish", 100, "BulkPublishEventAlpha1 x100", "sidecar"),
            # The sidecar only delivers: the publishers XADD the CloudEvents themselves.
            ("Delivery stream redis (XADD by the publishers)", 1, "XADD", "redis"),
        ):
            stream = {"mode": "stream", "publish_batch": batch, "publish_via": via}
            rows += [
                Row(
                    scenario, f"layotto {how} -> app OnTopicEvent", "pubsub", {**pubsub, **stream, "variant": "layotto"}
                ),
                Row(scenario, f"layotto {how} -> app OnBulkTopicEvent", "pubsub", {**bulk, **stream}),
                Row(
                    scenario,
                    "direct redis-py XADD" + (" x100 pipelined" if batch > 1 else "") + " -> XREADGROUP",
                    "direct",
                    {**pubsub, **stream, "variant": "direct"},
                ),
            ]
    return rows


def sidecar_config() -> dict[str, Any]:
    md = {"redisHost": REDIS_HOST}
    cfg: dict[str, Any] = {
        "hellos": {"helloworld": {"type": "helloworld", "hello": "greeting"}},
        "state": {"mem": {"type": "in-memory"}},
        "app": {"app_id": "bench"},
    }
    if available("state", "redis"):
        cfg["state"]["redis"] = {"type": "redis", "metadata": md}
    if available("sequencer", "redis"):
        cfg["sequencer"] = {
            "seq_cached": {"type": "redis", "metadata": {**md, "segmentCacheEnable": "true"}},
            "seq_plain": {"type": "redis", "metadata": {**md, "segmentCacheEnable": "false"}},
        }
    if available("lock", "redis"):
        cfg["lock"] = {"lock": {"type": "redis", "metadata": md}}
    return cfg


def prime(sidecar: Target, value: bytes, run_id: str) -> None:
    from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc

    with grpc.insecure_channel(sidecar.address) as channel:
        stub = runtime_pb2_grpc.RuntimeStub(channel)
        stores = ["mem"] + (["redis"] if available("state", "redis") else [])
        for store in stores:
            stub.SaveState(
                pb.SaveStateRequest(store_name=store, states=[pb.StateItem(key=f"bench-{run_id}", value=value)])
            )


def fmt_table(rows: list[Row]) -> str:
    """One markdown table per scenario, its baselines beside it."""
    out: list[str] = []
    for scenario in dict.fromkeys(row.scenario for row in rows):
        out += [
            f"### {scenario}",
            "",
            "| variant | conc. | req/s | p50 ms | p90 ms | p99 ms | max ms | CPU s/1k req | peak RSS MB |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in rows:
            if row.scenario != scenario:
                continue
            r = row.result
            cpu = f"{r['cpu_s_per_1k']:.3f}" if "cpu_s_per_1k" in r else "n/a"
            rss = f"{r['peak_rss_mb']:.1f}" if "peak_rss_mb" in r else "n/a"
            out.append(
                f"| {row.variant} | {r['concurrency']} | {r['throughput']:.0f} | "
                f"{r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {r['max_ms']:.2f} | {cpu} | {rss} |"
            )
        out.append("")
    return "\n".join(out)


def _pick(rows: list[Row], scenario: str, target: str, conc: int, variant: str = "") -> dict[str, Any] | None:
    for row in rows:
        if (
            row.scenario == scenario
            and row.target == target
            and variant in row.variant
            and row.result.get("concurrency") == conc
        ):
            return row.result
    return None


def targets_report(rows: list[Row]) -> list[str]:
    """The issue's targets, each as measured in this run (ratios need both rows)."""
    lines: list[str] = []

    def ratio(scenario: str, conc: int, need: float, label: str, variant: str = "") -> None:
        ours, bare = _pick(rows, scenario, "layotto", conc, variant), _pick(rows, scenario, "bare", conc)
        if ours and bare and bare["throughput"]:
            value = ours["throughput"] / bare["throughput"]
            verdict = "met" if value >= need else "NOT met"
            lines.append(f"- {label}: {value:.2f} of the bare server (target >= {need}) {verdict}")

    ratio("GetState in-memory", 64, 0.85, "GetState in-memory, c=64, throughput")
    ratio("GetState redis", 64, 0.75, "GetState redis, c=64, throughput")
    ratio("GetNextId redis", 64, 0.9, "GetNextId redis with segment cache, c=64, throughput", "segment cache")
    ours, bare = _pick(rows, "GetState redis", "layotto", 1), _pick(rows, "GetState redis", "bare", 1)
    direct = _pick(rows, "GetState redis", "direct", 1)
    if ours and bare and direct:
        for q, slack in (("p50", 0.1), ("p99", 0.3)):
            bound = bare[f"{q}_ms"] + direct[f"{q}_ms"] + slack
            value = ours[f"{q}_ms"]
            verdict = "met" if value <= bound else "NOT met"
            lines.append(
                f"- GetState redis, c=1, {q}: {value:.3f} ms "
                f"(target <= bare + direct + {slack} = {bound:.3f}) {verdict}"
            )
    for scenario in ("Publish->app stream redis", "Publish->app stream redis, bulk publish"):  # the target
        best = max(
            (r.result["throughput"] for r in rows if r.scenario == scenario and "OnBulkTopicEvent" in r.variant),
            default=None,
        )
        if best is not None:
            verdict = "met" if best >= 5000 else "NOT met"
            lines.append(f"- {scenario}, bulk delivery: {best:.0f} events/s (target >= 5,000) {verdict}")
    for conc in (64, 16, 1):
        ours = _pick(rows, "GetState redis", "layotto", conc)
        if ours and "cpu_s_per_1k" in ours:
            value = ours["cpu_s_per_1k"]
            verdict = "met" if value <= 0.30 else "NOT met"
            lines.append(f"- CPU per 1,000 GetState on redis, c={conc}: {value:.3f} s (target <= 0.30) {verdict}")
            break
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--concurrency", default="1,16,64")
    parser.add_argument("--value-size", type=int, default=100)
    parser.add_argument("--only", default="", help="comma-separated scenario name substrings")
    parser.add_argument(
        "--soak", type=float, default=0.0, help="seconds of GetState-on-redis load before reading the sidecar's RSS"
    )
    parser.add_argument("--json", default="", help="write raw results here")
    parser.add_argument("--report", default="", help="print the table and targets of a --json file, run nothing")
    args = parser.parse_args()
    if args.report:
        saved = [Row(**row) for row in json.loads(Path(args.report).read_text())]
        print(fmt_table(saved))
        print("\ntargets:\n" + "\n".join(targets_report(saved)))
        return

    run_id = uuid.uuid4().hex[:8]
    value = b"v" * args.value_size
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    workdir = Path(tempfile.mkdtemp(prefix="layotto-bench-"))
    sidecar = start_sidecar(sidecar_config(), workdir)
    bare = start_bare(args.value_size)
    targets = {"layotto": sidecar, "bare": bare}
    done: list[Row] = []
    try:
        prime(sidecar, value, run_id)
        rows = build_rows(sidecar, bare, value, run_id)
        if args.only:
            wanted = [w.strip().lower() for w in args.only.split(",")]
            rows = [r for r in rows if any(w in r.scenario.lower() for w in wanted)]
        for conc in concurrencies:
            for row in rows:
                load = {**row.load, "concurrency": conc, "warmup": args.warmup, "duration": args.duration}
                result = measure(targets.get(row.target), load)
                done.append(Row(row.scenario, row.variant, row.target, load, result))
                print(
                    f"{row.scenario:24} {row.variant:34} c={conc:<3} {result['throughput']:8.0f} req/s "
                    f"p50 {result['p50_ms']:.3f} ms  p99 {result['p99_ms']:.3f} ms  "
                    f"cpu/1k {result.get('cpu_s_per_1k', float('nan')):.3f}",
                    flush=True,
                )
        soak_rss = None
        if args.soak > 0 and available("state", "redis"):
            key = f"bench-{run_id}"
            load = grpc_load(
                sidecar,
                [("GetState", pb.GetStateRequest(store_name="redis", key=key))],
                concurrency=64,
                warmup=0.0,
                duration=args.soak,
            )
            run_load(load)
            assert sidecar.proc is not None
            soak_rss = (_rss_mb(sidecar.proc.pid), _peak_rss_mb(sidecar.proc.pid))
    finally:
        for target in targets.values():
            if target.proc:
                target.proc.terminate()
                target.proc.wait(10)
    done.sort(key=lambda r: (r.scenario, r.result["concurrency"], r.target not in ("layotto", "pubsub")))
    print()
    print(
        f"machine: {platform.processor() or platform.machine()}, {psutil.cpu_count()} cores, "
        f"{psutil.virtual_memory().total / 2**30:.0f} GiB, Python {platform.python_version()}"
    )
    print(fmt_table(done))
    if soak_rss:
        print(
            f"\nsidecar RSS after {args.soak:.0f} s of GetState on redis at concurrency 64: "
            f"{soak_rss[0]:.1f} MB (peak {soak_rss[1]:.1f} MB)"
        )
    report = targets_report(done)
    if soak_rss:
        verdict = "met" if soak_rss[0] <= 60 else "NOT met"
        report.append(f"- sidecar RSS after the soak: {soak_rss[0]:.1f} MB (target <= 60) {verdict}")
    if report:
        print("\ntargets:")
        print("\n".join(report))
    if args.json:
        Path(args.json).write_text(json.dumps([r.__dict__ for r in done], indent=1, default=str))


if __name__ == "__main__":
    main()
