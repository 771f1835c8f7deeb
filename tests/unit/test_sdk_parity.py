"""The SDK's sync and async clients expose the same API, modulo async.

Each public method of ``Client`` (and of the objects it hands out: lock contexts and
subscriptions) has a twin in the async flavour with the same parameters (names, kinds,
defaults, annotations) and return annotation, once ``Async...`` types are read as their
sync counterparts. A twin that does I/O is a coroutine (an async generator for a
generator); one that only hands out an async object (``lock``, ``subscribe``, ...) stays a
plain method.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Any

import layotto_sdk as sdk
import pytest

PAIRS = [
    (sdk.Client, sdk.AsyncClient),
    (sdk.LockContext, sdk.AsyncLockContext),
    (sdk.Subscription, sdk.AsyncSubscription),
    (sdk.ConfigurationSubscription, sdk.AsyncConfigurationSubscription),
]

#: The protocol methods that are public API though they are dunders: sync name -> async name.
DUNDERS = {"__enter__": "__aenter__", "__exit__": "__aexit__", "__iter__": "__aiter__", "__next__": "__anext__"}

#: (async class, method, parameter) where the async flavour deliberately accepts more.
WIDER_IN_ASYNC = {
    ("AsyncClient", "put_file", "data"): "also takes an async iterable of chunks",
}


def _sync_spelling(annotation: Any) -> str:
    """An annotation as the sync client would spell it."""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    text = re.sub(r"\bAsync(?=[A-Z])", "", text)  # AsyncClient, AsyncIterator, AsyncLockContext, ...
    return text.replace("grpc.aio.", "grpc.")


def _members(cls: type) -> dict[str, Any]:
    names = [n for n in dir(cls) if not n.startswith("_")] + [n for n in (*DUNDERS, *DUNDERS.values())]
    out = {}
    for name in names:
        value = inspect.getattr_static(cls, name, None)
        if inspect.isfunction(value):
            out[name] = value
    return out


def _kind_problem(name: str, sync_fn: Any, async_fn: Any) -> str | None:
    if inspect.iscoroutinefunction(sync_fn) or inspect.isasyncgenfunction(sync_fn):
        return f"{name}: its sync twin is async"
    if inspect.isgeneratorfunction(sync_fn):
        return None if inspect.isasyncgenfunction(async_fn) else f"{name}: a generator in sync, not an async generator"
    if inspect.iscoroutinefunction(async_fn) or inspect.isasyncgenfunction(async_fn):
        return None
    # A plain method is fine when all it does is hand out an async object.
    returns = async_fn.__annotations__.get("return", "")
    if isinstance(returns, str) and re.match(r"Async[A-Z]", returns):
        return None
    return f"{name}: neither a coroutine nor a method returning an Async* object"


def differences(sync_cls: type, async_cls: type, *, compare_init: bool = False) -> list[str]:
    """Every way ``async_cls`` is not ``sync_cls`` modulo async, as readable lines."""
    problems: list[str] = []
    sync_members, async_members = _members(sync_cls), _members(async_cls)
    expected = {DUNDERS.get(name, name): name for name in sync_members}  # async name -> sync name
    if compare_init:
        sync_members["__init__"] = sync_cls.__init__
        async_members["__init__"] = async_cls.__init__
        expected["__init__"] = "__init__"
    for async_name in sorted(set(async_members) - set(expected)):
        problems.append(f"{async_cls.__name__}.{async_name}: missing from {sync_cls.__name__}")
    for async_name, sync_name in sorted(expected.items()):
        where = f"{async_cls.__name__}.{async_name}"
        if async_name not in async_members:
            problems.append(f"{where}: missing (it is {sync_cls.__name__}.{sync_name})")
            continue
        sync_fn, async_fn = sync_members[sync_name], async_members[async_name]
        if async_name != "__init__":
            kind = _kind_problem(where, sync_fn, async_fn)
            if kind:
                problems.append(kind)
        problems += _signature_problems(where, inspect.signature(sync_fn), inspect.signature(async_fn), async_cls)
    return problems


def _signature_problems(where: str, sync_sig: inspect.Signature, async_sig: inspect.Signature, cls: type) -> list[str]:
    problems = []
    sync_params, async_params = list(sync_sig.parameters.values()), list(async_sig.parameters.values())
    if [p.name for p in sync_params] != [p.name for p in async_params]:
        return [f"{where}: parameters {[p.name for p in async_params]} != {[p.name for p in sync_params]}"]
    for s, a in zip(sync_params, async_params, strict=True):
        if s.kind != a.kind:
            problems.append(f"{where}({a.name}): {a.kind.description} != {s.kind.description}")
        if s.default != a.default:
            problems.append(f"{where}({a.name}): default {a.default!r} != {s.default!r}")
        if (cls.__name__, where.rsplit(".", 1)[1], a.name) in WIDER_IN_ASYNC:
            continue
        if _sync_spelling(s.annotation) != _sync_spelling(a.annotation):
            problems.append(f"{where}({a.name}): annotation {a.annotation!r} != {s.annotation!r}")
    if _sync_spelling(sync_sig.return_annotation) != _sync_spelling(async_sig.return_annotation):
        problems.append(f"{where}: returns {async_sig.return_annotation!r} != {sync_sig.return_annotation!r}")
    return problems


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=lambda c: c.__name__)
def test_same_public_api_modulo_async(sync_cls: type, async_cls: type) -> None:
    problems = differences(sync_cls, async_cls, compare_init=sync_cls is sdk.Client)
    assert not problems, f"{sync_cls.__name__} and {async_cls.__name__} differ:\n" + "\n".join(problems)


def test_the_clients_have_the_whole_api() -> None:
    # Guards the comparison itself: it must see the methods, not an empty list.
    names = set(_members(sdk.Client))
    assert {"get_state", "save_state", "lock", "subscribe", "get_file", "put_file", "close"} <= names
    assert len(names) > 30


def test_the_check_reports_differences() -> None:
    class Sync:
        def get(self, key: str, *, limit: float = 1.0) -> int: ...
        def gone(self) -> None: ...
        def stream(self) -> Iterator[bytes]:
            yield b""

        def __enter__(self) -> Sync: ...

    class AsyncSync:
        async def get(self, key: bytes, limit: float = 2.0) -> int: ...
        def stream(self) -> Iterator[bytes]:
            yield b""

        async def extra(self) -> None: ...
        async def __aenter__(self) -> AsyncSync: ...

    problems = "\n".join(differences(Sync, AsyncSync))
    assert "AsyncSync.extra: missing from Sync" in problems
    assert "AsyncSync.gone: missing (it is Sync.gone)" in problems
    assert "AsyncSync.get(key): annotation 'bytes' != 'str'" in problems
    assert "AsyncSync.get(limit): positional or keyword != keyword-only" in problems
    assert "AsyncSync.get(limit): default 2.0 != 1.0" in problems
    assert "AsyncSync.stream: a generator in sync, not an async generator" in problems
    assert "__aenter__" not in problems
