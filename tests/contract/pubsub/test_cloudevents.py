"""Envelope rules (contrib v1.5.2) without a broker."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from layotto.core import cloudevents as ce


def test_json_is_embedded_as_json_and_bad_json_as_text() -> None:
    env = ce.new_envelope(topic="t", pubsub_name="p", data=b'{"a": [1]}', content_type="application/json")
    assert env["data"] == {"a": [1]}
    assert env["datacontenttype"] == "application/json"
    assert (env["source"], env["type"], env["specversion"], env["traceid"]) == (
        "runtime",
        "com.runtime.event.sent",
        "1.0",
        "",
    )
    assert ce.new_envelope(topic="t", pubsub_name="p", data=b"{", content_type="application/json")["data"] == "{"


def test_default_content_type_is_text_plain() -> None:
    env = ce.new_envelope(topic="t", pubsub_name="p", data=b"hi", content_type="")
    assert (env["datacontenttype"], env["data"]) == ("text/plain", "hi")


def test_given_cloudevent_kept_with_runtime_fields_overridden() -> None:
    given = json.dumps({"id": "x", "topic": "other", "pubsubname": "other", "data": 1}).encode()
    env = ce.from_cloudevent(given, topic="t", pubsub_name="p", trace_id="tp")
    assert (env["id"], env["topic"], env["pubsubname"], env["traceid"]) == ("x", "t", "p", "tp")
    assert (env["source"], env["type"], env["specversion"]) == ("runtime", "com.runtime.event.sent", "1.0")
    with pytest.raises(ce.CloudEventError):
        ce.from_cloudevent(b"[1]", topic="t", pubsub_name="p")


def test_ttl_sets_expiration_and_expired_events_are_flagged() -> None:
    env = ce.new_envelope(topic="t", pubsub_name="p", data=b"x", content_type="")
    past = datetime.now(UTC) - timedelta(seconds=10)
    ce.apply_ttl(env, {"ttlInSeconds": "5"}, now=past)
    assert env["expiration"].endswith("Z")
    event = ce.decode(ce.encode(env), topic="t", pubsub_name="p")
    assert event.expired and event.data == b"x"
    fresh = ce.new_envelope(topic="t", pubsub_name="p", data=b"x", content_type="")
    ce.apply_ttl(fresh, {"ttlInSeconds": "60"})
    assert not ce.decode(ce.encode(fresh), topic="t", pubsub_name="p").expired


def test_decode_raw_and_non_envelope_payloads() -> None:
    event = ce.decode(b"\x00plain", topic="t", pubsub_name="p", message_id="7")
    assert (event.data, event.data_content_type, event.id) == (b"\x00plain", "application/octet-stream", "7")
    env = ce.new_envelope(topic="t", pubsub_name="p", data=b"x", content_type="")
    raw = ce.decode(ce.encode(env), topic="t", pubsub_name="p", raw=True)
    assert raw.data == ce.encode(env)
