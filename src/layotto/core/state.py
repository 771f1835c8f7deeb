"""The State block: store lookup, key layout and checks, calls to the store.

Keys are stored as `<prefix><app key>`, the prefix coming from the store's `keyPrefix`
strategy (worked out once, when the sidecar is wired), so every API reads and writes the same
data. Requests arrive as the component's own request types carrying the app's key; the core
checks the key and puts the prefix before it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from layotto.components.keyprefix import SEPARATOR, key_prefix
from layotto.components.state import base as state
from layotto.core.cloudevents import parse_json
from layotto.core.problems import Checks, Problem, guarded, named
from layotto.errors import ComponentError, ETagInvalidError

__all__ = ["DELETE", "UPSERT", "BoundStore", "StateCore", "StateProblem", "bind_stores", "etag_of"]

UPSERT = "upsert"
DELETE = "delete"


class StateProblem(Enum):
    NO_STORES = "no state store is configured"
    STORE_NOT_FOUND = "state store not found"  # facts: store
    KEY_HAS_SEPARATOR = "key contains the separator"  # facts: key, separator
    KEY_EMPTY = "key is empty"  # facts: store
    NO_TRANSACTIONS = "store has no transactions"  # facts: store
    BAD_OPERATION = "unknown transaction operation"  # facts: operation
    QUERY_UNSUPPORTED = "store has no query"  # facts: store
    QUERY_FAILED = "query failed"  # facts: store; cause: a malformed query or the store's error
    GET_FAILED = "get failed"  # facts: store, key
    BULK_GET_FAILED = "bulk get failed"  # facts: store
    SAVE_FAILED = "save failed"  # facts: store
    DELETE_FAILED = "delete failed"  # facts: store, key
    BULK_DELETE_FAILED = "bulk delete failed"  # facts: store
    TRANSACTION_FAILED = "transaction failed"  # facts: store
    BAD_TTL = "ttlInSeconds is not an integer"  # facts: store, ttl (its repr)
    TTL_OUT_OF_RANGE = "ttlInSeconds is more than the store keeps"  # facts: store, ttl, limit


def etag_of(has: bool, value: str, concurrency: str) -> str | None:
    """The etag a store must check, or None.

    As upstream's stores read it: last-write ignores the etag, and "" or "0" mean "none"
    (Layotto's JS SDK always sends "0" when the app gave no etag). Here, not in an API, because
    the runtime reads etags too (the states of an app's reply to an input binding event).
    """
    if not has or concurrency == state.LAST_WRITE or value in ("", "0"):
        return None
    return value


@dataclass(frozen=True, slots=True)
class BoundStore:
    """A state store with the key prefix of its `keyPrefix` strategy."""

    name: str
    store: state.StateStore
    prefix: str


def bind_stores(
    stores: Mapping[str, state.StateStore], strategies: Mapping[str, str], app_id: str
) -> dict[str, BoundStore]:
    """name -> bound store; `strategies` holds each store's `keyPrefix` metadata (may be absent)."""
    return {
        name: BoundStore(name, store, key_prefix(strategies.get(name, ""), name, app_id))
        for name, store in stores.items()
    }


class StateCore:
    """State for one API: built with the `Checks` that API makes."""

    def __init__(self, stores: Mapping[str, BoundStore], checks: Checks) -> None:
        self._stores = stores
        self._checks = checks

    def bound(self, name: str) -> BoundStore:
        return named(self._stores, name, StateProblem.STORE_NOT_FOUND, StateProblem.NO_STORES, store=name)

    def _key(self, bound: BoundStore, key: str) -> str:
        if not key or SEPARATOR in key:
            found = []
            if SEPARATOR in key:
                found.append(Problem(StateProblem.KEY_HAS_SEPARATOR, key=key, separator=SEPARATOR))
            if not key:
                found.append(Problem(StateProblem.KEY_EMPTY, store=bound.name))
            self._checks.refuse(found)
        return bound.prefix + key

    def _prefixed(self, bound: BoundStore, requests: Sequence[state.GetRequest | state.Operation]) -> None:
        for request in requests:
            request.key = self._key(bound, request.key)

    @staticmethod
    def _checked(bound: BoundStore, requests: Sequence[state.Operation], failed: StateProblem, **facts: Any) -> None:
        """Refuse the call before the store sees any of `requests` when one's etag is not of the
        store's format or a save's TTL is not one it keeps: a call that fails changes nothing,
        on every store (a store that checked them itself could fail half way through a bulk
        call, or after a first write). A malformed etag is answered as upstream answers the
        store's ETagInvalid error: the operation's `failed` problem, with it as the cause."""
        store = bound.store
        etags = state.StateFeature.ETAG in store.features
        limit = store.max_ttl_seconds()
        for request in requests:
            if request.etag and etags:
                try:
                    store.check_etag(request.etag)
                except ETagInvalidError as exc:
                    raise Problem(failed, exc, store=bound.name, **facts) from None
            if isinstance(request, state.SetRequest):
                try:
                    state.ttl_seconds(request.metadata, limit)
                except state.TtlError as exc:
                    if exc.limit is None:
                        raise Problem(StateProblem.BAD_TTL, store=bound.name, ttl=repr(exc.shown)) from None
                    raise Problem(
                        StateProblem.TTL_OUT_OF_RANGE, store=bound.name, ttl=exc.shown, limit=exc.limit
                    ) from None

    async def get(self, store_name: str, request: state.GetRequest) -> state.GetResponse | None:
        bound = self.bound(store_name)
        key = request.key
        request.key = self._key(bound, key)
        try:
            return await bound.store.get(request)
        except ComponentError as exc:
            raise Problem(StateProblem.GET_FAILED, exc, store=store_name, key=key) from exc

    async def bulk_get(
        self, store_name: str, requests: Sequence[state.GetRequest], parallelism: int
    ) -> list[state.BulkGetItem]:
        """One item per request, in order (an item's `key` is the stored key)."""
        bound = self.bound(store_name)
        self._prefixed(bound, requests)
        try:
            return await bound.store.bulk_get(requests, parallelism)
        except ComponentError as exc:
            raise Problem(StateProblem.BULK_GET_FAILED, exc, store=store_name) from exc

    async def save(self, store_name: str, requests: Sequence[state.SetRequest]) -> None:
        bound = self.bound(store_name)
        self._prefixed(bound, requests)
        if not requests:
            return
        self._checked(bound, requests, StateProblem.SAVE_FAILED)
        try:
            if len(requests) == 1:
                await bound.store.set(requests[0])
            else:
                await bound.store.bulk_set(requests)
        except ComponentError as exc:
            raise Problem(StateProblem.SAVE_FAILED, exc, store=store_name) from exc

    async def delete(self, store_name: str, request: state.DeleteRequest) -> None:
        bound = self.bound(store_name)
        key = request.key
        request.key = self._key(bound, key)
        self._checked(bound, (request,), StateProblem.DELETE_FAILED, key=key)
        try:
            await bound.store.delete(request)
        except ComponentError as exc:
            raise Problem(StateProblem.DELETE_FAILED, exc, store=store_name, key=key) from exc

    async def bulk_delete(self, store_name: str, requests: Sequence[state.DeleteRequest]) -> None:
        bound = self.bound(store_name)
        self._prefixed(bound, requests)
        self._checked(bound, requests, StateProblem.BULK_DELETE_FAILED)
        try:
            await bound.store.bulk_delete(requests)
        except ComponentError as exc:
            raise Problem(StateProblem.BULK_DELETE_FAILED, exc, store=store_name) from exc

    def transactional(self, store_name: str) -> BoundStore:
        """The store `store_name`, if it runs transactions (an API may ask before it reads the
        operations, as daprd's HTTP API does)."""
        bound = self.bound(store_name)
        if state.StateFeature.TRANSACTIONAL not in bound.store.features:
            raise Problem(StateProblem.NO_TRANSACTIONS, store=store_name)
        return bound

    async def transact(
        self, store_name: str, operations: Sequence[tuple[str, state.Operation]], metadata: dict[str, str]
    ) -> None:
        """Run `operations` atomically; each is (operation type, request): an `UPSERT` carries a
        SetRequest, a `DELETE` a DeleteRequest, any other type is refused."""
        bound = self.transactional(store_name)
        requests: list[state.Operation] = []
        for kind, request in operations:
            known = (kind == UPSERT and isinstance(request, state.SetRequest)) or (
                kind == DELETE and isinstance(request, state.DeleteRequest)
            )
            if not known or not request.key or SEPARATOR in request.key:
                found = [] if known else [Problem(StateProblem.BAD_OPERATION, operation=kind)]
                try:
                    self._key(bound, request.key)
                except Problem as problem:
                    found.append(problem)
                self._checks.refuse(found)
            request.key = bound.prefix + request.key
            requests.append(request)
        self._checked(bound, requests, StateProblem.TRANSACTION_FAILED)
        try:
            await bound.store.multi(requests, metadata)
        except ComponentError as exc:
            raise Problem(StateProblem.TRANSACTION_FAILED, exc, store=store_name) from exc

    async def query(self, store_name: str, query: str, metadata: dict[str, str]) -> state.QueryResponse:
        """The items matching `query` (Dapr's JSON query document), keyed by the app's keys."""
        bound = self.bound(store_name)
        if state.StateFeature.QUERY not in bound.store.features:
            raise Problem(StateProblem.QUERY_UNSUPPORTED, store=store_name)
        try:
            # Bounded: the store walks the document recursively, as json.loads does.
            document = parse_json(query)
        except ValueError as exc:
            raise Problem(StateProblem.QUERY_FAILED, exc, store=store_name) from exc
        if not isinstance(document, dict):
            reason = ValueError("the query must be a JSON object")
            raise Problem(StateProblem.QUERY_FAILED, reason, store=store_name)
        request = state.QueryRequest(document, metadata, bound.prefix)
        found = await guarded(bound.store.query(request), StateProblem.QUERY_FAILED, store=store_name)
        for item in found.results:
            item.key = item.key.removeprefix(bound.prefix)
        return found
