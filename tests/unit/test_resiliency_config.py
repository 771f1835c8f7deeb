"""Dapr's Resiliency resource and the Layotto JSON `resiliency` section -> the policies' model,
and every mistake in them a ConfigError naming where."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from layotto.config import dapr_yaml, layotto_json
from layotto.config.model import RuntimeConfig
from layotto.config.resiliency import CodeRanges, Counts, Trip, go_duration
from layotto.errors import ConfigError
from tests.support.sidecar import layotto_config

RESILIENCY = """\
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: myresiliency
spec:
  policies:
    timeouts:
      general: 5s
      quick: 250
    retries:
      fast:
        policy: constant
        duration: 50ms
        maxRetries: 3
      patient:
        policy: Exponential
        maxInterval: 15s
        matching:
          httpStatusCodes: "429,500-599"
          gRPCStatusCodes: "4,14"
      defaults: {}
    circuitBreakers:
      simpleCB:
        maxRequests: 2
        interval: 8s
        timeout: 45s
        trip: consecutiveFailures >= 5
      plain: {}
  targets:
    apps:
      appB: {timeout: general, retry: patient, circuitBreaker: simpleCB}
    components:
      statestore:
        outbound: {timeout: quick, retry: fast, circuitBreaker: simpleCB}
      pubsub:
        inbound: {retry: fast}
"""


def _load_yaml(tmp_path: Path, *texts: str, app_id: str = "app1") -> RuntimeConfig:
    for i, text in enumerate(texts):
        (tmp_path / f"r{i}.yaml").write_text(textwrap.dedent(text))
    cfg = RuntimeConfig()
    cfg.app.app_id = app_id
    dapr_yaml.load_into(cfg, str(tmp_path))
    return cfg


def _yaml_error(tmp_path: Path, *texts: str) -> str:
    with pytest.raises(ConfigError) as caught:
        _load_yaml(tmp_path, *texts)
    return str(caught.value)


def _json_doc(resiliency: Any) -> dict[str, Any]:
    doc = layotto_config({"app": {"app_id": "app1"}}, grpc_port=1)
    doc["resiliency"] = resiliency
    return doc


def _json_error(resiliency: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        layotto_json.load_document(_json_doc(resiliency), source="config.json")
    return str(caught.value)


def test_a_resiliency_document_is_read_as_daprd_reads_it(tmp_path: Path) -> None:
    spec = _load_yaml(tmp_path, RESILIENCY).resiliency
    assert spec.timeouts == {"general": 5.0, "quick": 0.25}  # a bare number is milliseconds
    fast, patient, defaults = spec.retries["fast"], spec.retries["patient"], spec.retries["defaults"]
    assert (fast.policy, fast.duration, fast.max_retries) == ("constant", 0.05, 3)
    assert (patient.policy, patient.max_interval, patient.max_retries) == ("exponential", 15.0, -1)
    assert patient.http_codes == CodeRanges(((429, 429), (500, 599)), "429,500-599")
    assert patient.grpc_codes is not None and 14 in patient.grpc_codes and 13 not in patient.grpc_codes
    # dapr/kit's defaults: constant, 5 s, 60 s, for ever.
    assert (defaults.policy, defaults.duration, defaults.max_interval, defaults.max_retries) == (
        "constant",
        5.0,
        60.0,
        -1,
    )
    cb, plain = spec.circuit_breakers["simpleCB"], spec.circuit_breakers["plain"]
    assert (cb.max_requests, cb.interval, cb.timeout, cb.trip.text) == (2, 8.0, 45.0, "consecutiveFailures >= 5")
    # gobreaker's defaults: 1 probe, counts never cleared, 60 s open, more than 5 failures in a row.
    assert (plain.max_requests, plain.interval, plain.timeout, plain.trip.text) == (
        1,
        0.0,
        60.0,
        "consecutiveFailures > 5",
    )
    assert spec.apps["appB"].retry == "patient" and spec.apps["appB"].circuit_breaker == "simpleCB"
    store = spec.components["statestore"]
    assert (store.outbound.timeout, store.outbound.retry, store.outbound.circuit_breaker) == (
        "quick",
        "fast",
        "simpleCB",
    )
    assert not store.inbound
    assert spec.components["pubsub"].inbound.retry == "fast" and not spec.components["pubsub"].outbound


def test_the_layotto_json_section_has_the_resources_spec() -> None:
    section = {
        "policies": {
            "timeouts": {"general": "1s"},
            "retries": {"fast": {"policy": "constant", "duration": "10ms", "maxRetries": 2}},
            "circuitBreakers": {"cb": {"trip": "consecutiveFailures > 1", "timeout": "2s"}},
        },
        "targets": {"components": {"store": {"outbound": {"retry": "fast", "circuitBreaker": "cb"}}}},
    }
    cfg = layotto_json.load_document(_json_doc(section), source="config.json")
    assert cfg.resiliency.timeouts == {"general": 1.0}
    assert cfg.resiliency.retries["fast"].duration == 0.01
    assert cfg.resiliency.circuit_breakers["cb"].timeout == 2.0
    assert cfg.resiliency.components["store"].outbound.circuit_breaker == "cb"
    # No section: no policies.
    assert not layotto_json.load_document(layotto_config({}, grpc_port=1), source="c.json").resiliency


def test_documents_merge_and_targets_may_name_another_documents_policies(tmp_path: Path) -> None:
    policies = """\
    apiVersion: dapr.io/v1alpha1
    kind: Resiliency
    metadata: {name: policies}
    spec:
      policies:
        retries: {fast: {duration: 10ms}}
    """
    targets = """\
    apiVersion: dapr.io/v1alpha1
    kind: Resiliency
    metadata: {name: targets}
    spec:
      targets:
        apps: {b: {retry: fast}}
    """
    spec = _load_yaml(tmp_path, targets, policies).resiliency
    assert spec.apps["b"].retry == "fast" and "fast" in spec.retries


def test_a_document_scoped_to_other_apps_is_left_out(tmp_path: Path) -> None:
    scoped = RESILIENCY + "scopes: [other-app]\n"
    assert not _load_yaml(tmp_path, scoped, app_id="app1").resiliency
    assert _load_yaml(tmp_path, scoped, app_id="other-app").resiliency.retries


def test_actor_targets_are_accepted_with_a_warning(tmp_path: Path) -> None:
    text = RESILIENCY.replace(
        "    apps:", "    actors:\n      myActor: {retry: fast, circuitBreakerScope: both}\n    apps:"
    )
    cfg = _load_yaml(tmp_path, text)
    assert any("no actors" in w for w in cfg.warnings), cfg.warnings


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ("general: 5s", "general: 5 seconds"),
            "spec.policies.timeouts.general (line 8): timeout 'general' must be a duration",
        ),
        (("general: 5s", "general: -5s"), "timeout 'general' must not be negative"),
        (
            ("duration: 50ms", "duration: fast"),
            "spec.policies.retries.fast.duration (line 13): duration must be a duration",
        ),
        (("maxInterval: 15s", "maxInterval: [1]"), "maxInterval must be a duration"),
        (("maxRetries: 3", "maxRetries: -2"), "maxRetries must be a number of retries (-1: for ever) from -1"),
        (("maxRetries: 3", 'maxRetries: "3"'), "maxRetries must be a number of retries"),
        (("policy: constant", "policy: linear"), 'policy must be constant or exponential, got the string "linear"'),
        (("maxRetries: 3", "maxRetry: 3"), 'unknown key "maxRetry"; did you mean "maxRetries"?'),
        (("maxRequests: 2", "maxRequest: 2"), 'unknown key "maxRequest"; did you mean "maxRequests"?'),
        (("maxRequests: 2", "maxRequests: -1"), "maxRequests must be a number of calls from 0"),
        (('"429,500-599"', '"429,500-600"'), "httpStatusCodes: 600 in '500-600' is not a valid code (100 to 599)"),
        (('"429,500-599"', '"599-500"'), "httpStatusCodes: the range '599-500' starts after it ends"),
        (('"4,14"', '"4,1-2-3"'), "gRPCStatusCodes: '1-2-3' is not a code or a range of codes"),
        (('"4,14"', '"4,17"'), "gRPCStatusCodes: 17 in '17' is not a valid code (0 to 16)"),
        (('"4,14"', '"UNAVAILABLE"'), "gRPCStatusCodes: 'UNAVAILABLE' is not a code"),
        (
            ("retry: patient", "retry: patiant"),
            'spec.targets.apps.appB.retry (line 31): retry policy "patiant" is not defined; did you mean "patient"?',
        ),
        (("timeout: quick", "timeout: soon"), 'timeout policy "soon" is not defined (defined: general, quick)'),
        (
            ("circuitBreaker: simpleCB}", "circuitBreaker: simpleBC}"),
            'circuit breaker policy "simpleBC" is not defined; did you mean "simpleCB"?',
        ),
        (("outbound:", "outbond:"), 'unknown key "outbond"; did you mean "outbound"?'),
        (("  targets:", "  target:"), 'unknown key "target"; did you mean "targets"?'),
        (("    retries:", "    retry:"), 'unknown key "retry"; did you mean "retries"?'),
    ],
)
def test_mistakes_are_config_errors_naming_where(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in RESILIENCY
    message = _yaml_error(tmp_path, RESILIENCY.replace(old, new, 1))
    assert expected in message, message
    assert "r0.yaml: document 1" in message


@pytest.mark.parametrize(
    ("trip", "expected"),
    [
        (
            "consecutiveFailure > 5",
            "unknown variable 'consecutiveFailure' at column 1; did you mean 'consecutiveFailures'?",
        ),
        ("failures > 5", "unknown variable 'failures' at column 1"),
        ("consecutiveFailures", "must be true or false (a comparison), not a number"),
        ("consecutiveFailures > 5.5", "only integer literals are supported, got '5.5' at column 23"),
        ("consecutiveFailures > 5u", "only integer literals are supported"),
        ("(consecutiveFailures > 5", "a '(' at column 1 is not closed at the end"),
        ("consecutiveFailures > 5)", "unexpected ')' at column 24"),
        ("consecutiveFailures >", "the expression ends too soon"),
        ("consecutiveFailures > 5 && 3", "'&&' at column 25 takes true/false"),
        ("consecutiveFailures > true", "'>' at column 21 compares a int with a bool"),
        ("1 < 2 < 3", "compares a bool with a int"),
        ("!requests", "'!' at column 1 takes true/false"),
        ("requests $ 2", "unexpected '$' at column 10"),
        ("(" * 40 + "true" + ")" * 40, "nested deeper than 32 levels"),
    ],
)
def test_bad_trip_expressions(tmp_path: Path, trip: str, expected: str) -> None:
    message = _yaml_error(tmp_path, RESILIENCY.replace("trip: consecutiveFailures >= 5", f"trip: {json.dumps(trip)}"))
    assert "spec.policies.circuitBreakers.simpleCB.trip (line 27)" in message, message
    assert expected in message, message


def test_json_mistakes_name_the_json_path() -> None:
    message = _json_error({"policies": {"retries": {"r": {"duration": True}}}})
    assert message.startswith("config.json: $.resiliency.policies.retries.r.duration: duration must be a duration")
    message = _json_error({"targets": {"apps": {"a": {"retry": "r"}}}})
    assert message == (
        'config.json: $.resiliency.targets.apps.a.retry: retry policy "r" is not defined (no retry policy is defined)'
    )
    assert 'unknown key "polices"; did you mean "policies"?' in _json_error({"polices": {}})
    assert "a name must be a non-empty string" in _json_error({"policies": {"timeouts": {"": "1s"}}})
    assert "timeout 't' must be a duration" in _json_error({"policies": {"timeouts": {"t": None}}})


def test_a_name_is_defined_once_across_documents(tmp_path: Path) -> None:
    again = """\
    apiVersion: dapr.io/v1alpha1
    kind: Resiliency
    metadata: {name: again}
    spec:
      policies:
        retries: {fast: {}}
    """
    message = _yaml_error(tmp_path, RESILIENCY, again)
    assert "r1.yaml: document 1: spec.policies.retries.fast (line 6): retry policy 'fast' is defined already" in message
    assert "r0.yaml: document 1: spec.policies.retries.fast (line 11); define it once" in message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1h2m3.5s", 3723.5),
        ("1.5h", 5400.0),
        ("300ms", 0.3),
        ("250", 0.25),
        ("0", 0.0),
        ("+2s", 2.0),
        ("-1s", -1.0),
        ("10us", 1e-5),
        ("10\u00b5s", 1e-5),
        (".5s", 0.5),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "s", "5", "5 s", "5sec", "1d", "-", "1.2.3s", "5s5"])
def test_not_go_durations(text: str) -> None:
    if text == "5":  # a bare number is milliseconds, not an error
        assert go_duration(text) == 0.005
        return
    with pytest.raises(ValueError):
        go_duration(text)


def _counts(**values: int) -> Counts:
    names = {
        "requests": "requests",
        "totalSuccesses": "total_successes",
        "totalFailures": "total_failures",
        "consecutiveSuccesses": "consecutive_successes",
        "consecutiveFailures": "consecutive_failures",
    }
    counts = Counts()
    for name, value in values.items():
        setattr(counts, names[name], value)
    return counts


@pytest.mark.parametrize(
    ("trip", "counts", "trips"),
    [
        ("consecutiveFailures > 5", {"consecutiveFailures": 5}, False),
        ("consecutiveFailures > 5", {"consecutiveFailures": 6}, True),
        ("consecutiveFailures >= 5", {"consecutiveFailures": 5}, True),
        ("consecutiveFailures == 3", {"consecutiveFailures": 3}, True),
        ("consecutiveFailures != 3", {"consecutiveFailures": 3}, False),
        ("requests > 5 && totalFailures > 3", {"requests": 6, "totalFailures": 3}, False),
        ("requests > 5 && totalFailures > 3", {"requests": 6, "totalFailures": 4}, True),
        ("consecutiveFailures > 9 || totalFailures >= 2", {"totalFailures": 2}, True),
        # && binds tighter than ||, as in CEL.
        ("true || false && false", {}, True),
        ("!(consecutiveFailures < 2)", {"consecutiveFailures": 2}, True),
        # A failure ratio: arithmetic on integers, CEL's division towards zero.
        ("requests >= 4 && totalFailures * 100 / requests >= 50", {"requests": 4, "totalFailures": 2}, True),
        ("requests >= 4 && totalFailures * 100 / requests >= 50", {"requests": 5, "totalFailures": 2}, False),
        ("-7 / 2 == -3 && -7 % 2 == -1", {}, True),
        ("0x10 == 16 && 2 - 3 + 1 == 0", {}, True),
        ("consecutiveSuccesses + totalSuccesses == 3", {"consecutiveSuccesses": 1, "totalSuccesses": 2}, True),
        # An evaluation error never trips (daprd's breaker neither).
        ("totalFailures / requests > 0", {"totalFailures": 1}, False),
    ],
)
def test_trip_expressions_evaluate_as_cel(trip: str, counts: dict[str, int], trips: bool) -> None:
    assert Trip(trip)(_counts(**counts)) is trips


# ---- anything else is a ConfigError, never a crash ----

_KEYS = [
    "policies", "targets", "timeouts", "retries", "circuitBreakers", "apps", "components", "actors",
    "inbound", "outbound", "timeout", "retry", "circuitBreaker", "policy", "duration", "maxInterval",
    "maxRetries", "matching", "httpStatusCodes", "gRPCStatusCodes", "maxRequests", "interval", "trip",
    "general", "fast", "cb", "store",
]  # fmt: skip
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(
        [
            "5s",
            "-1s",
            "50ms",
            "1h2m",
            "250",
            "",
            "constant",
            "exponential",
            "500-599",
            "4,x",
            "consecutiveFailures > 5",
            "requests / 0 > 1",
            "((",
            "fast",
            "cb",
            "general",
        ]
    ),
    st.text(max_size=12),
)
_TREES = st.recursive(_SCALARS, lambda inner: st.dictionaries(st.sampled_from(_KEYS), inner, max_size=5), max_leaves=25)


@settings(max_examples=200, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(section=_TREES)
def test_any_section_loads_or_is_a_config_error(section: Any) -> None:
    try:
        layotto_json.load_document(_json_doc(section), source="config.json")
    except ConfigError:
        pass


_TRIP_PARTS = st.sampled_from(
    ["requests", "totalFailures", "consecutiveFailures", "true", "5", "0", "0x1f", "(", ")", "!", "-", "+", "*",
     "/", "%", "<", ">=", "==", "!=", "&&", "||", " ", "5.5", "x", "$"]
)  # fmt: skip


@settings(max_examples=300, derandomize=True)
@given(parts=st.lists(_TRIP_PARTS, max_size=12))
def test_any_trip_text_compiles_or_is_refused_and_never_raises_when_evaluated(parts: list[str]) -> None:
    text = " ".join(parts)
    try:
        trip = Trip(text)
    except ValueError:
        return
    assert trip(_counts(requests=3, totalFailures=2, consecutiveFailures=1)) in (True, False)
    assert trip(Counts()) in (True, False)
