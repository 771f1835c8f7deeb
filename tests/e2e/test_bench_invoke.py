"""The invocation benchmark (bench/invoke.py) end to end, about a second per phase: every process
starts, every path echoes, the fixed-rate phase sends its schedule without a failed call, and the
report has each of its rows. The figures themselves are not judged here (a shared machine)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from bench.invoke import PATHS

ROOT = Path(__file__).resolve().parents[2]
RATE, WARMUP, DURATION = 1000, 0.2, 1.0
PROCESSES = ("sidecar A", "sidecar B", "forwarder 1", "forwarder 2", "app B")


def test_invoke_bench_reports_every_row_without_errors(tmp_path: Path) -> None:
    out = tmp_path / "invoke.json"
    argv = [sys.executable, "-m", "bench.invoke", "--duration", str(DURATION), "--warmup", str(WARMUP)]
    argv += ["--rate", str(RATE), "--overload-duration", "1", "--json", str(out)]
    # Its own process group: a run that hangs is stopped with every process it started.
    proc = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        report, stderr = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    res = json.loads(out.read_text())

    for phase in ("latency_c1", "throughput"):
        for path, result in res[phase].items():
            assert result["errors"] == 0 and result["requests"] > 0, (phase, path, result["codes"])
    for path in ("sidecars", "bare"):
        fixed = res["fixed_rate"][path]
        # The schedule is fixed: exactly rate x (warmup + window) calls, every one answered OK.
        assert fixed["total_calls"] == round(RATE * (WARMUP + DURATION)), fixed
        assert abs(fixed["scheduled_in_window"] - RATE * DURATION) <= 1, fixed
        assert fixed["codes"] == {"OK": fixed["total_calls"]}, (path, fixed["codes"], fixed["error_details"])
        for name, cpu in fixed["cpu"].items():
            assert cpu["cpu_s"] > 0 and abs(cpu["wall_s"] - DURATION) < 0.5, (path, name, cpu)
    assert set(res["fixed_rate"]["sidecars"]["cpu"]) == {"sidecar A", "sidecar B", "app B"}
    assert set(res["fixed_rate"]["bare"]["cpu"]) == {"forwarder 1", "forwarder 2", "app B"}
    overload = res["overload"]
    assert sum(overload["codes"].values()) == overload["total_calls"] > 0, overload
    for name in PROCESSES:
        assert 0 < res["rss_idle"][name]["rss_mb"] <= res["rss_end"][name]["peak_mb"], name

    lines = report.splitlines()

    def rows_of(section: str) -> list[str]:
        start = next(i for i, line in enumerate(lines) if line.startswith(f"### {section}"))
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("### ")), len(lines))
        return [line for line in lines[start:end] if line.startswith("| ") and not line.startswith("|---")]

    latency = rows_of("Latency, c=1")
    for label in PATHS.values():
        assert any(row.startswith(f"| {label} |") for row in latency), label
    assert sum(row.startswith("| added over direct") for row in latency) == 1
    assert sum(row.startswith(f"| {PATHS[p]} |") for row in latency for p in ("sidecars", "bare")) == 4
    fixed_rows = rows_of(f"Fixed rate, {RATE:,} calls/s")
    for name in PROCESSES:
        assert any(row.startswith(f"| {name} |") for row in fixed_rows), name
    assert len(rows_of("Throughput, c=16")) == 3
    assert "sidecars / bare:" in report
    assert {row.split(" | ")[0][2:] for row in rows_of("Memory")[1:]} == set(PROCESSES)
    assert len(rows_of("Overload")) == 1 + len(overload["codes"])
    targets = [line for line in lines[lines.index("### Targets") :] if line.startswith("- ")]
    assert len([t for t in targets if " met" in t]) == 6, targets
    for needle in ("added p90", "added p99", "sidecar A at", "sidecar B at", "throughput at c=16", "CANCELLED seen"):
        assert any(needle in t for t in targets), needle
