"""The configuration API of both gRPC APIs on the in-memory configuration store. Dapr's has no
save, delete, group or label: it reads the sidecar app's items under the default group and
label, where the Layotto API keeps items saved without them. Subscriptions: Layotto's bidi
stream (the in-memory store sends the current values first), Dapr's server stream whose first
message carries only the subscription id."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import grpc

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as lpb
from tests.api.clients import DAPR, LAYOTTO, Api, DaprApi, LayottoApi, dconfig, failure
from tests.api.conftest import APP_ID, CONFIG

C = grpc.StatusCode
WITHIN = 5.0


def new_key() -> str:
    return f"cfg-{uuid.uuid4().hex[:12]}"


async def save(layotto: LayottoApi, store: str, **items: str) -> None:
    entries = [lpb.ConfigurationItem(key=k, content=v) for k, v in items.items()]
    await layotto.stub.SaveConfiguration(lpb.SaveConfigurationRequest(store_name=store, items=entries))


async def test_get_what_the_layotto_api_saved(api: Api, channel: grpc.aio.Channel) -> None:
    layotto = LayottoApi(channel)
    first, second = new_key(), new_key()
    await save(layotto, CONFIG, **{first: "1", second: "2"})
    assert await api.get_configuration(CONFIG, [first, second, "missing"]) == {first: "1", second: "2"}
    await layotto.stub.DeleteConfiguration(lpb.DeleteConfigurationRequest(store_name=CONFIG, keys=[first]))
    assert await api.get_configuration(CONFIG, [first, second]) == {second: "2"}


async def test_unknown_store(api: Api) -> None:
    expected = {
        LAYOTTO: (C.UNKNOWN, "configure store [nope] don't support now"),
        DAPR: (C.INVALID_ARGUMENT, "configuration store nope not found"),
    }
    assert await failure(api.get_configuration("nope", ["k"])) == expected[api.name]


async def test_no_configuration_store(empty: Api) -> None:
    expected = {
        LAYOTTO: (C.UNKNOWN, f"configure store [{CONFIG}] don't support now"),
        DAPR: (C.FAILED_PRECONDITION, "configuration stores not configured"),
    }
    assert await failure(empty.get_configuration(CONFIG, ["k"])) == expected[empty.name]


async def test_layotto_save_and_delete_of_an_unknown_store(channel: grpc.aio.Channel) -> None:
    layotto = LayottoApi(channel)
    expected = (C.UNKNOWN, "configure store [nope] don't support now")
    assert await failure(save(layotto, "nope", k="v")) == expected
    call = layotto.stub.DeleteConfiguration(lpb.DeleteConfigurationRequest(store_name="nope", keys=["k"]))
    assert await failure(call) == expected


async def _requests(
    queue: asyncio.Queue[lpb.SubscribeConfigurationRequest | None],
) -> AsyncIterator[lpb.SubscribeConfigurationRequest]:
    while (item := await queue.get()) is not None:
        yield item


async def test_layotto_subscribe(channel: grpc.aio.Channel) -> None:
    layotto = LayottoApi(channel)
    key = new_key()
    await save(layotto, CONFIG, **{key: "before"})
    outgoing: asyncio.Queue[lpb.SubscribeConfigurationRequest | None] = asyncio.Queue()
    call = layotto.stub.SubscribeConfiguration(_requests(outgoing))
    try:
        await outgoing.put(lpb.SubscribeConfigurationRequest(store_name=CONFIG, keys=[key]))
        snapshot = await asyncio.wait_for(call.read(), WITHIN)
        assert (snapshot.store_name, snapshot.app_id) == (CONFIG, APP_ID)
        assert [(i.key, i.content, i.group, i.label) for i in snapshot.items] == [(key, "before", "default", "default")]
        await save(layotto, CONFIG, **{key: "after"})
        change = await asyncio.wait_for(call.read(), WITHIN)
        assert [(i.key, i.content) for i in change.items] == [(key, "after")]
        await outgoing.put(lpb.SubscribeConfigurationRequest(store_name="nope", keys=[key]))
        assert await failure(call.read()) == (C.UNKNOWN, "configure store [nope] don't support now")
    finally:
        call.cancel()


async def test_dapr_subscribe_and_unsubscribe(channel: grpc.aio.Channel) -> None:
    dapr, layotto = DaprApi(channel), LayottoApi(channel)
    key = new_key()
    stream = dapr.stub.SubscribeConfiguration(dconfig.SubscribeConfigurationRequest(store_name=CONFIG, keys=[key]))
    try:
        first = await asyncio.wait_for(stream.read(), WITHIN)
        assert first.id and not first.items, "the first message carries only the subscription id"
        # The in-memory store sends the current values first: none yet.
        await save(layotto, CONFIG, **{key: "v1"})
        change = await asyncio.wait_for(stream.read(), WITHIN)
        assert change.id == first.id
        assert {k: (i.value, i.version, dict(i.metadata)) for k, i in change.items.items()} == {key: ("v1", "", {})}

        unknown = dconfig.UnsubscribeConfigurationRequest(store_name=CONFIG, id="no-such-id")
        reply = await dapr.stub.UnsubscribeConfiguration(unknown)
        assert (reply.ok, reply.message) == (
            False,
            "failed to unsubscribe to configuration request no-such-id: not found",
        )
        wrong_store = dconfig.UnsubscribeConfigurationRequest(store_name="nope", id=first.id)
        assert await failure(dapr.stub.UnsubscribeConfiguration(wrong_store)) == (
            C.INVALID_ARGUMENT,
            "configuration store nope not found",
        )
        reply = await dapr.stub.UnsubscribeConfigurationAlpha1(
            dconfig.UnsubscribeConfigurationRequest(store_name=CONFIG, id=first.id)
        )
        assert (reply.ok, reply.message) == (True, "")
        assert await asyncio.wait_for(stream.read(), WITHIN) is grpc.aio.EOF
    finally:
        stream.cancel()

    unknown_store = dapr.stub.SubscribeConfiguration(dconfig.SubscribeConfigurationRequest(store_name="nope"))
    assert await failure(unknown_store.read()) == (C.INVALID_ARGUMENT, "configuration store nope not found")
