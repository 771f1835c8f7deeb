"""layotto_sdk._core: the lock and subscription policies both clients share, without I/O."""

from __future__ import annotations

import grpc
import pytest
from layotto_sdk import LayottoError, LockNotAcquired, LockStatus, TopicEvent, TopicEventStatus
from layotto_sdk import _core as core
from layotto_sdk.app import Drop

from layotto_proto.spec.proto.runtime.v1 import appcallback_pb2 as cb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _policy(clock: Clock, *, wait: float | None = None, retry: float = 0.1) -> core.LockPolicy:
    return core.LockPolicy("redis", "orders/1", 9, "me", wait, retry, keep_alive=True, clock=clock)


# ---- lock -------------------------------------------------------------------------------------


def test_lock_policy_validates_and_names_the_lease() -> None:
    with pytest.raises(ValueError, match="ttl"):
        core.LockPolicy("redis", "r", 0, None, None, 0.1, False)
    lease = core.LockPolicy("redis", "r", 5, None, None, 0.1, False).lease
    assert (lease.store, lease.resource, lease.ttl, lease.lost) == ("redis", "r", 5, False)
    assert len(lease.owner) == 36  # a fresh UUID


def test_lock_attempt_is_a_try_lock_of_the_lease() -> None:
    call = _policy(Clock()).attempt()
    assert call.path == "/spec.proto.runtime.v1.Runtime/TryLock"
    assert call.request == pb.TryLockRequest(store_name="redis", resource_id="orders/1", lock_owner="me", expire=9)
    assert call.parse(pb.TryLockResponse(success=True)) is True


def test_lock_acquired_at_once() -> None:
    policy = _policy(Clock())
    policy.attempt()
    assert policy.after_attempt(True) is None


def test_lock_held_without_wait_fails_at_once() -> None:
    policy = _policy(Clock())
    policy.attempt()
    with pytest.raises(LockNotAcquired) as caught:
        policy.after_attempt(False)
    assert caught.value.waited == 0


def test_lock_polls_within_wait_then_gives_up() -> None:
    clock = Clock()
    policy = _policy(clock, wait=1.0, retry=0.4)
    policy.attempt()
    assert policy.after_attempt(False) == pytest.approx(0.4)
    clock.now += 0.8
    policy.attempt()  # the wait counts from the first attempt, not this one
    assert policy.after_attempt(False) == pytest.approx(0.2)  # never sleeps past the deadline
    clock.now += 0.2
    policy.attempt()
    with pytest.raises(LockNotAcquired) as caught:
        policy.after_attempt(False)
    assert caught.value.waited == pytest.approx(1.0)


def test_after_attempt_needs_an_attempt() -> None:
    with pytest.raises(RuntimeError):
        _policy(Clock()).after_attempt(False)


def test_keep_alive_renews_until_refused() -> None:
    policy = _policy(Clock())
    assert policy.renew_every == pytest.approx(3.0)
    assert policy.renewal().request == pb.LockKeepAliveRequest(
        store_name="redis", resource_id="orders/1", lock_owner="me", expire=9
    )
    assert policy.renewed(LockStatus.SUCCESS) is True
    assert policy.renewed(None) is True  # the call failed: transient, try again next tick
    assert policy.lease.lost is False
    assert policy.renewed(LockStatus.LOCK_BELONG_TO_OTHERS) is False
    assert policy.lease.lost is True


def test_release_marks_a_refused_unlock_lost() -> None:
    policy = _policy(Clock())
    assert policy.release().request == pb.UnlockRequest(store_name="redis", resource_id="orders/1", lock_owner="me")
    policy.released(LockStatus.SUCCESS)
    assert policy.lease.lost is False
    policy.released(LockStatus.LOCK_UNEXIST)
    assert policy.lease.lost is True


def test_a_failed_unlock_raises_only_over_a_clean_block() -> None:
    assert core.LockPolicy.release_error_propagates(None) is True
    assert core.LockPolicy.release_error_propagates(KeyError("the block's own")) is False


# ---- topic subscription -----------------------------------------------------------------------


def _initial() -> pb.SubscribeTopicEventsRequest:
    return core.subscribe_initial("redis", "orders", None, None)


def _event_reply(event_id: str) -> pb.SubscribeTopicEventsResponse:
    return pb.SubscribeTopicEventsResponse(
        event_message=cb.TopicEventRequest(id=event_id, topic="orders", pubsub_name="redis", data=b"{}")
    )


CONFIRMATION = pb.SubscribeTopicEventsResponse(initial_response=pb.SubscribeTopicEventsResponseInitial())


def test_subscription_opens_with_the_initial_request() -> None:
    events = core.TopicEvents(_initial())
    assert events.opened is False
    request = events.open()
    assert request.initial_request.pubsub_name == "redis" and request.initial_request.topic == "orders"
    assert events.opened is True


def test_a_sidecar_that_hangs_up_refuses_the_subscription() -> None:
    events = core.TopicEvents(_initial())
    events.open()
    with pytest.raises(LayottoError) as caught:
        events.confirmed(None)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE


def test_events_and_the_end_of_the_stream() -> None:
    events = core.TopicEvents(_initial())
    events.open()
    events.confirmed(CONFIRMATION)
    assert events.take() is None
    assert events.feed(CONFIRMATION) is None and not events.ended  # not an event: read on
    event = events.feed(_event_reply("e1"))
    assert isinstance(event, TopicEvent) and event.id == "e1" and event.json() == {}
    assert events.feed(None) is None and events.ended


def test_an_event_in_the_confirmation_is_delivered_first() -> None:
    events = core.TopicEvents(_initial())
    events.open()
    events.confirmed(_event_reply("e0"))
    first = events.take()
    assert first is not None and first.id == "e0"
    assert events.take() is None


def test_answers_need_an_open_stream() -> None:
    events = core.TopicEvents(_initial())
    event = core.topic_event(_event_reply("e1").event_message)
    with pytest.raises(RuntimeError, match="not started"):
        events.processed(event, TopicEventStatus.SUCCESS)
    events.open()
    answer = events.processed(event, TopicEventStatus.RETRY)
    assert answer.event_processed.id == "e1"
    assert answer.event_processed.status.status == cb.TopicEventResponse.RETRY


def test_a_cancel_is_an_error_unless_we_closed_the_stream() -> None:
    assert core.ended_by_close(True, grpc.StatusCode.CANCELLED)
    assert not core.ended_by_close(False, grpc.StatusCode.CANCELLED)
    assert not core.ended_by_close(True, grpc.StatusCode.UNAVAILABLE)


@pytest.mark.parametrize(
    ("result", "error", "status"),
    [
        (None, None, TopicEventStatus.SUCCESS),
        ({"any": "value"}, None, TopicEventStatus.SUCCESS),
        (TopicEventStatus.SUCCESS, None, TopicEventStatus.SUCCESS),
        (False, None, TopicEventStatus.RETRY),
        (TopicEventStatus.RETRY, None, TopicEventStatus.RETRY),
        (Drop, None, TopicEventStatus.DROP),
        (Drop(), None, TopicEventStatus.DROP),
        (TopicEventStatus.DROP, None, TopicEventStatus.DROP),
        (None, Drop(), TopicEventStatus.DROP),
        (None, ValueError("boom"), TopicEventStatus.RETRY),
    ],
)
def test_what_a_handlers_outcome_tells_the_broker(
    result: object, error: Exception | None, status: TopicEventStatus
) -> None:
    assert core.handler_status(result, error) is status


def test_an_unhandled_event_is_dropped() -> None:
    assert core.UNHANDLED_STATUS is TopicEventStatus.DROP


# ---- configuration and files ------------------------------------------------------------------


def test_configuration_changes() -> None:
    reply = pb.SubscribeConfigurationResponse(items=[pb.ConfigurationItem(key="db", content="url")])
    items = core.configuration_changes(reply)
    assert items is not None and [(i.key, i.content) for i in items] == [("db", "url")]
    assert core.configuration_changes(None) is None


def test_put_file_requests() -> None:
    empty = list(core.put_file_requests("s3", "f", [], {"k": "v"}))
    assert [(r.name, r.data, dict(r.metadata)) for r in empty] == [("f", b"", {"k": "v"})]
    two = list(core.put_file_requests("s3", "f", core.file_chunks(b"x" * (core.FILE_CHUNK_SIZE + 1)), None))
    assert [len(r.data) for r in two] == [core.FILE_CHUNK_SIZE, 1]
    assert all(r.store_name == "s3" and r.name == "f" for r in two)
    chunks = [b"a", b"b"]
    assert core.file_chunks(chunks) is chunks


def test_state_items() -> None:
    [item] = core.state_items("k", "v", None, None, None, None, 10)
    assert (item.key, item.value, item.ttl) == ("k", "v", 10)
    with pytest.raises(TypeError, match="value is missing"):
        core.state_items("k", None, None, None, None, None, None)
    with pytest.raises(TypeError, match="on each StateItem"):
        core.state_items([], None, "etag", None, None, None, None)
