"""The building blocks as a function reaches them: each host call is one call of the block's
core (the same code path as the gRPC APIs'), and a core's `Problem` is told to the guest as
the WasmResult of this entry point's answers table."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from layotto.api.answers import AnswerBook
from layotto.components.bindings.base import InvokeRequest as BindingRequest
from layotto.components.state.base import DeleteRequest, GetRequest, SetRequest
from layotto.core.bindings import BindingsCore
from layotto.core.configuration import ConfigurationCore
from layotto.core.lock import LockCore
from layotto.core.problems import Problem
from layotto.core.pubsub import PublishStyle, PubSubCore
from layotto.core.secrets import SecretsCore
from layotto.core.sequencer import SequencerCore
from layotto.core.state import StateCore
from layotto.errors import LayottoError
from layotto.observability import tracing
from layotto.runtime.cores import (
    bindings_core,
    configuration_core,
    lock_core,
    pubsub_core,
    secrets_core,
    sequencer_core,
    state_core,
)
from layotto.runtime.runtime import Runtime
from layotto.wasm.abi import WasmResult, encode_pairs
from layotto.wasm.answers import Answer, result_of

__all__ = ["Blocks", "InvokeService"]

log = logging.getLogger("layotto.wasm")

#: Function-to-function (or app) invocation: (id, method, param) -> the answer's bytes.
InvokeService = Callable[[str, str, bytes], Awaitable[bytes]]


@dataclass(frozen=True, kw_only=True)
class Blocks:
    """One method per host call over the blocks; `answered` turns a call into (result, value)."""

    state: StateCore
    pubsub: PubSubCore
    sequencer: SequencerCore
    lock: LockCore
    configuration: ConfigurationCore
    secrets: SecretsCore
    bindings: BindingsCore
    #: WasmResult (or rule) by problem kind, every block's.
    answers: Mapping[Enum, Answer]
    invoke: InvokeService

    @classmethod
    def of(cls, rt: Runtime, book: AnswerBook[Answer], invoke: InvokeService) -> Blocks:
        """The cores of the started runtime, built as the gRPC APIs build theirs, with this
        entry point's checks."""
        sections = ("state", "pubsub", "sequencer", "lock", "configuration", "secrets", "bindings")
        return cls(
            state=state_core(rt, book.checks("state")),
            pubsub=pubsub_core(rt, book.checks("pubsub"), PublishStyle()),
            sequencer=sequencer_core(rt),
            lock=lock_core(rt, book.checks("lock")),
            configuration=configuration_core(rt),
            secrets=secrets_core(rt),
            bindings=bindings_core(rt, book.checks("bindings")),
            answers={kind: answer for block in sections for kind, answer in book[block].items()},
            invoke=invoke,
        )

    async def answered(self, call: Awaitable[Any]) -> tuple[WasmResult, Any]:
        try:
            return WasmResult.OK, await call
        except Problem as problem:
            log.debug("a function's host call was refused: %s", problem)
            return result_of(self.answers, problem), None
        except LayottoError as exc:
            log.warning("a function's host call failed: %s", exc)
            return WasmResult.INTERNAL_FAILURE, None

    async def get_state(self, store: str, key: str) -> bytes:
        """A missing key is no bytes, as upstream answers it."""
        found = await self.state.get(store, GetRequest(key))
        return found.data if found is not None else b""

    async def save_state(self, store: str, key: str, value: bytes) -> None:
        await self.state.save(store, [SetRequest(key, value)])

    async def delete_state(self, store: str, key: str) -> None:
        await self.state.delete(store, DeleteRequest(key))

    async def publish_event(self, pubsub: str, topic: str, data: bytes, content_type: str) -> None:
        await self.pubsub.publish(pubsub, topic, data, content_type, {}, tracing.current_traceparent())

    async def next_id(self, store: str, key: str) -> int:
        return await self.sequencer.next_id(store, key, False, {})

    async def try_lock(self, store: str, resource: str, owner: str, expire: int) -> int:
        return int(await self.lock.try_lock(store, resource, owner, expire))

    async def unlock(self, store: str, resource: str, owner: str) -> int:
        return int(await self.lock.unlock(store, resource, owner))

    async def get_configuration(self, store: str, key: str) -> bytes:
        """The item's content in this app's default group and label; a missing key is no bytes."""
        core = self.configuration
        items = await core.get(store, core.scope(core.store(store), "", "", "", [key], {}))
        return next((item.content.encode() for item in items if item.key == key), b"")

    async def get_secret(self, store: str, key: str) -> bytes:
        """The secret's fields as a header map (the ABI's pairs encoding)."""
        return encode_pairs(sorted((await self.secrets.get(store, key, {})).items()))

    async def invoke_binding(self, name: str, operation: str, data: bytes) -> bytes:
        return (await self.bindings.invoke(name, BindingRequest(operation, data))).data

    async def invoke_service(self, app_id: str, method: str, param: bytes) -> bytes:
        return await self.invoke(app_id, method, param)
