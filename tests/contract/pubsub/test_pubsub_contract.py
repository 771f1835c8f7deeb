"""Every pub/sub component through its block interface (no gRPC, no app): delivery, redelivery
of a nack, and that the declared features are the component's: delayed publishing works where
DELAY is declared and is refused with UnsupportedError elsewhere; bulk subscribe reads batches
natively where BULK_SUBSCRIBE is declared (refused elsewhere), and batches on every component
through components/pubsub/bulk.py, a nacked message of a batch coming again alone."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence

import pytest

from layotto.components.base import Metadata
from layotto.components.delay_queue.base import DelayedMessage, scheduler_for
from layotto.components.pubsub.base import BulkOptions, Message, PubSub, PubSubFeature
from layotto.components.pubsub.bulk import subscribe_bulk
from layotto.errors import UnsupportedError
from tests.contract.pubsub.backends import ROWS, Row
from tests.contract.pubsub.harness import new_topic
from tests.support.rows import params

WITHIN = 15.0
APP_ID = "pubsub-contract"


@pytest.fixture(params=params(ROWS))
def row(request: pytest.FixtureRequest) -> Row:
    chosen: Row = request.param
    chosen.require()
    return chosen


@pytest.fixture
async def topics(row: Row) -> AsyncIterator[list[str]]:
    used: list[str] = []
    try:
        yield used
    finally:
        if row.cleanup is not None:
            await row.cleanup(used, [APP_ID])


@pytest.fixture
async def pubsub(row: Row) -> AsyncIterator[PubSub]:
    component = await row.create(app_id=APP_ID)
    assert isinstance(component, PubSub)
    try:
        yield component
    finally:
        await component.close()


class Inbox:
    """A handler that records messages; `nacks` first deliveries are answered with a nack."""

    def __init__(self, nacks: int = 0) -> None:
        self.messages: list[Message] = []
        self.nacks = nacks
        self.changed = asyncio.Event()

    async def __call__(self, message: Message) -> bool:
        self.messages.append(message)
        self.changed.set()
        if self.nacks > 0:
            self.nacks -= 1
            return False
        return True

    async def wait(self, count: int) -> None:
        deadline = time.monotonic() + WITHIN
        while len(self.messages) < count:
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))


async def test_declares_exactly_the_rows_features(pubsub: PubSub, row: Row) -> None:
    assert pubsub.features == row.features
    assert all(isinstance(f, PubSubFeature) for f in pubsub.features)


async def test_subscriber_receives_what_is_published(pubsub: PubSub, topics: list[str]) -> None:
    topic = new_topic()
    topics.append(topic)
    inbox = Inbox()
    sub = await pubsub.subscribe(topic, inbox, {"consumerID": APP_ID})
    try:
        await pubsub.publish(topic, b"\x00payload", {})
        await inbox.wait(1)
        assert (inbox.messages[0].topic, inbox.messages[0].data) == (topic, b"\x00payload")
    finally:
        await sub.close()


async def test_a_nacked_message_comes_again(pubsub: PubSub, topics: list[str]) -> None:
    topic = new_topic()
    topics.append(topic)
    inbox = Inbox(nacks=1)
    sub = await pubsub.subscribe(topic, inbox, {"consumerID": APP_ID})
    try:
        await pubsub.publish(topic, b"again", {})
        await inbox.wait(2)
        assert [m.data for m in inbox.messages[:2]] == [b"again", b"again"]
    finally:
        await sub.close()


async def test_delay_feature(pubsub: PubSub, row: Row, topics: list[str]) -> None:
    metadata = {**row.meta(), "delayQueueKey": f"layotto-test-delay-{uuid.uuid4().hex}", "delayPollInterval": "0.1s"}
    if PubSubFeature.DELAY not in row.features:
        with pytest.raises(UnsupportedError) as refused:
            pubsub.delay_scheduler("ps", Metadata(metadata))
        assert refused.value.feature == PubSubFeature.DELAY
        assert scheduler_for(pubsub, "ps", metadata) is None
        return
    scheduler = scheduler_for(pubsub, "ps", metadata)
    assert scheduler is not None
    topic = new_topic()
    topics.append(topic)
    inbox = Inbox()
    sub = await pubsub.subscribe(topic, inbox, {"consumerID": APP_ID})
    await scheduler.start()
    try:
        started = time.monotonic()
        await scheduler.schedule(DelayedMessage(id="m1", topic=topic, data=b"later"), 0.5)
        await inbox.wait(1)
        assert time.monotonic() - started >= 0.45, "published before it was due"
        assert inbox.messages[0].data == b"later"
    finally:
        await scheduler.stop()
        await sub.close()


class BulkInbox:
    """A bulk handler that records its batches; each payload in `nack_once` is nacked the first
    time it comes."""

    def __init__(self, nack_once: frozenset[bytes] = frozenset()) -> None:
        self.batches: list[list[Message]] = []
        self.nack_once = set(nack_once)
        self.changed = asyncio.Event()

    async def __call__(self, messages: Sequence[Message]) -> list[bool]:
        self.batches.append(list(messages))
        self.changed.set()
        verdicts = [m.data not in self.nack_once for m in messages]
        self.nack_once -= {m.data for m in messages}
        return verdicts

    @property
    def seen(self) -> Counter[bytes]:
        return Counter(m.data for batch in self.batches for m in batch)

    async def wait(self, done: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WITHIN
        while not done():
            self.changed.clear()
            await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.monotonic()))


BULK = BulkOptions(max_messages=10, max_await=0.3)


async def test_bulk_feature_is_native_where_declared(pubsub: PubSub, row: Row, topics: list[str]) -> None:
    topic = new_topic()
    topics.append(topic)
    inbox = BulkInbox()
    if PubSubFeature.BULK_SUBSCRIBE not in row.features:
        with pytest.raises(UnsupportedError) as refused:
            await pubsub.bulk_subscribe(topic, inbox, {"consumerID": APP_ID}, BULK)
        assert refused.value.feature == PubSubFeature.BULK_SUBSCRIBE
        return
    sub = await pubsub.bulk_subscribe(topic, inbox, {"consumerID": APP_ID}, BULK)
    try:
        for i in range(25):
            await pubsub.publish(topic, b"n%d" % i, {})
        await inbox.wait(lambda: len(inbox.seen) == 25)
        assert inbox.seen == Counter({b"n%d" % i: 1 for i in range(25)})
        sizes = [len(batch) for batch in inbox.batches]
        assert max(sizes) <= BULK.max_messages and max(sizes) > 1, sizes
    finally:
        await sub.close()


async def test_bulk_subscribe_batches_on_every_component(pubsub: PubSub, topics: list[str]) -> None:
    """Natively or gathered from one-by-one messages: batches of at most maxMessagesCount, one
    sent once its window passed even when not full."""
    topic = new_topic()
    topics.append(topic)
    inbox = BulkInbox()
    sub = await subscribe_bulk(pubsub, topic, inbox, {"consumerID": APP_ID}, BULK, max_concurrency=4)
    try:
        for i in range(23):
            await pubsub.publish(topic, b"m%d" % i, {})
        await inbox.wait(lambda: len(inbox.seen) == 23)
        assert inbox.seen == Counter({b"m%d" % i: 1 for i in range(23)})
        sizes = [len(batch) for batch in inbox.batches]
        assert max(sizes) <= BULK.max_messages and max(sizes) > 1, sizes
        started = time.monotonic()
        await pubsub.publish(topic, b"alone", {})
        await inbox.wait(lambda: inbox.seen[b"alone"] == 1)
        assert time.monotonic() - started >= BULK.max_await * 0.9, "a lone message did not wait out the window"
        assert inbox.batches[-1][0].data == b"alone" and len(inbox.batches[-1]) == 1
    finally:
        await sub.close()


async def test_bulk_nack_redelivers_only_that_message(pubsub: PubSub, topics: list[str]) -> None:
    topic = new_topic()
    topics.append(topic)
    inbox = BulkInbox(nack_once=frozenset({b"m3", b"m7"}))
    sub = await subscribe_bulk(pubsub, topic, inbox, {"consumerID": APP_ID}, BULK, max_concurrency=4)
    try:
        for i in range(10):
            await pubsub.publish(topic, b"m%d" % i, {})
        await inbox.wait(lambda: inbox.seen[b"m3"] == 2 and inbox.seen[b"m7"] == 2)
        # What was acked stays acked: a marker published after the redeliveries arrives with no
        # other message coming again before it.
        await pubsub.publish(topic, b"marker", {})
        await inbox.wait(lambda: inbox.seen[b"marker"] == 1)
        expected = {b"m%d" % i: 2 if i in (3, 7) else 1 for i in range(10)}
        assert inbox.seen == Counter({**expected, b"marker": 1})
    finally:
        await sub.close()
