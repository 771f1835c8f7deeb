"""The pieces of input bindings that need no backend: cron schedules as upstream's parser reads
them, the `direction` metadata, and an HTTP app's reply to an event."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterator

import pytest

from layotto.api.dapr_http import state as http_state
from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings.cron import CronBinding, Schedule, ScheduleError, go_utc
from layotto.components.state.base import SetRequest
from layotto.errors import ConfigError
from layotto.runtime.appchannel import BindingReply, http_binding_reply
from layotto.runtime.cores import allows, directions

#: A Friday, half a second past ten (UTC).
NOW = dt.datetime(2024, 5, 17, 10, 0, 0, 500000, tzinfo=dt.UTC)


@pytest.fixture
def utc_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A schedule without a zone is in local time: UTC here, for the test's expectations."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("@every 1s", _utc(2024, 5, 17, 10, 0, 1)),
        ("@every 1m30s", _utc(2024, 5, 17, 10, 1, 30)),
        ("@every 200ms", _utc(2024, 5, 17, 10, 0, 1)),  # at least a second
        ("* * * * *", _utc(2024, 5, 17, 10, 1)),  # five fields: seconds are 0
        ("*/15 * * * * *", _utc(2024, 5, 17, 10, 0, 15)),
        ("5/20 * * * * *", _utc(2024, 5, 17, 10, 0, 5)),  # a/n: from a to the maximum
        ("0 30 3-6,20-23 * * *", _utc(2024, 5, 17, 20, 30)),
        ("0 0 1 * mon", _utc(2024, 5, 20)),  # neither day field is *: either matches
        ("0 0 0 1 * mon", _utc(2024, 5, 20)),
        ("0 0 0 * * SUN-mon", _utc(2024, 5, 19)),  # names, any case
        ("0 0 0 1 jan ?", _utc(2025, 1, 1)),
        ("0 0 0 29 2 *", _utc(2028, 2, 29)),
        ("@daily", _utc(2024, 5, 18)),
        ("@hourly", _utc(2024, 5, 17, 11)),
        ("@weekly", _utc(2024, 5, 19)),
        ("@monthly", _utc(2024, 6, 1)),
        ("@yearly", _utc(2025, 1, 1)),
        ("CRON_TZ=America/New_York 0 30 4 * * *", _utc(2024, 5, 18, 8, 30)),
        ("TZ=Asia/Tokyo @daily", _utc(2024, 5, 17, 15)),
    ],
)
def test_schedules_tick_when_upstreams_parser_says(spec: str, expected: dt.datetime, utc_local_time: None) -> None:
    assert Schedule.parse(spec).next_after(NOW) == expected


def test_an_impossible_date_has_no_next_time() -> None:
    assert Schedule.parse("0 0 0 31 2 *").next_after(NOW) is None


def test_the_zone_is_named_in_events() -> None:
    assert Schedule.parse("@every 1s").zone_name == "Local"
    assert Schedule.parse("CRON_TZ=Europe/Paris @hourly").zone_name == "Europe/Paris"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("* * *", "expected 5 to 6 fields, found 3"),
        ("0 0 30 4 * * *", "expected 5 to 6 fields, found 7"),
        ("61 * * * *", "end of range (61) above maximum (59)"),
        ("0 0 0 0 * *", "beginning of range (0) below minimum (1)"),
        ("5-1 * * * *", "beginning of range (5) beyond end of range (1)"),
        ("*/0 * * * *", "step of range should be a positive number"),
        ("1-2-3 * * * *", "too many hyphens"),
        ("*/2/3 * * * *", "too many slashes"),
        ("x * * * *", "failed to parse int from x"),
        ("@fortnightly", "unrecognized descriptor"),
        ("@every soon", "failed to parse duration"),
        ("CRON_TZ=Nowhere/Land * * * * *", "provided bad location Nowhere/Land"),
    ],
)
def test_bad_schedules_are_refused_with_upstreams_words(spec: str, message: str) -> None:
    with pytest.raises(ScheduleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Schedule.parse(spec)


async def test_a_cron_binding_needs_a_valid_schedule() -> None:
    context = ComponentContext("tick", "bindings", "app")
    with pytest.raises(ConfigError, match="schedule not set"):
        await CronBinding().init(Metadata({}, where="bindings.tick"), context)
    with pytest.raises(ConfigError, match="invalid schedule format '@nope'"):
        await CronBinding().init(Metadata({"schedule": "@nope"}, where="bindings.tick"), context)


def test_read_times_are_printed_as_go_prints_utc() -> None:
    assert go_utc(NOW) == "2024-05-17 10:00:00.5 +0000 UTC"
    assert go_utc(_utc(2024, 1, 2, 3, 4, 5)) == "2024-01-02 03:04:05 +0000 UTC"


def test_direction_metadata_says_what_a_binding_may_be() -> None:
    assert directions({}) is None and allows({}, "input") and allows({}, "output")
    assert directions({"Direction": "Input, output"}) == {"input", "output"}
    assert allows({"direction": "input"}, "input") and not allows({"direction": "input"}, "output")
    assert not allows({"direction": "output"}, "input")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"", BindingReply()),
        (b"not json", BindingReply()),
        (b"[1, 2]", BindingReply()),
        (b'{"to": ["a", "b"], "data": {"x": 1}}', BindingReply(to=["a", "b"], data=b'{"x":1}')),
        (
            b'{"to": ["a"], "data": "hi", "concurrency": "parallel"}',
            BindingReply(to=["a"], data=b'"hi"', parallel=True),
        ),
        (
            b'{"storeName": "s", "state": [{"key": "k", "value": 1}]}',
            BindingReply(store_name="s", states=[SetRequest(key="k", value=b"1")]),
        ),
        (
            b'{"storeName": "s", "state": ['
            b'{"key": "a", "value": {"b": 2.0, "a": "<x>"}, "etag": "7", "metadata": {"ttlInSeconds": "60"},'
            b' "options": {"concurrency": "first-write", "consistency": "strong"}},'
            b' {"key": "b", "value": "hi", "etag": "3", "options": {"concurrency": "last-write"}}]}',
            BindingReply(
                store_name="s",
                states=[
                    SetRequest(
                        key="a",
                        value=b'{"a":"\\u003cx\\u003e","b":2}',
                        etag="7",
                        metadata={"ttlInSeconds": "60"},
                        concurrency="first-write",
                        consistency="strong",
                    ),
                    # Last-write checks no etag, as the state APIs read it.
                    SetRequest(key="b", value=b'"hi"', concurrency="last-write"),
                ],
            ),
        ),
        (
            # What is not a state item is left out; a missing value is JSON's null.
            b'{"storeName": "s", "state": [{"value": 1}, "x", {"key": "m", "metadata": {"n": 1}}, {"key": "ok"}]}',
            BindingReply(store_name="s", states=[SetRequest(key="ok", value=b"null")]),
        ),
    ],
)
def test_an_http_apps_reply_is_read_as_daprs(body: bytes, expected: BindingReply) -> None:
    assert http_binding_reply(body) == expected


@pytest.mark.parametrize("value", ["hi", 1, 2.0, 1.5, None, True, {"z": [1, "<&>"], "a": {}}, [], "\u2028"])
def test_a_replys_state_is_stored_as_the_http_state_api_stores_it(value: object) -> None:
    item = {"key": "k", "value": value, "etag": "0", "metadata": {"m": "v"}, "options": {"consistency": "eventual"}}
    reply = http_binding_reply(json.dumps({"storeName": "s", "state": [item]}).encode())
    assert reply.states == [http_state.set_request(item, {})]


def test_an_envelope_nested_past_the_limit_routes_as_no_envelope() -> None:
    from layotto.core.cloudevents import Event
    from layotto.runtime.subscriptions import envelope_of

    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000
    event = Event("e", "s", "t", "1.0", "application/json", "t", "p", b"", raw=deep)
    assert envelope_of(event) == {}
