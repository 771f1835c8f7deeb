"""In-process state store: fast, per-sidecar, lost on restart. For tests and demos."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from layotto.components.state import base as state
from layotto.errors import ETagInvalidError, ETagMismatchError


@dataclass(slots=True)
class _Entry:
    data: bytes
    version: int
    expires_at: float | None


class InMemoryStateStore(state.StateStore):
    metadata_keys = ()
    features = frozenset({state.StateFeature.ETAG, state.StateFeature.TRANSACTIONAL, state.StateFeature.TTL})

    def __init__(self) -> None:
        self._items: dict[str, _Entry] = {}

    def _live(self, key: str) -> _Entry | None:
        entry = self._items.get(key)
        if entry is not None and entry.expires_at is not None and entry.expires_at <= time.monotonic():
            del self._items[key]
            return None
        return entry

    async def get(self, request: state.GetRequest) -> state.GetResponse | None:
        entry = self._live(request.key)
        return None if entry is None else state.GetResponse(entry.data, str(entry.version))

    def check_etag(self, etag: str) -> None:
        # This store's wording for a malformed etag since its first version: apps match on it.
        if not state.is_version(etag):
            raise ETagInvalidError(f"invalid etag {etag!r}")
        state.parse_version(etag)

    def _check(self, entry: _Entry | None, etag: str | None, concurrency: str) -> None:
        if etag:
            self.check_etag(etag)
            # A key that does not exist has no version an etag could match (docs/state.md).
            if entry is None or entry.version != state.parse_version(etag):
                raise ETagMismatchError("possible etag mismatch")
        elif concurrency == state.FIRST_WRITE and entry is not None:
            raise ETagMismatchError("first-write: the key exists and no etag was given")

    def _set(self, request: state.SetRequest) -> None:
        entry = self._live(request.key)
        self._check(entry, request.etag, request.concurrency)
        ttl = state.ttl_seconds(request.metadata, self.max_ttl_seconds())
        expires = time.monotonic() + ttl if ttl is not None and ttl > 0 else None
        self._items[request.key] = _Entry(request.value, (entry.version if entry else 0) + 1, expires)

    def _delete(self, request: state.DeleteRequest) -> None:
        entry = self._live(request.key)
        self._check(entry, request.etag, "")
        self._items.pop(request.key, None)

    async def set(self, request: state.SetRequest) -> None:
        self._set(request)

    async def delete(self, request: state.DeleteRequest) -> None:
        self._delete(request)

    async def multi(self, operations: Sequence[state.Operation], metadata: dict[str, str]) -> None:
        # Nothing awaits in between, so the batch is atomic with respect to other calls;
        # a failed check restores the snapshot so that no operation applies.
        snapshot = dict(self._items)
        try:
            for op in operations:
                if isinstance(op, state.SetRequest):
                    self._set(op)
                else:
                    self._delete(op)
        except BaseException:
            self._items = snapshot
            raise
