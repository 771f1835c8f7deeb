"""Service invocation through two sidecars, beside the direct call and a bare two-hop floor:
`python -m bench.invoke [--duration S] [--rate N] [--size BYTES] [--json PATH]` (docs/benchmarks.md).

Every part is its own process on loopback: app B (bench/echo_app.py), sidecar B (app-b, its app
channel to app B), sidecar A (app-a, a `static` name resolution table naming sidecar B), two bare
grpc.aio forwarders (bench/forwarder.py) and the load generator (bench/loadgen.py). Three paths
carry the same payload to app B and back:

- direct: client -> app B `AppCallback/OnInvoke`;
- sidecars: client -> sidecar A `InvokeService(id="app-b", method="echo")` -> sidecar B -> app B;
- bare: client -> forwarder 1 -> forwarder 2 -> app B `/bench.Echo/Echo`, bytes passed through.

Phases: latency at c=1 (closed loop), CPU of each hop at a fixed rate (open loop), throughput at
c=16 (closed loop), an overload check (c=64, a short per-call deadline: the status codes the
client sees), and the RSS of each process before the load and at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import psutil
from google.protobuf import any_pb2

from bench.run import ROOT, RUNTIME, Target, _peak_rss_mb, _rss_mb, _wait_ready, run_load, start_sidecar
from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from tests.support.sidecar import free_port

ON_INVOKE = "/spec.proto.runtime.v1.AppCallback/OnInvoke"
ECHO = "/bench.Echo/Echo"
PATHS = {
    "direct": "direct: client -> app B OnInvoke",
    "sidecars": "sidecars: client -> sidecar A -> sidecar B -> app B",
    "bare": "bare: client -> forwarder 1 -> forwarder 2 -> app B",
}
# The targets: Dapr's published figures (added latency end to end, vCPU per sidecar at
# 1,000 calls/s), and the bare floor's throughput.
TARGET_ADDED_MS = {"p90": 1.40, "p99": 2.10}
TARGET_VCPU = 0.48
TARGET_RATIO = 0.9
DAPR_RSS_MB = 23


def start_process(name: str, module: str, *args: str) -> Target:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", module, "--port", str(port), *args], cwd=ROOT)
    return Target(name, proc, f"127.0.0.1:{port}")


def requests(size: int) -> dict[str, tuple[str, bytes]]:
    """(method path, request bytes) per path; the bare path carries the sidecar request's bytes so
    both hops move the same number of bytes."""
    data = any_pb2.Any(value=b"x" * size)
    sidecar = pb.InvokeServiceRequest(id="app-b", message=pb.CommonInvokeRequest(method="echo", data=data))
    return {
        "direct": (ON_INVOKE, cb.AppInvokeRequest(method="echo", data=data).SerializeToString()),
        "sidecars": (RUNTIME + "InvokeService", sidecar.SerializeToString()),
        "bare": (ECHO, sidecar.SerializeToString()),
    }


def check_echo(targets: dict[str, Target], reqs: dict[str, tuple[str, bytes]], size: int) -> None:
    """One call per path, so a broken path fails here instead of as a column of errors."""
    for path, (method, body) in reqs.items():
        with grpc.insecure_channel(targets[path].address) as channel:
            reply = channel.unary_unary(method, None, None)(body, timeout=10)
        if path == "bare":
            assert reply == body, "the bare path changed the bytes"
        else:
            decoded = (
                cb.AppInvokeResponse.FromString(reply) if path == "direct" else pb.InvokeResponse.FromString(reply)
            )
            assert decoded.data.value == b"x" * size, f"{path}: app B did not echo the payload"


def rss(procs: dict[str, Target]) -> dict[str, dict[str, float]]:
    out = {}
    for name, target in procs.items():
        assert target.proc is not None
        out[name] = {"rss_mb": _rss_mb(target.proc.pid), "peak_mb": _peak_rss_mb(target.proc.pid)}
    return out


def _pid(target: Target) -> int:
    assert target.proc is not None
    return target.proc.pid


@contextmanager
def processes(workdir: Path) -> Iterator[dict[str, Target]]:
    """App B, both sidecars and both forwarders, each serving; stopped on the way out."""
    started: list[Target] = []
    try:
        app = start_process("app B", "bench.echo_app")
        started.append(app)
        fwd2 = start_process("forwarder 2", "bench.forwarder", "--next", app.address)
        started.append(fwd2)
        fwd1 = start_process("forwarder 1", "bench.forwarder", "--next", fwd2.address)
        started.append(fwd1)
        (workdir / "b").mkdir()
        (workdir / "a").mkdir()
        # Sidecar A's table needs B's address, so B first; the apps start meanwhile.
        sidecar_b = start_sidecar(
            {"app": {"app_id": "app-b", "grpc_callback_port": int(app.address.split(":")[1])}}, workdir / "b"
        )
        started.append(sidecar_b)
        table = {"table": {"type": "static", "metadata": {"apps": {"app-b": sidecar_b.address}}}}
        sidecar_a = start_sidecar({"app": {"app_id": "app-a"}, "name_resolution": table}, workdir / "a")
        started.append(sidecar_a)
        for target in (app, fwd2, fwd1):
            assert target.proc is not None
            _wait_ready(target.address, target.proc)
        yield {"app B": app, "sidecar A": sidecar_a, "sidecar B": sidecar_b, "forwarder 1": fwd1, "forwarder 2": fwd2}
    finally:
        for target in reversed(started):
            if target.proc is not None and target.proc.poll() is None:
                target.proc.terminate()
        for target in started:
            if target.proc is not None:
                try:
                    target.proc.wait(10)
                except subprocess.TimeoutExpired:
                    target.proc.kill()
                    target.proc.wait()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    reqs = requests(args.size)
    out: dict[str, Any] = {
        "settings": {k: v for k, v in vars(args).items() if k not in ("json", "report")},
        "machine": {
            "cpu": _cpu_model(),
            "cores": psutil.cpu_count(),
            "python": platform.python_version(),
            "grpcio": grpc.__version__,
            "loadavg_start": os.getloadavg(),
        },
    }
    with processes(workdir) as procs:
        entry = {"direct": procs["app B"], "sidecars": procs["sidecar A"], "bare": procs["forwarder 1"]}
        hops = {
            "direct": ["app B"],
            "sidecars": ["sidecar A", "sidecar B", "app B"],
            "bare": ["forwarder 1", "forwarder 2", "app B"],
        }
        sidecars_and_forwarders = {n: procs[n] for n in ("sidecar A", "sidecar B", "forwarder 1", "forwarder 2")}
        out["rss_idle"] = rss({**sidecars_and_forwarders, "app B": procs["app B"]})
        check_echo(entry, reqs, args.size)

        def load(path: str, **spec: Any) -> dict[str, Any]:
            method, body = reqs[path]
            full = {
                "kind": "grpc",
                "target": entry[path].address,
                "steps": [(method, body.hex())],
                "warmup": args.warmup,
                "duration": args.duration,
                "watch": {name: _pid(procs[name]) for name in hops[path]},
                **spec,
            }
            result = run_load(full)
            print(
                f"{path:9} {json.dumps({k: v for k, v in spec.items() if k != 'watch'}):46} "
                f"{result['throughput']:7.0f}/s p50 {result['p50_ms']:.3f} p90 {result['p90_ms']:.3f} "
                f"p99 {result['p99_ms']:.3f} ms codes {result['codes']}",
                file=sys.stderr,
                flush=True,
            )
            return result

        out["latency_c1"] = {path: load(path, concurrency=1) for path in PATHS}
        out["fixed_rate"] = {path: load(path, rate=args.rate) for path in ("sidecars", "bare")}
        out["throughput"] = {path: load(path, concurrency=args.concurrency) for path in ("sidecars", "bare")}
        out["overload"] = load(
            "sidecars",
            concurrency=args.overload_concurrency,
            timeout=args.overload_deadline_ms / 1000,
            warmup=0.0,
            duration=args.overload_duration,
        )
        out["rss_end"] = rss({**sidecars_and_forwarders, "app B": procs["app B"]})
    out["machine"]["loadavg_end"] = os.getloadavg()
    return out


def kept_up(result: dict[str, Any], rate: float) -> bool:
    return bool(result["throughput"] >= 0.95 * rate)


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def targets(res: dict[str, Any]) -> list[str]:
    lat = res["latency_c1"]
    lines = []
    for q, bound in TARGET_ADDED_MS.items():
        added = lat["sidecars"][f"{q}_ms"] - lat["direct"][f"{q}_ms"]
        floor = lat["bare"][f"{q}_ms"] - lat["direct"][f"{q}_ms"]
        lines.append(
            f"- added {q} at c=1 through two sidecars: {added:.3f} ms (target <= {bound:.2f}) "
            f"{_verdict(added <= bound)}; bare floor {floor:.3f} ms"
        )
    rate = res["settings"]["rate"]
    fixed = res["fixed_rate"]["sidecars"]
    note = "" if kept_up(fixed, rate) else f" (only {fixed['throughput']:.0f} calls/s answered: at saturation)"
    for name in ("sidecar A", "sidecar B"):
        vcpu = fixed["cpu"][name]["vcpu"]
        lines.append(
            f"- {name} at {rate:,.0f} calls/s: {vcpu:.3f} vCPU (target <= {TARGET_VCPU}) "
            f"{_verdict(vcpu <= TARGET_VCPU)}{note}"
        )
    tp = res["throughput"]
    ratio = tp["sidecars"]["throughput"] / tp["bare"]["throughput"] if tp["bare"]["throughput"] else 0.0
    conc = res["settings"]["concurrency"]
    lines.append(
        f"- throughput at c={conc}: {ratio:.2f} of the bare forwarders (target >= {TARGET_RATIO}) "
        f"{_verdict(ratio >= TARGET_RATIO)}"
    )
    # A backlog at the fixed rate is overload too (the CANCELLED came from an open loop).
    over = res["overload"]["codes"].get("CANCELLED", 0)
    backlog = fixed["codes"].get("CANCELLED", 0)
    bare = res["fixed_rate"]["bare"]["codes"].get("CANCELLED", 0)
    lines.append(
        f"- CANCELLED seen by the client on the sidecar path: {over} in the overload check, {backlog} at the fixed "
        f"rate (target 0: RESOURCE_EXHAUSTED/DEADLINE_EXCEEDED only) {_verdict(over + backlog == 0)}; "
        f"bare path at the fixed rate: {bare}"
    )
    for name in ("sidecar A", "sidecar B"):
        lines.append(
            f"- {name} RSS: {res['rss_idle'][name]['rss_mb']:.1f} MB idle, {res['rss_end'][name]['rss_mb']:.1f} MB "
            f"at the end (Dapr publishes {DAPR_RSS_MB} MB; not a target here)"
        )
    return lines


def _codes(codes: dict[str, int]) -> str:
    return ", ".join(f"{code} {n}" for code, n in sorted(codes.items(), key=lambda kv: -kv[1]))


def report(res: dict[str, Any]) -> str:
    s, m = res["settings"], res["machine"]
    lat, fixed, tp, over = res["latency_c1"], res["fixed_rate"], res["throughput"], res["overload"]
    out = [
        f"## Service invocation, {s['size']}-byte payload",
        "",
        f"machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}, grpcio {m['grpcio']}; "
        f"load average {m['loadavg_start'][0]:.2f} at the start, {m['loadavg_end'][0]:.2f} at the end. "
        f"{s['duration']:g} s measured per run after {s['warmup']:g} s of warmup.",
        "",
        "### Latency, c=1 (closed loop)",
        "",
        "| path | calls/s | p50 ms | p90 ms | p99 ms | max ms | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for path, label in PATHS.items():
        r = lat[path]
        out.append(
            f"| {label} | {r['throughput']:.0f} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} "
            f"| {r['max_ms']:.2f} | {r['errors']} |"
        )
    out += ["", "| added over direct | p50 ms | p90 ms | p99 ms |", "|---|---:|---:|---:|"]
    for path in ("sidecars", "bare"):
        added = [lat[path][f"{q}_ms"] - lat["direct"][f"{q}_ms"] for q in ("p50", "p90", "p99")]
        out.append(f"| {PATHS[path]} | " + " | ".join(f"{a:.3f}" for a in added) + " |")
    out += [
        "",
        f"### Fixed rate, {s['rate']:,.0f} calls/s (open loop; latency from when each call was due)",
        "",
        "| path | answered calls/s | max in flight | p50 ms | p90 ms | p99 ms | status codes (all calls) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for path in ("sidecars", "bare"):
        r = fixed[path]
        out.append(
            f"| {PATHS[path]} | {r['throughput']:.0f} | {r['concurrency']} | {r['p50_ms']:.3f} "
            f"| {r['p90_ms']:.3f} | {r['p99_ms']:.3f} | {_codes(r['codes'])} |"
        )
    out += [
        "",
        "| process | path | CPU s | wall s | vCPU | CPU ms per answered call |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for path in ("sidecars", "bare"):
        r = fixed[path]
        for name, c in r["cpu"].items():
            per_call = c["cpu_s"] / max(1, r["completed_in_window"]) * 1000
            out.append(f"| {name} | {path} | {c['cpu_s']:.2f} | {c['wall_s']:.2f} | {c['vcpu']:.3f} | {per_call:.3f} |")
    for path in ("sidecars", "bare"):
        if not kept_up(fixed[path], s["rate"]):
            out += [
                "",
                f"The {path} path answered {fixed[path]['throughput']:.0f} of {s['rate']:,.0f} calls/s: this machine "
                "could not keep up, so its vCPU figures are at saturation, not at the offered rate.",
            ]
    out += [
        "",
        f"### Throughput, c={s['concurrency']} (closed loop)",
        "",
        "| path | calls/s | p50 ms | p90 ms | p99 ms | errors | CPU ms per call (each hop) |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for path in ("sidecars", "bare"):
        r = tp[path]
        hops = ", ".join(
            f"{name} {c['cpu_s'] / max(1.0, r['throughput'] * c['wall_s']) * 1000:.3f}" for name, c in r["cpu"].items()
        )
        out.append(
            f"| {PATHS[path]} | {r['throughput']:.0f} | {r['p50_ms']:.3f} | {r['p90_ms']:.3f} | {r['p99_ms']:.3f} "
            f"| {r['errors']} | {hops} |"
        )
    ratio = tp["sidecars"]["throughput"] / tp["bare"]["throughput"] if tp["bare"]["throughput"] else 0.0
    out += [
        "",
        f"sidecars / bare: {ratio:.2f}",
        "",
        "### Memory",
        "",
        "| process | idle RSS MB (before load) | RSS MB at the end | peak RSS MB (VmHWM) |",
        "|---|---:|---:|---:|",
    ]
    for name, idle in res["rss_idle"].items():
        end = res["rss_end"][name]
        out.append(f"| {name} | {idle['rss_mb']:.1f} | {end['rss_mb']:.1f} | {end['peak_mb']:.1f} |")
    out += [
        "",
        f"### Overload: sidecar path, c={s['overload_concurrency']}, {s['overload_deadline_ms']:g} ms deadline "
        f"per call, {s['overload_duration']:g} s",
        "",
        "| status code | calls | first message |",
        "|---|---:|---|",
    ]
    for code, n in sorted(over["codes"].items(), key=lambda kv: -kv[1]):
        detail = over["error_details"].get(code, "").replace("|", "\\|")
        out.append(f"| {code} | {n} | {detail} |")
    out += ["", "### Targets", "", *targets(res), ""]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each run's window")
    parser.add_argument("--rate", type=float, default=1000.0, help="calls/s of the fixed-rate (CPU) phase")
    parser.add_argument("--size", type=int, default=1024, help="payload bytes")
    parser.add_argument("--concurrency", type=int, default=16, help="closed-loop workers of the throughput phase")
    parser.add_argument("--overload-concurrency", type=int, default=64)
    parser.add_argument("--overload-deadline-ms", type=float, default=50.0)
    parser.add_argument("--overload-duration", type=float, default=3.0)
    parser.add_argument("--json", default="", help="write the raw results here")
    parser.add_argument("--report", default="", help="print the report of a --json file, run nothing")
    args = parser.parse_args()
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return
    workdir = Path(tempfile.mkdtemp(prefix="layotto-bench-invoke-"))
    try:
        res = run(args, workdir)
    except BaseException:
        print(f"sidecar logs kept in {workdir}", file=sys.stderr)
        raise
    shutil.rmtree(workdir, ignore_errors=True)
    print(report(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
