"""Sequencer API: GetNextId with upstream Layotto's checks, codes and messages, in its order."""

from __future__ import annotations

import grpc

from layotto.api.common import failure_code
from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.components.base import Metadata
from layotto.components.sequencer.base import SEPARATOR, Sequencer, prefix_strategy, stored_key
from layotto.errors import ComponentError
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb

_WEAK = pb.SequencerOptions.WEAK
_STRONG = pb.SequencerOptions.STRONG


def _failure_code(exc: ComponentError) -> grpc.StatusCode:
    # Upstream returns component errors as plain Go errors (code Unknown).
    return failure_code(exc, grpc.StatusCode.UNKNOWN)


class SequencerApi(ApiBase):
    _sequencers: dict[str, tuple[Sequencer, str]]

    async def start_api(self) -> None:
        self._sequencers = {}
        for name, component in self.rt.components("sequencer").items():
            if isinstance(component, Sequencer):
                spec = self.rt.spec("sequencer", name)
                strategy = prefix_strategy(Metadata(spec.metadata if spec else {}))
                self._sequencers[name] = (component, strategy)

    async def GetNextId(self, request: pb.GetNextIdRequest, context: Ctx) -> pb.GetNextIdResponse:
        stores: dict[str, tuple[Sequencer, str]] = getattr(self, "_sequencers", {})
        if not stores:
            await abort(context, grpc.StatusCode.FAILED_PRECONDITION, "Sequencer store is not configured")
        store_name, key = request.store_name, request.key
        if not key:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"Key is empty in sequencer store {store_name}")
        increment = request.options.increment if request.HasField("options") else _WEAK
        if increment not in (_WEAK, _STRONG):
            await abort(context, grpc.StatusCode.UNKNOWN, "Options.Increment is illegal.")
        if SEPARATOR in key:
            await abort(context, grpc.StatusCode.UNKNOWN, f"input key/keyPrefix '{key}' can't contain '{SEPARATOR}'")
        found = stores.get(store_name)
        if found is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"Sequencer store {store_name} not found")
        store, strategy = found
        full_key = stored_key(strategy, store_name, self.rt.app_id, key)
        try:
            next_id = await store.next_id(full_key, strong=increment == _STRONG, metadata=dict(request.metadata))
        except ComponentError as exc:
            await abort(context, _failure_code(exc), str(exc))
        return pb.GetNextIdResponse(next_id=next_id)
