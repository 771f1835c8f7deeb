"""Dapr's tracing settings: in Layotto JSON's `tracing` beside upstream's keys, and as a Dapr
Configuration's `spec.tracing` in the resources folder; what the tracer builds from them; and
the sampling decision carried on to what a call calls."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2

from layotto.config import dapr_yaml, layotto_json
from layotto.config.model import RuntimeConfig
from layotto.errors import ConfigError
from layotto.observability.tracing.exporters import StdoutExporter, ZipkinExporter
from layotto.observability.tracing.otlp import GrpcSender, HttpSender, OtlpExporter, grpc_target, http_url
from layotto.observability.tracing.sampling import Sampler
from layotto.observability.tracing.span import Span, start_span
from layotto.observability.tracing.tracer import Tracer, build
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.e2e.invoke_apps import grpc_app
from tests.support.sidecar import free_port, layotto_config, running_sidecar

HELLO = {"app": {"app_id": "cfg-app"}, "hellos": {"helloworld": {"type": "helloworld"}}}
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"


def _cfg(tracing: dict[str, Any]) -> RuntimeConfig:
    return layotto_json.load_document(layotto_config(HELLO, grpc_port=free_port(), tracing=tracing), source="t.json")


def _tracer(tracing: dict[str, Any]) -> Tracer:
    tracer = build(_cfg(tracing))
    assert tracer is not None
    return tracer


def _otlp(tracer: Tracer) -> OtlpExporter:
    (exporter,) = tracer.exporters
    assert isinstance(exporter, OtlpExporter)
    return exporter


def test_dapr_keys_in_layotto_json_turn_tracing_on_without_enable() -> None:
    cfg = _cfg({"SamplingRate": "0.25", "OTEL": {"EndpointAddress": "collector:4317", "isSecure": False}})
    # Under Dapr's spelling, whatever the case in the file (upstream's JSON is read case-blind).
    assert cfg.tracing == {"samplingRate": "0.25", "otel": {"endpointAddress": "collector:4317", "isSecure": False}}
    tracer = build(cfg)
    assert tracer is not None and tracer.sampler.rate == 0.25
    sender = _otlp(tracer).sender
    assert isinstance(sender, GrpcSender) and sender.target == "collector:4317" and not sender.secure
    assert _otlp(tracer).resource.attributes[0].value.string_value == "cfg-app"  # service.name: the app id


def test_otel_settings() -> None:
    secure = _otlp(_tracer({"otel": {"endpointAddress": "collector"}})).sender
    assert isinstance(secure, GrpcSender) and secure.secure and secure.target == "collector:4317"  # daprd: TLS
    http = _otlp(_tracer({"otel": {"endpointAddress": "collector:4318", "isSecure": False, "protocol": "http"}}))
    assert isinstance(http.sender, HttpSender) and http.sender.endpoint == "http://collector:4318/v1/traces"
    timed = _otlp(_tracer({"otel": {"endpointAddress": "c:1", "timeout": 2500, "headers": "a=1, b = 2"}}))
    assert timed.timeout == 2.5
    assert isinstance(timed.sender, GrpcSender) and timed.sender.metadata == (("a", "1"), ("b", "2"))
    assert grpc_target("https://c:4317", False, "w") == ("c:4317", True)
    assert grpc_target("http://c", True, "w") == ("c:4317", False)
    assert http_url("https://c", False, "w") == "https://c/v1/traces"
    assert http_url("http://c:9/custom/path", True, "w") == "http://c:9/custom/path"
    assert http_url("[::1]:4318", True, "w") == "https://[::1]:4318/v1/traces"


def test_with_upstreams_keys_too() -> None:
    otel = {"endpointAddress": "c:4317", "isSecure": False}
    # No stdout default when Dapr's keys name an exporter.
    assert [type(e) for e in _tracer({"enable": True, "otel": otel}).exporters] == [OtlpExporter]
    both = _tracer({"enable": True, "driver": "zipkin", "otel": otel, "stdout": True})
    assert [type(e) for e in both.exporters] == [ZipkinExporter, OtlpExporter, StdoutExporter]
    # Upstream's switch wins.
    assert build(_cfg({"enable": False, "otel": otel})) is None
    # Dapr's zipkin and stdout; the app id is Zipkin's service name, as daprd's.
    dapr = _tracer({"zipkin": {"endpointAddress": "http://z:9411/api/v2/spans"}, "stdout": True})
    zipkin, stdout = dapr.exporters
    assert isinstance(zipkin, ZipkinExporter) and zipkin.local_endpoint["serviceName"] == "cfg-app"
    assert isinstance(stdout, StdoutExporter)
    # Without samplingRate, every span (upstream's behaviour), a not-sampled parent's too.
    assert _tracer({"enable": True}).sampler.rate is None


@pytest.mark.parametrize(
    ("tracing", "message"),
    [
        ({"samplingRate": "2"}, r"t.json: \$.tracing.samplingRate: samplingRate must be a number from 0 to 1"),
        ({"samplingRate": "often"}, "samplingRate must be a number from 0 to 1"),
        ({"samplingRate": True}, "samplingRate must be a number from 0 to 1"),
        ({"otel": {"endpointAddress": "c:1", "protocol": "udp"}}, r"\$.tracing.otel.protocol: protocol must be grpc"),
        ({"otel": {"endpoint": "c:1"}}, 'unknown key "endpoint"; did you mean "endpointAddress"'),
        ({"otel": "c:4317"}, "otel must be a JSON object"),
        ({"otel": {"endpointAddress": "c:1", "isSecure": "no"}}, "isSecure must be true or false"),
        ({"otel": {"endpointAddress": "c:1", "timeout": 0}}, "timeout must be a number of milliseconds"),
        ({"otel": {"endpointAddress": "c:1", "headers": "novalue"}}, "headers must be"),
        ({"zipkin": {"endpointAddress": "z:9411"}}, "endpointAddress must be an http"),
        ({"stdout": "yes"}, "stdout must be true or false"),
        ({"sampling": "1"}, 'unknown key "sampling"; did you mean "samplingRate"'),
    ],
)
def test_bad_settings_are_config_errors_naming_the_key(tracing: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _cfg(tracing)


def test_bad_settings_built_by_hand_are_config_errors_too() -> None:
    cfg = RuntimeConfig(tracing={"otel": {"endpointAddress": "c:99999"}}, source="x")
    with pytest.raises(ConfigError, match="bad port"):
        build(cfg)
    with pytest.raises(ConfigError, match=r"x: \$.tracing.samplingRate"):
        build(RuntimeConfig(tracing={"samplingRate": "-1"}, source="x"))


CONFIGURATION = """\
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: tracing
  namespace: default
spec:
  tracing:
    {rate}
    otel:
      endpointAddress: "127.0.0.1:4317"
      isSecure: false
      protocol: grpc
  metric:
    enabled: true
"""


def _resources(tmp_path: Path, rate: str = 'samplingRate: "1"') -> Path:
    (tmp_path / "config.yaml").write_text(textwrap.dedent(CONFIGURATION.format(rate=rate)))
    return tmp_path


def test_a_dapr_configuration_in_the_resources_folder_sets_tracing(tmp_path: Path) -> None:
    cfg = RuntimeConfig(source="layotto.json")
    cfg.app.app_id = "yaml-app"
    dapr_yaml.load_into(cfg, str(_resources(tmp_path)))
    assert cfg.tracing["samplingRate"] == "1"
    assert cfg.tracing["otel"] == {"endpointAddress": "127.0.0.1:4317", "isSecure": False, "protocol": "grpc"}
    assert any("spec.metric not supported here" in w for w in cfg.warnings)
    tracer = build(cfg)
    assert tracer is not None and tracer.sampler.rate == 1.0
    assert _otlp(tracer).resource.attributes[0].value.string_value == "yaml-app"


def test_a_dapr_configuration_without_a_rate_samples_as_daprd(tmp_path: Path) -> None:
    cfg = RuntimeConfig()
    dapr_yaml.load_into(cfg, str(_resources(tmp_path, rate="")))
    tracer = build(cfg)
    assert tracer is not None and tracer.sampler.rate == 0.0001


def test_tracing_set_twice_is_refused(tmp_path: Path) -> None:
    cfg = _cfg({"samplingRate": "1"})
    with pytest.raises(ConfigError, match=r"tracing is set here and already in t\.json"):
        dapr_yaml.load_into(cfg, str(_resources(tmp_path)))
    # Upstream's keys alone in the JSON: the Configuration adds Dapr's beside them.
    cfg = _cfg({"enable": True, "driver": "SOFATracer"})
    dapr_yaml.load_into(cfg, str(_resources(tmp_path)))
    assert cfg.tracing["driver"] == "SOFATracer" and cfg.tracing["samplingRate"] == "1"


def test_a_bad_configuration_names_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: t\n"
        "spec:\n  tracing:\n    samplingRate: 1.5\n"
    )
    with pytest.raises(ConfigError, match=r"config.yaml: document 1: spec.tracing.samplingRate \(line 7\)"):
        dapr_yaml.load_into(RuntimeConfig(), str(tmp_path))


# ---- the sampler ----


def _root(trace_id: str) -> Span:
    return Span("m", trace_id, "1" * 16, w3c_trace_id=trace_id)


def test_sampler_decisions() -> None:
    low, high = "0" * 16 + "0" * 16, "0" * 16 + "f" * 16  # last 8 bytes: 0, and 2**64 - 1
    sampled_parent = start_span("m", [("traceparent", f"00-{TRACE}-{PARENT}-01")], 0)
    unsampled_parent = start_span("m", [("traceparent", f"00-{TRACE}-{PARENT}-00")], 0)
    every = Sampler()
    assert every.keeps(unsampled_parent) and every.keeps(_root(high))
    half = Sampler(0.5)
    assert half.keeps(_root("1" + low[1:])) and not half.keeps(_root(high))
    assert half.keeps(sampled_parent) and not half.keeps(unsampled_parent)
    never = Sampler(0.0)
    assert not never.keeps(sampled_parent) and not never.keeps(_root(low))
    assert Sampler(1.0).keeps(_root(high))
    # The decision goes into a root span's flags, so that what it calls on carries it.
    root = _root(high)
    half.start(root)
    assert root.flags == "00" and root.traceparent().endswith("-00")
    half.start(unsampled_parent)
    assert unsampled_parent.flags == "00"  # a parent's flags are the caller's to decide


async def test_a_trace_sampled_out_is_propagated_as_not_sampled() -> None:
    async with (
        grpc_app("app-s") as (app, port),
        running_sidecar(
            {"app": {"app_id": "app-s", "grpc_callback_port": port}},
            tracing={"samplingRate": "0", "stdout": True},
        ) as (_, address),
        grpc.aio.insecure_channel(address) as channel,
    ):
        request = pb.InvokeServiceRequest(
            id="app-s", message=pb.CommonInvokeRequest(method="echo", data=any_pb2.Any(value=b"x"))
        )
        await runtime_pb2_grpc.RuntimeStub(channel).InvokeService(request)
    (call,) = app.seen.calls
    assert dict(call.metadata)["traceparent"].endswith("-00")
