"""The State block's interface, shaped after Dapr's state.Store.

The required surface is small (get/set/delete); bulk operations have a default that loops.
Optional powers are `StateFeature`s a store names in `features`; see that enum for what each
one promises and what a store without it does.
"""

from __future__ import annotations

import asyncio
import enum
import re
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from layotto.components.base import Component, Feature, Metadata, unsupported
from layotto.errors import ComponentError, ConfigError, ETagInvalidError, InvalidArgumentError

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


#: The longest `ttlInSeconds` a save may ask for: upstream's bound (components-contrib
#: state/utils.ParseTTL refuses more than math.MaxInt32), which Redis's EXPIRE, PostgreSQL's
#: integer interval and a float expiry time all hold.
MAX_TTL_SECONDS = 2**31 - 1
#: The largest version (etag) a built-in store keeps: a signed 64-bit column, or a Redis integer.
MAX_VERSION = 2**63 - 1

# ASCII only: int() also takes other scripts' digits (U+0661, ARABIC-INDIC ONE, is 1), '+',
# '_' and spaces, so a version written in any of them would match one it was never given for.
_DIGITS = re.compile(r"[0-9]+")
_INTEGER = re.compile(r"[+-]?[0-9]+")


def _shown(text: str, limit: int = 40) -> str:
    # A metadata value or an etag can be megabytes long; a message names its start only.
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def _bounded_int(text: str, limit: int) -> int | None:
    """`text` (an optionally signed ASCII integer) as an int, or None when it is over `limit`;
    never int() of a long digit string (slow, and refused past 4300 digits). A negative one too
    long to read is -1: any TTL <= 0 means the same, "never expire"."""
    digits = text.lstrip("+-").lstrip("0")
    if len(digits) > len(str(limit)):
        return None if not text.startswith("-") else -1
    value = int(text)
    return None if value > limit else value


class TtlError(InvalidArgumentError):
    """`ttlInSeconds` is not an integer (`limit` None), or is more than `limit`."""

    def __init__(self, raw: str, limit: int | None) -> None:
        self.shown = _shown(raw)
        self.limit = limit
        if limit is None:
            super().__init__(f"ttlInSeconds must be an integer, got {self.shown!r}")
        else:
            super().__init__(f"ttlInSeconds {self.shown} is out of range (at most {limit})")


def ttl_seconds(metadata: dict[str, str], limit: int = MAX_TTL_SECONDS) -> int | None:
    """The `ttlInSeconds` metadata: None when absent, <= 0 meaning "never expire"; TtlError when
    it is not an ASCII integer or is more than `limit`."""
    raw = metadata.get(TTL_METADATA)
    if raw is None or raw == "":
        return None
    if not _INTEGER.fullmatch(raw):
        raise TtlError(raw, None)
    value = _bounded_int(raw, limit)
    if value is None:
        raise TtlError(raw, limit)
    return value


def default_ttl(metadata: Metadata, limit: int = MAX_TTL_SECONDS) -> int | None:
    """A store's own `ttlInSeconds` (component metadata), for saves that name none; a bad one
    fails the configuration, not every save."""
    try:
        return ttl_seconds({TTL_METADATA: metadata.get_str(TTL_METADATA)}, limit)
    except TtlError as exc:
        raise ConfigError(str(exc), f"{metadata.where}.metadata.{TTL_METADATA}") from None


def is_version(etag: str) -> bool:
    """Whether `etag` is written as a version number (ASCII digits), whatever its size."""
    return _DIGITS.fullmatch(etag) is not None


def parse_version(etag: str) -> int:
    """A numeric etag (the version counter every built-in store uses): ASCII digits, at most
    MAX_VERSION; else ETagInvalidError."""
    if not is_version(etag):
        raise ETagInvalidError(f"invalid etag value: {_shown(etag)!r} is not a version number")
    version = _bounded_int(etag, MAX_VERSION)
    if version is None:
        raise ETagInvalidError(f"invalid etag value: {_shown(etag)} is out of range (at most {MAX_VERSION})")
    return version


class StateStore(Component):
    features: frozenset[StateFeature] = frozenset()

    def check_etag(self, etag: str) -> None:
        """Raise ETagInvalidError unless `etag` is of this store's format (StateFeature.ETAG).

        The State core asks before any write of a request reaches the store, so that a malformed
        etag changes nothing anywhere; a store whose etags are not version numbers overrides it.
        """
        parse_version(etag)

    def max_ttl_seconds(self) -> int:
        """The longest `ttlInSeconds` this store can keep (StateFeature.TTL); the State core
        refuses a longer one before the store sees the request."""
        return MAX_TTL_SECONDS

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
