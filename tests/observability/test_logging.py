"""The sidecar's logs: `--log-level` with a level per logger, text and JSON lines (with the
call's component and trace id), quiet third-party loggers, the access log of gRPC calls and
Dapr HTTP requests, the start banner, and `/actuator/logger` changing a level while a real
sidecar process runs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from layotto import __version__
from layotto.config import layotto_json
from layotto.observability import logging as obs_logging
from layotto.observability.logging import COMPONENT, Levels, configure, logger_name, parse_levels, set_level
from layotto.observability.tracing.span import CURRENT, start_span
from layotto.sidecar import Sidecar
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import free_port, layotto_config, wait_for_sidecar

# ---- --log-level ----


@pytest.mark.parametrize(
    ("text", "root", "loggers"),
    [
        ("info", logging.INFO, {}),
        (" DEBUG ", logging.DEBUG, {}),
        ("warn", logging.WARNING, {}),
        ("trace", logging.DEBUG, {}),  # upstream's name; Python has none below DEBUG
        ("info,layotto.pubsub=debug", logging.INFO, {"layotto.pubsub": logging.DEBUG}),
        ("layotto.pubsub=debug", logging.INFO, {"layotto.pubsub": logging.DEBUG}),
        ("error, grpc=info ,aiosqlite=debug", logging.ERROR, {"grpc": logging.INFO, "aiosqlite": logging.DEBUG}),
        ("root=debug,layotto=warning", logging.DEBUG, {"layotto": logging.WARNING}),
    ],
)
def test_a_default_level_and_a_level_per_logger(text: str, root: int, loggers: dict[str, int]) -> None:
    assert parse_levels(text) == Levels(root, loggers)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("loud", "invalid choice: 'loud' (choose from critical, "),
        ("info,layotto.pubsub=loud", "'layotto.pubsub=loud': invalid choice: 'loud' (choose from"),
        ("info,debug", "'debug': give one default level; name the logger of the others"),
        ("=debug", "'=debug': '' is not a logger name"),
        ("info,lay otto=debug", "'lay otto=debug': 'lay otto' is not a logger name"),
        ("grpc=info,grpc=debug", "'grpc=debug': the level of grpc is given twice"),
        ("", "invalid choice: ''"),
    ],
)
def test_a_bad_level_names_the_part_that_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_levels(text)
    assert str(caught.value).startswith(message), caught.value


def test_a_bad_level_flag_is_one_line_and_exit_code_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "layotto.cli", "start", "--log-level", "info,layotto.pubsub=loud"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "layotto start: error: argument --log-level: 'layotto.pubsub=loud': invalid choice: 'loud'"
        " (choose from critical, fatal, error, warn, warning, info, debug, notset, trace)"
    )


# ---- configure: formats, levels, quiet libraries ----


@pytest.fixture
def logs() -> Iterator[Callable[..., io.StringIO]]:
    """configure() onto a StringIO; the root logger's handlers and every level are restored after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved = {
        name: logger.level
        for name, logger in logging.root.manager.loggerDict.items()
        if isinstance(logger, logging.Logger)
    }

    def start(levels: str = "info", fmt: str = "text", **kwargs: Any) -> io.StringIO:
        stream = io.StringIO()
        configure(parse_levels(levels), fmt, stream=stream, **kwargs)
        return stream

    yield start
    for handler in list(root.handlers):
        if handler not in saved_handlers:
            root.removeHandler(handler)
    root.setLevel(saved_level)
    for name, logger in logging.root.manager.loggerDict.items():
        if isinstance(logger, logging.Logger):
            logger.setLevel(saved.get(name, logging.NOTSET))


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line of a JSON log, each parsed on its own."""
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_text_lines_as_before(logs: Callable[..., io.StringIO]) -> None:
    stream = logs("info")
    logging.getLogger("layotto.test").info("hello %s", "there")
    logging.getLogger("layotto.test").debug("not shown")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO layotto\.test: hello there\n", stream.getvalue())


def test_json_is_one_object_per_line_with_time_level_logger_message(logs: Callable[..., io.StringIO]) -> None:
    stream = logs("info", "json")
    before = time.time()
    logging.getLogger("layotto.test").warning("two\nlines %d", 2, extra={"store": "s1"})
    (line,) = _lines(stream)
    assert stream.getvalue().count("\n") == 1
    assert line["level"] == "warning" and line["logger"] == "layotto.test" and line["message"] == "two\nlines 2"
    assert line["store"] == "s1"  # extra= fields are fields
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])
    stamp = time.mktime(time.strptime(line["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(stamp - before) < 2  # UTC
    assert "component" not in line and "trace_id" not in line and "exc_info" not in line


def test_json_carries_the_component_and_trace_of_the_call(logs: Callable[..., io.StringIO]) -> None:
    stream = logs("info", "json")
    traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    async def call() -> None:
        # As the telemetry interceptor does in the call's own task.
        COMPONENT.set("redis_store")
        CURRENT.set(start_span("/spec.proto.runtime.v1.Runtime/GetState", (("traceparent", traceparent),), 0))
        logging.getLogger("layotto.state.redis").warning("backend slow")

    asyncio.run(call())
    logging.getLogger("layotto.state.redis").warning("outside any call")
    inside, outside = _lines(stream)
    assert inside["component"] == "redis_store"
    assert inside["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert len(inside["span_id"]) == 16 and inside["span_id"] != "b7ad6b7169203331"
    assert "component" not in outside and "trace_id" not in outside


def test_json_gives_the_exception_as_text(logs: Callable[..., io.StringIO]) -> None:
    stream = logs("info", "json")
    try:
        raise KeyError("missing")
    except KeyError:
        logging.getLogger("layotto.test").exception("failed")
    (line,) = _lines(stream)
    assert line["message"] == "failed"
    assert line["exc_info"].startswith("Traceback (most recent call last):")
    assert line["exc_info"].rstrip().endswith("KeyError: 'missing'")


def test_third_party_loggers_stay_quiet_unless_named(logs: Callable[..., io.StringIO]) -> None:
    stream = logs("debug", "json")
    for name in ("aiosqlite", "asyncio", "grpc._cython.cygrpc", "urllib3.connectionpool", "aio_pika", "nats"):
        logging.getLogger(name).debug("noise")
        logging.getLogger(name).info("noise")
    logging.getLogger("layotto.state.sqlite").debug("ours")
    logging.getLogger("aiosqlite").warning("a real problem")
    assert [(line["logger"], line["message"]) for line in _lines(stream)] == [
        ("layotto.state.sqlite", "ours"),
        ("aiosqlite", "a real problem"),
    ]

    stream = logs("debug,aiosqlite=debug")
    logging.getLogger("aiosqlite").debug("executing SELECT 1")
    logging.getLogger("asyncio").debug("still quiet")
    assert "executing SELECT 1" in stream.getvalue() and "still quiet" not in stream.getvalue()


def test_levels_per_logger_and_configuring_again_undoes_them(logs: Callable[..., io.StringIO]) -> None:
    stream = logs("warning,layotto.pubsub=debug")
    logging.getLogger("layotto.pubsub.redis").debug("shown: a child of layotto.pubsub")
    logging.getLogger("layotto.state").info("hidden: the default is warning")
    # Third-party loggers follow a default above WARNING.
    stream = logs("error")
    logging.getLogger("layotto.pubsub.redis").debug("hidden now")
    logging.getLogger("grpc").warning("hidden below error")
    assert stream.getvalue() == ""
    assert logging.getLogger("layotto.pubsub").level == logging.NOTSET


def test_the_access_log_is_on_at_info_whatever_the_default(logs: Callable[..., io.StringIO]) -> None:
    stream = logs("error", access_log=True)
    logging.getLogger("layotto.access").info("grpc /x OK")
    assert "grpc /x OK" in stream.getvalue()
    stream = logs("error,layotto.access=warning", access_log=True)
    logging.getLogger("layotto.access").info("named: its level wins")
    assert stream.getvalue() == ""


@pytest.mark.parametrize(
    ("component", "logger"),
    [
        ("layotto.pubsub", "layotto.pubsub"),
        ("wasm", "layotto.wasm"),  # upstream's component names are under layotto
        ("layotto", "layotto"),
        ("grpc", "grpc"),
        ("aiosqlite", "aiosqlite"),
        ("", ""),
        ("root", ""),
    ],
)
def test_the_logger_a_component_name_means(component: str, logger: str) -> None:
    assert logger_name(component) == logger


def test_set_level_refuses_what_is_not_a_level_or_a_name(logs: Callable[..., io.StringIO]) -> None:
    logs("info")
    with pytest.raises(ValueError, match="invalid choice: 'loud'"):
        set_level("layotto.x", "loud")
    with pytest.raises(ValueError, match="is not a logger name"):
        set_level("a b", "debug")
    assert set_level("layotto.x", "DEBUG") == ("layotto.x", "DEBUG")
    assert logging.getLogger("layotto.x").level == logging.DEBUG
    assert obs_logging.configured_levels()["layotto.x"] == "DEBUG"


# ---- the access log and the banner, on a sidecar in this process ----


class _Records(logging.Handler):
    """Keeps the records, stamped as the sidecar's own handler stamps them."""

    def __init__(self) -> None:
        super().__init__()
        self.addFilter(obs_logging.ContextFilter())
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[_Records]:
    """Records of layotto.access and layotto.server, at INFO, with the JSON text of each."""
    handler = _Records()
    loggers = [logging.getLogger("layotto.access"), logging.getLogger("layotto.server")]
    saved = [(lg, lg.level) for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    yield handler
    for lg, level in saved:
        lg.removeHandler(handler)
        lg.setLevel(level)


def _http(url: str, method: str = "GET", body: bytes | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


async def test_access_log_of_grpc_calls_and_http_requests_and_the_banner(records: _Records) -> None:
    grpc_port, http_port, actuator_port = free_port(), free_port(), free_port()
    doc = layotto_config(
        {"app": {"app_id": "access"}, "state": {"mem": {"type": "in-memory"}}},
        grpc_port=grpc_port,
        actuator_port=actuator_port,
        tracing={"enable": True, "driver": "SOFATracer", "config": {"exporter": []}},
    )
    cfg = layotto_json.load_document(doc, source="access.json")
    cfg.dapr_http_address = f"127.0.0.1:{http_port}"
    cfg.access_log = True
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            await stub.GetState(pb.GetStateRequest(store_name="mem", key="k"), metadata=(("traceparent", traceparent),))
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetState(pb.GetStateRequest(store_name="nope", key="k"))
        status, _ = await asyncio.to_thread(_http, f"http://127.0.0.1:{http_port}/v1.0/state/mem/k")
        assert status == 204
        status, _ = await asyncio.to_thread(_http, f"http://127.0.0.1:{http_port}/v1.0/state/nope/k")
        assert status == 400
    finally:
        await sidecar.stop()

    banner = next(r for r in records.records if r.name == "layotto.server" and "started" in r.getMessage())
    text = banner.getMessage()
    assert text.startswith(f"layotto {__version__} started (app id 'access'); config: access.json\n")
    assert f"gRPC API (the Dapr gRPC API shares this port): 127.0.0.1:{grpc_port}" in text
    assert f"Dapr HTTP API: 127.0.0.1:{http_port}" in text
    assert re.search(rf"\n  actuator \(health, info, logger, /metrics[^)]*\): 127\.0\.0\.1:{actuator_port}\n", text)
    assert text.endswith("components: state/mem (in-memory)")
    extra = vars(banner)
    assert extra["version"] == __version__ and extra["config"] == "access.json"
    assert extra["components"] == [{"block": "state", "name": "mem", "type": "in-memory"}]
    assert {"name": "Dapr HTTP API", "addresses": [f"127.0.0.1:{http_port}"]} in extra["listeners"]

    access = [r for r in records.records if r.name == "layotto.access"]
    json_lines = [json.loads(obs_logging.JsonFormatter().format(r)) for r in access]
    grpc_ok, grpc_bad, http_ok, http_bad = json_lines
    method = "/spec.proto.runtime.v1.Runtime/GetState"
    assert access[0].getMessage().startswith(f"grpc {method} OK ")
    assert (grpc_ok["protocol"], grpc_ok["method"], grpc_ok["code"]) == ("grpc", method, "OK")
    assert grpc_ok["peer"].startswith("ipv4:127.0.0.1:") and grpc_ok["duration_ms"] >= 0
    # The call's component and its trace, from the interceptors' context.
    assert grpc_ok["component"] == "mem" and grpc_ok["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert grpc_bad["code"] == "INVALID_ARGUMENT" and "component" not in grpc_bad  # not a configured one
    assert (http_ok["method"], http_ok["path"], http_ok["status"]) == ("GET", "/v1.0/state/mem/k", 204)
    assert http_ok["component"] == "mem" and http_ok["peer"].startswith("127.0.0.1:")
    assert access[2].getMessage().startswith("http GET /v1.0/state/mem/k 204 ")
    assert http_bad["status"] == 400 and "component" not in http_bad


async def test_the_access_log_sees_the_calls_the_token_refuses(records: _Records) -> None:
    grpc_port = free_port()
    doc = layotto_config({"state": {"mem": {"type": "in-memory"}}}, grpc_port=grpc_port)
    cfg = layotto_json.load_document(doc, source="<test>")
    cfg.api_token, cfg.access_log = "s3cret", True
    sidecar = Sidecar(cfg)
    await sidecar.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            stub = runtime_pb2_grpc.RuntimeStub(channel)
            with pytest.raises(grpc.aio.AioRpcError):
                await stub.GetState(pb.GetStateRequest(store_name="mem", key="k"))
            await stub.GetState(pb.GetStateRequest(store_name="mem", key="k"), metadata=(("dapr-api-token", "s3cret"),))
    finally:
        await sidecar.stop()
    codes = [vars(r)["code"] for r in records.records if r.name == "layotto.access"]
    assert codes == ["UNAUTHENTICATED", "OK"]


async def test_no_access_log_without_the_option(records: _Records) -> None:
    grpc_port = free_port()
    doc = layotto_config({"state": {"mem": {"type": "in-memory"}}}, grpc_port=grpc_port, actuator_port=free_port())
    sidecar = Sidecar(layotto_json.load_document(doc, source="<test>"))
    await sidecar.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
            await runtime_pb2_grpc.RuntimeStub(channel).GetState(pb.GetStateRequest(store_name="mem", key="k"))
    finally:
        await sidecar.stop()
    assert [r for r in records.records if r.name == "layotto.access"] == []


# ---- /actuator/logger on a sidecar process ----


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not {what} after {timeout}s"
        time.sleep(0.05)


def test_actuator_logger_changes_a_level_while_the_sidecar_runs(tmp_path: Path) -> None:
    grpc_port, actuator_port = free_port(), free_port()
    config = tmp_path / "config.json"
    doc = layotto_config({"state": {"mem": {"type": "in-memory"}}}, grpc_port=grpc_port, actuator_port=actuator_port)
    config.write_text(json.dumps(doc))
    log_path = tmp_path / "sidecar.log"
    argv = [sys.executable, "-m", "layotto.cli", "start", "-c", str(config), "--log-format", "json"]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
    base = f"http://127.0.0.1:{actuator_port}/actuator"

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in log_path.read_text().splitlines()]

    def probes_logged() -> list[dict[str, Any]]:
        return [
            line
            for line in lines()
            if line["logger"] == "layotto.actuator" and line["message"] == "GET /actuator/health/readiness 200"
        ]

    try:
        wait_for_sidecar(proc, f"127.0.0.1:{grpc_port}", log_path)
        _wait_for(lambda: any("started" in line["message"] for line in lines()), "the banner logged")
        assert _http(f"{base}/health/readiness")[0] == 200
        status, body = _http(f"{base}/logger")
        assert status == 200 and json.loads(body)["loggers"]["root"] == "INFO"

        # Upstream's request: the level of one logger, now.
        status, body = _http(f"{base}/logger", "POST", json.dumps({"component": "actuator", "level": "debug"}).encode())
        assert (status, body) == (200, b"{}")
        assert _http(f"{base}/health/readiness")[0] == 200
        _wait_for(lambda: len(probes_logged()) == 1, "the debug record of the probe logged")
        (debug,) = probes_logged()
        assert debug["level"] == "debug"

        status, body = _http(f"{base}/logger", "POST", json.dumps({"component": "actuator", "level": "info"}).encode())
        assert status == 200
        assert _http(f"{base}/health/readiness")[0] == 200
        status, body = _http(f"{base}/logger", "POST", json.dumps({"component": "actuator", "level": "loud"}).encode())
        assert status == 500 and "invalid choice: 'loud'" in json.loads(body)["error"]
        status, body = _http(f"{base}/logger", "POST", b"not json")
        assert status == 500 and json.loads(body)["error"]
        status, _ = _http(f"{base}/logger", "POST", b"x" * 5000)
        assert status == 413
        assert len(probes_logged()) == 1  # back at info: no more debug records
        changes = [line["message"] for line in lines() if line["message"].startswith("log level of")]
        assert changes == ["log level of layotto.actuator set to DEBUG", "log level of layotto.actuator set to INFO"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert all(isinstance(line, dict) for line in lines())  # every line one JSON object


async def test_records_logged_while_an_event_is_delivered_name_its_pubsub() -> None:
    """A delivery runs in the pub/sub's consumer task, not in an API call: the dispatcher sets
    `component` itself, for the app channel's and the backend's records alike."""
    from layotto.components.pubsub.base import Message
    from layotto.components.pubsub.memory import InMemoryPubSub
    from layotto.observability.logging import COMPONENT
    from layotto.runtime.appchannel import Status
    from layotto.runtime.delivery import DeliveryPolicy, DeliveryStats, Dispatcher

    seen: list[str] = []

    async def deliver(event: object, time_limit: float) -> Status:
        seen.append(COMPONENT.get())
        return Status.SUCCESS

    dispatcher = Dispatcher(
        InMemoryPubSub(), "orders-bus", "orders", DeliveryPolicy(), DeliveryStats(), deliver=deliver
    )
    assert await dispatcher(Message(topic="orders", data=b"{}"))
    assert seen == ["orders-bus"]
    assert COMPONENT.get() == ""  # reset once the event is settled
