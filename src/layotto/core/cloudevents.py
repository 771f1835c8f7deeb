"""CloudEvents 1.0 envelopes as upstream Layotto builds them (components-contrib v1.5.2 rules).

Publishing wraps the app's payload in a JSON envelope; delivery unwraps it into the fields of
a TopicEventRequest. Payloads that are not an envelope (published with `rawPayload`, or by a
non-runtime producer) are delivered as they are, never rejected: an undeliverable message
would otherwise be redelivered forever.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from layotto.observability.tracing.span import current_traceparent, is_traceparent

DEFAULT_SOURCE = "runtime"
DEFAULT_TYPE = "com.runtime.event.sent"
SPEC_VERSION = "1.0"
CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
OCTET_STREAM = "application/octet-stream"
TEXT_PLAIN = "text/plain"

RAW_PAYLOAD = "rawPayload"
TTL_IN_SECONDS = "ttlInSeconds"


#: How deep the JSON the runtime parses (a CloudEvent, JSON event data, a state query) may nest.
#: json.loads and the encoder recurse once per level, against the interpreter's recursion limit
#: (1000, part of it spent by the caller's stack): past it they raise RecursionError, which no
#: caller expects. Go's encoding/json stops at 10000; no real document comes near either.
MAX_JSON_DEPTH = 128
#: The longest `ttlInSeconds` an event may carry: the bound the state stores take too
#: (components/state/base.py MAX_TTL_SECONDS), so the key means the same in every block, and
#: far inside what a datetime can add.
MAX_TTL_SECONDS = 2**31 - 1

# A string (skipped whole: brackets in it do not nest) or a bracket.
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')
# ASCII only, as Go's strconv.ParseInt reads it: int() would take Arabic-Indic digits (U+0661 U+0660) for 10.
_INTEGER = re.compile(r"[+-]?[0-9]+")


class CloudEventError(ValueError):
    """The given CloudEvent (application/cloudevents+json) is not a JSON object."""


class JsonTooDeepError(CloudEventError):
    """JSON nested deeper than `limit` levels."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the JSON is nested deeper than {limit} levels")
        self.limit = limit


class TtlOutOfRangeError(ValueError):
    """`ttlInSeconds` is an integer, but more than `limit`; `shown` is (the start of) it."""

    def __init__(self, raw: str, limit: int) -> None:
        self.shown = raw if len(raw) <= 40 else f"{raw[:40]}... ({len(raw)} characters)"
        self.limit = limit
        super().__init__(f"ttlInSeconds {self.shown} is out of range (at most {limit})")


def nested_deeper_than(data: bytes, limit: int) -> bool:
    """Whether the JSON text `data` opens more than `limit` brackets at once."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # the common case, at C speed: there are not even that many brackets
    depth = 0
    for token in _JSON_TOKENS.finditer(data):
        bracket = token[0]
        if bracket in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif bracket in (b"]", b"}"):
            depth -= 1
    return False


def parse_json(data: bytes | str, limit: int = MAX_JSON_DEPTH) -> Any:
    """json.loads of `data`; JsonTooDeepError (a ValueError, as a malformed document's) when it
    nests deeper than `limit`."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if nested_deeper_than(raw, limit):
        raise JsonTooDeepError(limit)
    try:
        return json.loads(data)
    except RecursionError:
        # Within the limit, yet past what the stack has left here.
        raise JsonTooDeepError(limit) from None


@functools.lru_cache(maxsize=256)  # a handful of content types, seen on every event
def _base_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_cloudevent_type(content_type: str) -> bool:
    return _base_type(content_type) == CLOUDEVENTS_CONTENT_TYPE


def is_json_type(content_type: str) -> bool:
    base = _base_type(content_type)
    return base == "application/json" or base.endswith("+json")


def is_binary_type(content_type: str) -> bool:
    return _base_type(content_type) == OCTET_STREAM


def is_string_type(content_type: str) -> bool:
    base = _base_type(content_type)
    return base.startswith("text/") or base.endswith("/xml") or base.endswith("+xml")


def is_truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes", "on")


def new_envelope(
    *,
    topic: str,
    pubsub_name: str,
    data: bytes,
    content_type: str,
    trace_id: str = "",
    source: str = DEFAULT_SOURCE,
    event_type: str = DEFAULT_TYPE,
) -> dict[str, Any]:
    """Wrap `data` the way contrib's NewCloudEventsEnvelope does; JsonTooDeepError for JSON data
    nested deeper than MAX_JSON_DEPTH (contrib would keep it, up to Go's own limit)."""
    trace_id = current_traceparent() or trace_id
    content_type = content_type or TEXT_PLAIN
    envelope: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "specversion": SPEC_VERSION,
        "datacontenttype": content_type,
        "source": source,
        "type": event_type,
        "topic": topic,
        "pubsubname": pubsub_name,
        "traceid": trace_id,
    }
    if trace_id:
        envelope["traceparent"] = trace_id
    if is_json_type(content_type):
        try:
            envelope["data"] = parse_json(data)
        except JsonTooDeepError:
            raise
        except ValueError:
            # contrib falls back to the text when the "JSON" does not parse
            envelope["data"] = data.decode("utf-8", errors="replace")
    elif is_binary_type(content_type):
        envelope["data_base64"] = base64.b64encode(data).decode("ascii")
    else:
        envelope["data"] = data.decode("utf-8", errors="replace")
    return envelope


def from_cloudevent(data: bytes, *, topic: str, pubsub_name: str, trace_id: str = "") -> dict[str, Any]:
    """Keep the app's own envelope; the runtime owns topic, pubsubname and traceid."""
    # A traced call's own span is the parent of the event, as for an invocation.
    trace_id = current_traceparent() or trace_id
    try:
        envelope = parse_json(data)
    except JsonTooDeepError:
        raise
    except ValueError as exc:
        raise CloudEventError(str(exc)) from None
    if not isinstance(envelope, dict):
        raise CloudEventError("a cloudevent must be a JSON object")
    envelope.setdefault("id", str(uuid.uuid4()))
    envelope.setdefault("source", DEFAULT_SOURCE)
    envelope.setdefault("type", DEFAULT_TYPE)
    envelope.setdefault("specversion", SPEC_VERSION)
    envelope["topic"] = topic
    envelope["pubsubname"] = pubsub_name
    envelope["traceid"] = trace_id
    if trace_id:
        envelope["traceparent"] = trace_id
    return envelope


def ttl_of(metadata: Mapping[str, str]) -> int | None:
    """The `ttlInSeconds` metadata (None when absent or <= 0: no expiry). ValueError when it is
    not an ASCII integer, TtlOutOfRangeError when it is more than MAX_TTL_SECONDS."""
    raw = metadata.get(TTL_IN_SECONDS, "")
    if not raw:
        return None
    if not _INTEGER.fullmatch(raw):
        raise ValueError(f"ttlInSeconds must be an integer, got {raw!r}")
    if raw.startswith("-"):
        return None
    digits = raw.lstrip("+").lstrip("0") or "0"
    # Measured first: int() of a long digit string is slow, and refused past 4300 digits.
    seconds = int(digits) if len(digits) <= len(str(MAX_TTL_SECONDS)) else MAX_TTL_SECONDS + 1
    if seconds > MAX_TTL_SECONDS:
        raise TtlOutOfRangeError(raw, MAX_TTL_SECONDS)
    return seconds if seconds > 0 else None


def apply_ttl(envelope: dict[str, Any], metadata: Mapping[str, str], now: datetime | None = None) -> None:
    """`ttlInSeconds` metadata -> `expiration` (RFC 3339, UTC). Raises ValueError if it is not an
    integer, TtlOutOfRangeError (a ValueError) if it is more than MAX_TTL_SECONDS."""
    seconds = ttl_of(metadata)
    if seconds is None:
        return
    moment = (now or datetime.now(UTC)) + timedelta(seconds=seconds)
    envelope["expiration"] = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def has_expired(envelope: Mapping[str, Any], now: datetime | None = None) -> bool:
    raw = envelope.get("expiration")
    if not isinstance(raw, str) or not raw:
        return False
    try:
        moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return False
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment <= (now or datetime.now(UTC))


#: json.dumps with options builds a new encoder per call; one made once runs the same C code.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def encode(envelope: Mapping[str, Any]) -> bytes:
    return _ENCODER.encode(envelope).encode()


@dataclass
class Event:
    """What the app receives (the fields of TopicEventRequest), plus the envelope kept for
    dead-lettering and expiry checks."""

    id: str
    source: str
    type: str
    spec_version: str
    data_content_type: str
    topic: str
    pubsub_name: str
    data: bytes
    metadata: dict[str, str] = field(default_factory=dict)
    expired: bool = False
    #: The bytes as read from the backend, republished as they are to a dead-letter topic.
    raw: bytes = b""
    #: The envelope's W3C `traceparent` (the publisher's trace), "" when it has none valid.
    traceparent: str = ""
    #: The app's handler for this event, chosen by its subscription's routes ("" for none).
    route: str = ""


def _text(envelope: Mapping[str, Any], key: str, default: str = "") -> str:
    value = envelope.get(key, default)
    return value if isinstance(value, str) else json.dumps(value)


def _traceparent(envelope: Mapping[str, Any]) -> str:
    # contrib sets both fields; an envelope from elsewhere may carry only `traceid`.
    for key in ("traceparent", "traceid"):
        value = envelope.get(key)
        if is_traceparent(value):
            return str(value)
    return ""


def decode(payload: bytes, *, topic: str, pubsub_name: str, raw: bool = False, message_id: str = "") -> Event:
    """Turn a backend message into an Event. Non-envelope payloads are delivered raw."""
    envelope: Any = None
    if not raw:
        try:
            # One level more than publishing takes: the envelope around JSON data of that depth.
            envelope = parse_json(payload, MAX_JSON_DEPTH + 1)
        except ValueError:
            envelope = None
    if not isinstance(envelope, dict) or "id" not in envelope or "specversion" not in envelope:
        return Event(
            id=message_id or str(uuid.uuid4()),
            source=DEFAULT_SOURCE,
            type=DEFAULT_TYPE,
            spec_version=SPEC_VERSION,
            data_content_type=OCTET_STREAM,
            topic=topic,
            pubsub_name=pubsub_name,
            data=payload,
            raw=payload,
        )
    content_type = _text(envelope, "datacontenttype")
    data = b""
    if envelope.get("data_base64") is not None:
        try:
            data = base64.b64decode(_text(envelope, "data_base64"), validate=True)
        except (binascii.Error, ValueError):
            data = _text(envelope, "data_base64").encode()
    elif envelope.get("data") is not None:
        value = envelope["data"]
        if isinstance(value, str) and not is_json_type(content_type):
            data = value.encode()
        else:
            data = _ENCODER.encode(value).encode()
    return Event(
        id=_text(envelope, "id"),
        source=_text(envelope, "source"),
        type=_text(envelope, "type"),
        spec_version=_text(envelope, "specversion"),
        data_content_type=content_type,
        topic=topic,
        pubsub_name=pubsub_name,
        data=data,
        expired=has_expired(envelope),
        raw=payload,
        traceparent=_traceparent(envelope),
    )
