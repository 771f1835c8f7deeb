"""Bulk subscribe without a backend: where the settings come from (Subscription resources of
both versions, an HTTP app's `/dapr/subscribe`, a gRPC app's ListTopicSubscriptions), what the
app is sent (Dapr's bulk HTTP body, TopicEventBulkRequest) and how its answers read."""

from __future__ import annotations

import base64
import json
import logging
import textwrap
from pathlib import Path

import pytest

from layotto.api.dapr.appchannel import _bulk_settings, topic_event_bulk_request
from layotto.components.pubsub.base import BulkOptions, bulk_in_flight
from layotto.config import dapr_yaml
from layotto.config.model import BulkSubscribeSpec, RuntimeConfig
from layotto.core.cloudevents import decode, encode, new_envelope
from layotto.errors import ConfigError
from layotto.runtime.appchannel import BulkDelivery, BulkEntry, Status, bulk_http_body, bulk_http_verdicts
from layotto.runtime.subscriptions import declared, from_documents
from layotto_proto.dapr.proto.runtime.v1 import appcallback_pb2 as dcb

SUBSCRIPTIONS = """\
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: one
spec:
  pubsubname: ps
  topic: t1
  route: /one
  bulkSubscribe:
    enabled: true
    maxMessagesCount: 50
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: two
spec:
  pubsubname: ps
  topic: t2
  routes:
    default: /two
  bulkSubscribe:
    enabled: true
    maxMessagesCount: 7
    maxAwaitDurationMs: 40
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: plain
spec:
  pubsubname: ps
  topic: t3
  routes:
    default: /three
"""


def _load(tmp_path: Path, text: str) -> RuntimeConfig:
    (tmp_path / "subs.yaml").write_text(textwrap.dedent(text))
    cfg = RuntimeConfig()
    dapr_yaml.load_into(cfg, str(tmp_path))
    return cfg


def test_subscription_resources_of_both_versions_carry_their_bulk_settings(tmp_path: Path) -> None:
    cfg = _load(tmp_path, SUBSCRIPTIONS)
    by_topic = {s.topic: s.bulk for s in declared(cfg.subscriptions)}
    assert by_topic == {
        "t1": BulkSubscribeSpec(True, 50, 0),
        "t2": BulkSubscribeSpec(True, 7, 40),
        "t3": None,
    }
    options = {t: BulkOptions.of(b.max_messages_count, b.max_await_duration_ms) for t, b in by_topic.items() if b}
    assert options == {"t1": BulkOptions(50, 1.0), "t2": BulkOptions(7, 0.04)}


@pytest.mark.parametrize(
    ("bulk", "problem"),
    [
        ("enabled: yes-please", "enabled must be true or false"),
        ("maxMessagesCount: '10'", "maxMessagesCount must be an integer from 0 to 2147483647"),
        ("maxAwaitDurationMs: -1", "maxAwaitDurationMs must be an integer from 0 to 2147483647"),
        ("maxMessageCount: 10", "maxMessagesCount"),  # the key it meant is suggested
    ],
)
def test_a_malformed_bulk_subscribe_names_the_field(tmp_path: Path, bulk: str, problem: str) -> None:
    text = f"""\
    apiVersion: dapr.io/v2alpha1
    kind: Subscription
    metadata: {{name: bad}}
    spec:
      pubsubname: ps
      topic: t
      bulkSubscribe:
        {bulk}
    """
    with pytest.raises(ConfigError) as error:
        _load(tmp_path, text)
    assert problem in str(error.value) and "bulkSubscribe" in str(error.value)


def test_an_http_apps_bulk_subscribe_is_read_as_go_decodes_it(caplog: pytest.LogCaptureFixture) -> None:
    documents = [
        {"pubsubname": "ps", "topic": "a", "route": "/a", "bulkSubscribe": {"enabled": True, "maxMessagesCount": 9}},
        {"pubsubName": "ps", "topic": "b", "BulkSubscribe": {"Enabled": True, "MaxAwaitDurationMs": 25}},
        {"pubsubname": "ps", "topic": "c", "bulkSubscribe": {"enabled": "true", "maxMessagesCount": 1.5}},
        {"pubsubname": "ps", "topic": "d"},
    ]
    with caplog.at_level(logging.WARNING):
        subs = {s.topic: s for s in from_documents(documents, "GET /dapr/subscribe")}
    assert subs["a"].bulk == BulkSubscribeSpec(True, 9, 0) and subs["a"].bulk_enabled
    assert subs["b"].bulk == BulkSubscribeSpec(True, 0, 25)
    # Wrong types: left at their defaults, each named in a warning.
    assert subs["c"].bulk == BulkSubscribeSpec(False, 0, 0) and not subs["c"].bulk_enabled
    assert "bulkSubscribe.enabled" in caplog.text and "bulkSubscribe.maxMessagesCount" in caplog.text
    assert subs["d"].bulk is None


def test_a_grpc_apps_bulk_subscribe_field() -> None:
    with_bulk = dcb.TopicSubscription(
        pubsub_name="ps",
        topic="t",
        bulk_subscribe=dcb.BulkSubscribeConfig(enabled=True, max_messages_count=3, max_await_duration_ms=-5),
    )
    assert _bulk_settings(with_bulk) == BulkSubscribeSpec(True, 3, 0)
    assert _bulk_settings(dcb.TopicSubscription(pubsub_name="ps", topic="t")) is None


def test_defaults_and_the_messages_in_flight() -> None:
    assert BulkOptions.of(0, 0) == BulkOptions(100, 1.0)  # daprd's defaults
    assert bulk_in_flight(BulkOptions(100, 1.0), 32) == 200  # a batch fills while one is out
    assert bulk_in_flight(BulkOptions(10, 1.0), 64) == 64


def _bulk(raw_payload: bool = False) -> BulkDelivery:
    envelope = new_envelope(topic="t", pubsub_name="ps", data=b'{"k": 1}', content_type="application/json")
    published = decode(encode(envelope), topic="t", pubsub_name="ps")
    raw = decode(b"\xffnot json", topic="t", pubsub_name="ps", message_id="1-0")
    entries = [BulkEntry("e1", published, {"h": "v"}), BulkEntry("e2", raw)]
    return BulkDelivery("bulk-1", "ps", "t", "/r", entries, raw_payload=raw_payload)


def test_the_http_body_is_daprs() -> None:
    body = json.loads(bulk_http_body(_bulk()))
    assert list(body) == ["entries", "id", "metadata", "pubsubname", "topic", "type"]
    assert (body["id"], body["type"], body["topic"], body["pubsubname"]) == (
        "bulk-1",
        "com.dapr.event.sent.bulk",
        "t",
        "ps",
    )
    assert body["metadata"] == {"pubsubName": "ps"}
    first, second = body["entries"]
    assert list(first) == ["entryId", "event", "metadata", "contentType"]
    assert (first["entryId"], first["contentType"], first["metadata"]) == (
        "e1",
        "application/cloudevents+json",
        {"h": "v"},
    )
    assert first["event"]["data"] == {"k": 1} and first["event"]["specversion"] == "1.0"
    # Not a CloudEvent: its bytes in base64, as a raw payload goes.
    assert (second["contentType"], base64.b64decode(second["event"])) == ("application/octet-stream", b"\xffnot json")
    raw_only = json.loads(bulk_http_body(_bulk(raw_payload=True)))
    assert all(e["contentType"] == "application/octet-stream" for e in raw_only["entries"])


def test_the_grpc_request_is_daprs() -> None:
    request = topic_event_bulk_request(_bulk())
    assert (request.id, request.type, request.path, dict(request.metadata)) == (
        "bulk-1",
        "com.dapr.event.sent.bulk",
        "/r",
        {"pubsubName": "ps"},
    )
    first, second = request.entries
    assert first.WhichOneof("event") == "cloud_event" and json.loads(first.cloud_event.data) == {"k": 1}
    assert first.cloud_event.extensions["topic"] == "t" and dict(first.metadata) == {"h": "v"}
    assert (second.WhichOneof("event"), second.bytes, second.content_type) == (
        "bytes",
        b"\xffnot json",
        "application/octet-stream",
    )


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (
            b'{"statuses": [{"entryId": "e1", "status": "SUCCESS"}, {"entryId": "e2", "status": "DROP"}]}',
            {"e1": Status.SUCCESS, "e2": Status.DROP},
        ),
        # Go decodes names in any case; statuses are compared exactly; "" or unknown is RETRY.
        (
            b'{"Statuses": [{"entryID": "e1", "status": "RETRY"}, {"entryId": "e2", "status": "success"}]}',
            {"e1": Status.RETRY, "e2": Status.RETRY},
        ),
        (b'{"statuses": [{"entryId": "e1", "status": ""}, {"status": "SUCCESS"}]}', {"e1": Status.RETRY}),
        (b'{"statuses": []}', {}),
        (b"{}", {}),
        (b"not json", {}),
        (b"", {}),
    ],
)
def test_the_http_apps_answer(answer: bytes, expected: dict[str, Status]) -> None:
    assert bulk_http_verdicts(_bulk(), answer) == expected
