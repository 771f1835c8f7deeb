"""The cores check a component's declared features before an optional operation: a store
without the feature is refused with the core's own problem, a store with it is called."""

from __future__ import annotations

import json

import pytest

from layotto.components.lock import base as lock
from layotto.components.state import base as state
from layotto.core.lock import LockCore, LockProblem, bind_locks
from layotto.core.problems import Checks, Problem
from layotto.core.state import StateCore, StateProblem, bind_stores
from tests.support.fakes import FeaturelessStateStore

APP = "app"


class QueryableStore(FeaturelessStateStore):
    """Answers every query with all its items (stored keys) and the document it was given."""

    features = frozenset({state.StateFeature.QUERY})

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[state.QueryRequest] = []

    async def query(self, request: state.QueryRequest) -> state.QueryResponse:
        self.asked.append(request)
        items = [state.QueryItem(k, v) for k, v in self._items.items() if k.startswith(request.key_prefix)]
        return state.QueryResponse(items, token="next")


class NoKeepAliveLock(lock.LockStore):
    async def try_lock(self, request: lock.TryLockRequest) -> bool:
        return True

    async def unlock(self, request: lock.UnlockRequest) -> lock.LockStatus:
        return lock.LockStatus.SUCCESS


def _state_core(store: state.StateStore) -> StateCore:
    return StateCore(bind_stores({"s": store}, {"s": "appid"}, APP), Checks(StateProblem))


async def test_a_store_without_query_is_refused_before_the_query_is_read() -> None:
    with pytest.raises(Problem) as refused:
        await _state_core(FeaturelessStateStore()).query("s", "not json", {})
    assert (refused.value.kind, refused.value.facts) == (StateProblem.QUERY_UNSUPPORTED, {"store": "s"})


async def test_a_queryable_store_gets_the_document_and_the_app_keys_come_back() -> None:
    store = QueryableStore()
    core = _state_core(store)
    await core.save("s", [state.SetRequest("k1", b"v1")])
    found = await core.query("s", json.dumps({"filter": {"EQ": {"a": 1}}}), {"m": "1"})
    asked = store.asked[0]
    assert asked.query == {"filter": {"EQ": {"a": 1}}} and asked.metadata == {"m": "1"}
    assert asked.key_prefix == f"{APP}||"
    assert [(i.key, i.data) for i in found.results] == [("k1", b"v1")]
    assert found.token == "next"


@pytest.mark.parametrize("query", ["{", "[1, 2]"])
async def test_a_malformed_query_is_a_query_failure_naming_the_store(query: str) -> None:
    with pytest.raises(Problem) as refused:
        await _state_core(QueryableStore()).query("s", query, {})
    assert refused.value.kind is StateProblem.QUERY_FAILED
    assert refused.value.facts == {"store": "s"} and refused.value.cause is not None


async def test_keep_alive_on_a_store_without_the_feature_is_refused() -> None:
    core = LockCore(bind_locks({"l": NoKeepAliveLock()}, {}), APP, Checks(LockProblem))
    assert await core.try_lock("l", "r", "o", 10)
    with pytest.raises(Problem) as refused:
        await core.keep_alive("l", "r", "o", 10)
    assert (refused.value.kind, refused.value.facts) == (LockProblem.KEEP_ALIVE_UNSUPPORTED, {"store": "l"})
