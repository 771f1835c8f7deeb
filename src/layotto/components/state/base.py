"""The State block's interface, shaped after Dapr's state.Store.

The required surface is small (get/set/delete); bulk operations have a default that loops.
Optional powers are `StateFeature`s a store names in `features`; see that enum for what each
one promises and what a store without it does.
"""

from __future__ import annotations

import asyncio
import enum
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from layotto.components.base import Component, Feature, unsupported
from layotto.errors import ComponentError, ETagInvalidError, InvalidArgumentError

FIRST_WRITE = "first-write"
LAST_WRITE = "last-write"
EVENTUAL = "eventual"
STRONG = "strong"


class StateFeature(Feature):
    """Optional powers of a state store: Dapr's state.Feature (ETAG, TRANSACTIONAL, TTL,
    QUERY_API). A store without a feature refuses its operation with UnsupportedError rather
    than ignoring part of a request."""

    #: Optimistic concurrency: `set`/`delete` with an etag fail with ETagMismatchError when the
    #: stored version differs (without it: UnsupportedError for a request carrying an etag).
    ETAG = enum.auto()
    #: `multi` applies a batch of sets and deletes atomically (without it: UnsupportedError).
    TRANSACTIONAL = enum.auto()
    #: `ttlInSeconds` metadata on `set` makes the key expire (without it: UnsupportedError).
    TTL = enum.auto()
    #: `query` runs Dapr's state query language (without it: UnsupportedError).
    QUERY = enum.auto()


TTL_METADATA = "ttlInSeconds"


@dataclass(slots=True)
class GetRequest:
    key: str
    metadata: dict[str, str] = field(default_factory=dict)
    consistency: str = ""


@dataclass(slots=True)
class GetResponse:
    data: bytes
    etag: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class WriteOptions:
    """What a save and a delete say besides the key (and value), by name."""

    #: None (or "") means no concurrency check, unless `concurrency` is first-write.
    etag: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    concurrency: str = ""
    consistency: str = ""


@dataclass(slots=True)
class SetRequest(WriteOptions):
    key: str
    value: bytes


@dataclass(slots=True)
class DeleteRequest(WriteOptions):
    key: str


@dataclass(slots=True)
class QueryRequest:
    """Dapr's state query: `query` is the JSON document (filter, sort, page)."""

    query: dict[str, Any]
    metadata: dict[str, str] = field(default_factory=dict)
    #: Only keys that start with this are the app's (its store's `keyPrefix` layout); results
    #: carry the stored key.
    key_prefix: str = ""


@dataclass(slots=True)
class QueryItem:
    key: str
    data: bytes
    etag: str | None = None
    error: str = ""


@dataclass(slots=True)
class QueryResponse:
    results: list[QueryItem]
    #: Where the next page starts ("" on the last page).
    token: str = ""
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class BulkGetItem:
    key: str
    response: GetResponse | None
    error: str = ""


Operation = SetRequest | DeleteRequest


def ttl_seconds(metadata: dict[str, str]) -> int | None:
    """The `ttlInSeconds` metadata: None when absent, <= 0 meaning "never expire"."""
    raw = metadata.get(TTL_METADATA)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgumentError(f"ttlInSeconds must be an integer, got {raw!r}") from None


def parse_version(etag: str) -> int:
    """A numeric etag (the version counter every built-in store uses), or ETagInvalidError."""
    try:
        return int(etag)
    except ValueError:
        raise ETagInvalidError(f"invalid etag value: {etag!r} is not a version number") from None


class StateStore(Component):
    features: frozenset[StateFeature] = frozenset()

    @abstractmethod
    async def get(self, request: GetRequest) -> GetResponse | None:
        """The stored value, or None when the key does not exist."""

    @abstractmethod
    async def set(self, request: SetRequest) -> None:
        """Store a value. Raise ETagMismatchError / ETagInvalidError on a failed check."""

    @abstractmethod
    async def delete(self, request: DeleteRequest) -> None:
        """Delete a key. A missing key with no etag is not an error."""

    async def bulk_get(self, requests: Sequence[GetRequest], parallelism: int = 0) -> list[BulkGetItem]:
        limit = asyncio.Semaphore(parallelism if parallelism > 0 else 64)

        async def one(req: GetRequest) -> BulkGetItem:
            async with limit:
                try:
                    return BulkGetItem(req.key, await self.get(req))
                except ComponentError as exc:
                    return BulkGetItem(req.key, None, str(exc))

        return list(await asyncio.gather(*(one(r) for r in requests)))

    async def bulk_set(self, requests: Sequence[SetRequest]) -> None:
        for req in requests:
            await self.set(req)

    async def bulk_delete(self, requests: Sequence[DeleteRequest]) -> None:
        for req in requests:
            await self.delete(req)

    async def multi(self, operations: Sequence[Operation], metadata: dict[str, str]) -> None:
        """Apply all operations atomically, or none (StateFeature.TRANSACTIONAL)."""
        raise unsupported(self, StateFeature.TRANSACTIONAL, "transactions")

    async def query(self, request: QueryRequest) -> QueryResponse:
        """The items matching a Dapr state query (StateFeature.QUERY)."""
        raise unsupported(self, StateFeature.QUERY, "queries")
