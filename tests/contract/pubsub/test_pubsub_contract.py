"""Every pub/sub component through its block interface (no gRPC, no app): delivery, redelivery
of a nack, and that the declared features are the component's: delayed publishing works where
DELAY is declared and is refused with UnsupportedError elsewhere."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import pytest

from layotto.components.base import Metadata
from layotto.components.delay_queue.base import DelayedMessage, scheduler_for
from layotto.components.pubsub.base import Message, PubSub, PubSubFeature
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
