"""Every input binding through the block interface (`BindingFeature.INPUT`, `read(handler)`):
one row each in backends.INPUT_ROWS, the same tests for all.

An event sent to the backend reaches the handler; the handler's True acks it (a later reading
does not get it again), its False fails it (the backend gives it again, as the row's
`redelivery` says); a closed reading takes no more events (a later reading gets them); closing
the component closes its readings; the declared features are the row's.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings.base import Binding, BindingEvent, BindingFeature, OutputBinding, Reading
from layotto.errors import UnsupportedError
from layotto.runtime.registry import ComponentRegistry
from tests.contract.bindings.backends import INPUT_ROWS, InputRow, Redelivery
from tests.support.rows import params
from tests.support.services import POSTGRES_DSN, require

SERVICE = {"redis": "redis", "postgresql": "postgresql"}

#: Long enough for any backend here to hand over an event that is there.
EVENT_WAIT = 10.0


class Inbox:
    """A handler that keeps what it gets and answers from `verdicts` (then True)."""

    def __init__(self, *verdicts: bool) -> None:
        self.events: asyncio.Queue[BindingEvent] = asyncio.Queue()
        self.verdicts = list(verdicts)

    async def __call__(self, event: BindingEvent) -> bool:
        self.events.put_nowait(event)
        return self.verdicts.pop(0) if self.verdicts else True

    async def next(self) -> BindingEvent:
        return await asyncio.wait_for(self.events.get(), EVENT_WAIT)


@dataclass
class Under:
    """A component of an input row, made for one test (its names tagged with `tag`)."""

    row: InputRow
    tag: str
    component: Binding

    @property
    def metadata(self) -> dict[str, Any]:
        return self.row.meta(self.tag)

    async def make(self) -> Binding:
        """Another component of the same row and names."""
        component = await self.row.create(self.tag)
        assert isinstance(component, Binding)
        return component

    async def send(self, data: bytes, through: Binding | None = None) -> None:
        send = self.row.traits.send
        assert send is not None
        component = through or self.component
        assert isinstance(component, OutputBinding)
        await send(component, self.metadata, data)

    async def read(self, inbox: Inbox) -> Reading:
        return await self.component.read(inbox)


#: The rows the tests can send an event through (cron makes its own), and of those, the ones
#: whose backend gives a failed event again (postgres NOTIFY keeps nothing).
SENDING = [row for row in INPUT_ROWS if row.traits.send is not None]
REDELIVERING = [row for row in SENDING if row.traits.redelivery is not Redelivery.NONE]


@contextlib.asynccontextmanager
async def _under(row: InputRow) -> AsyncIterator[Under]:
    row.require()
    tag = uuid.uuid4().hex[:10]
    component = await row.create(tag)
    assert isinstance(component, Binding)
    try:
        yield Under(row, tag, component)
    finally:
        await component.close()
        if row.cleanup is not None:
            await row.cleanup(row.meta(tag))


@pytest.fixture(params=params(INPUT_ROWS))
async def under(request: pytest.FixtureRequest) -> AsyncIterator[Under]:
    async with _under(request.param) as it:
        yield it


@pytest.fixture(params=params(SENDING))
async def sending(request: pytest.FixtureRequest) -> AsyncIterator[Under]:
    async with _under(request.param) as it:
        yield it


@pytest.fixture(params=params(REDELIVERING))
async def redelivering(request: pytest.FixtureRequest) -> AsyncIterator[Under]:
    async with _under(request.param) as it:
        yield it


async def test_declares_input(under: Under) -> None:
    assert under.component.features == under.row.features
    assert BindingFeature.INPUT in under.component.features


async def test_an_event_reaches_the_handler_with_its_data_and_metadata(under: Under) -> None:
    inbox = Inbox()
    reading = await under.read(inbox)
    try:
        payload = b'{"order": 42, "note": "caf\\u00e9"}'
        if under.row.traits.send is not None:
            await under.send(payload)
        event = await inbox.next()
        assert event.data == (payload if under.row.traits.send is not None else b"")
        assert under.row.traits.metadata_keys <= event.metadata.keys()
        assert all(isinstance(v, str) for v in event.metadata.values())
    finally:
        await reading.close()


async def test_an_acked_event_is_gone(sending: Under) -> None:
    under = sending
    inbox = Inbox()
    reading = await under.read(inbox)
    await under.send(b"first")
    assert (await inbox.next()).data == b"first"
    await reading.close()
    # A new reading gets what comes next, not the acked event again.
    later = Inbox()
    reading = await under.read(later)
    try:
        await under.send(b"second")
        assert (await later.next()).data == b"second"
        assert later.events.empty()
    finally:
        await reading.close()


async def test_a_failed_event_is_given_again_where_the_backend_can(redelivering: Under) -> None:
    under = redelivering
    redelivery = under.row.traits.redelivery
    inbox = Inbox(False)
    reading = await under.read(inbox)
    await under.send(b"try again")
    assert (await inbox.next()).data == b"try again"
    if redelivery is Redelivery.NEXT_READING:
        await reading.close()
        reading = await under.read(inbox)
    try:
        assert (await inbox.next()).data == b"try again"
    finally:
        await reading.close()


async def test_a_closed_reading_takes_no_more_events(under: Under) -> None:
    inbox = Inbox()
    reading = await under.read(inbox)
    if under.row.traits.send is None:
        await inbox.next()  # it ticks; then, closed, it does not
        await reading.close()
        await reading.close()  # closing twice is harmless
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(inbox.events.get(), 1.2)
        return
    await reading.close()
    await reading.close()
    await under.send(b"for the next reading")
    later = Inbox()
    reading = await under.read(later)
    try:
        if under.row.traits.redelivery is Redelivery.NONE:
            # Nobody listened when it was sent: it is lost (the backend keeps nothing).
            await under.send(b"while reading")
            assert (await later.next()).data == b"while reading"
        else:
            assert (await later.next()).data == b"for the next reading"
        assert inbox.events.empty()
    finally:
        await reading.close()


async def test_closing_the_component_closes_its_readings(under: Under) -> None:
    inbox = Inbox()
    await under.read(inbox)
    await under.component.close()
    if under.row.traits.send is None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(inbox.events.get(), 1.2)
        return
    # The component is closed: the event goes in through a fresh one, and stays for later.
    fresh = await under.make()
    try:
        await under.send(b"after close", through=fresh)
        later = Inbox()
        reading = await fresh.read(later)
        if under.row.traits.redelivery is Redelivery.NONE:
            await under.send(b"while reading", through=fresh)
            assert (await later.next()).data == b"while reading"
        else:
            assert (await later.next()).data == b"after close"
        await reading.close()
        assert inbox.events.empty()
    finally:
        await fresh.close()


@pytest.mark.parametrize(
    ("type_name", "metadata"),
    [
        ("redis", {"redisHost": "127.0.0.1:6379"}),
        ("postgresql", {"url": POSTGRES_DSN}),
    ],
)
async def test_without_input_metadata_the_binding_is_output_only(type_name: str, metadata: dict[str, str]) -> None:
    require(SERVICE[type_name])
    made = ComponentRegistry().create("bindings", type_name)
    assert BindingFeature.INPUT in made.features  # the type can be an input ...
    await made.init(Metadata(metadata, where="test"), ComponentContext("b", "bindings", "app"))
    try:  # ... this one, configured without one, is not
        assert made.features == frozenset()
        assert isinstance(made, Binding)
        with pytest.raises(UnsupportedError):
            await made.read(Inbox())
    finally:
        await made.close()
