"""Components that exist for tests only, registered under test-only type names.

`FeaturelessStateStore` is a state store with none of the optional StateFeatures: no built-in
store lacks them, and the APIs' answers to a store without one (e.g. a transaction on a store
that has none) must still be pinned.
"""

from __future__ import annotations

from layotto.components.state.base import (
    TTL_METADATA,
    DeleteRequest,
    GetRequest,
    GetResponse,
    SetRequest,
    StateStore,
)
from layotto.errors import UnsupportedError
from layotto.runtime.registry import ComponentRegistry

FEATURELESS_STATE = "test-featureless"


class FeaturelessStateStore(StateStore):
    """A dict; what it cannot honour (etags, TTLs) it refuses, as the contract asks."""

    def __init__(self) -> None:
        self._items: dict[str, bytes] = {}

    @staticmethod
    def _refuse(etag: str | None, metadata: dict[str, str]) -> None:
        if etag:
            raise UnsupportedError("etags are not supported by this store")
        if metadata.get(TTL_METADATA):
            raise UnsupportedError("ttlInSeconds is not supported by this store")

    async def get(self, request: GetRequest) -> GetResponse | None:
        data = self._items.get(request.key)
        return None if data is None else GetResponse(data)

    async def set(self, request: SetRequest) -> None:
        self._refuse(request.etag, request.metadata)
        self._items[request.key] = request.value

    async def delete(self, request: DeleteRequest) -> None:
        self._refuse(request.etag, {})
        self._items.pop(request.key, None)


def registry() -> ComponentRegistry:
    """The built-in types and these."""
    return ComponentRegistry({("state", FEATURELESS_STATE): FeaturelessStateStore})
