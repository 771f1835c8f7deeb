"""What every API adapter does alike: answer a core's problem from the API's table (see
`layotto.api.answers`), classify component failures, read the caller's trace."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from enum import Enum
from typing import Any, Generic, NoReturn, TypeVar

import grpc

from layotto.core.problems import Checks, Problem
from layotto.errors import BackendTimeoutError, BackendUnavailableError

S = TypeVar("S")
R = TypeVar("R")
V = TypeVar("V")
K = TypeVar("K")

#: The servicer context of every unary and streaming handler.
Ctx = grpc.aio.ServicerContext[Any, Any]


async def abort(context: Ctx, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: context.abort raises")


def failure_code(exc: BaseException, default: grpc.StatusCode = grpc.StatusCode.INTERNAL) -> grpc.StatusCode:
    """The code for a component failure: `default` (each API's own), except that an unreachable
    backend is UNAVAILABLE and a backend timeout DEADLINE_EXCEEDED, so that clients can tell
    an outage from a bug and retry."""
    if isinstance(exc, BackendUnavailableError):
        return grpc.StatusCode.UNAVAILABLE
    if isinstance(exc, BackendTimeoutError):
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return default


def caller_traceparent(context: Ctx) -> str:
    """The caller's `traceparent` header ("" without one)."""
    for key, value in context.invocation_metadata() or ():
        if key == "traceparent" and isinstance(value, str):
            return value
    return ""


#: How an API answers one problem kind: a status code (or a function of the component's error
#: giving one) and a message template over the problem's facts, plus `{error}` for its cause.
Code = grpc.StatusCode | Callable[[BaseException], grpc.StatusCode]
Answers = Mapping[Enum, tuple[Code, str]]


def checks(table: Answers) -> Checks:
    """The checks of an API whose answers are `table`: its kinds, in the table's order."""
    return Checks(table)


def message_of(table: Answers, problem: Problem) -> tuple[grpc.StatusCode, str]:
    """The status code and message `table` gives `problem`."""
    answer = table.get(problem.kind)
    if answer is None:
        # A failure kind the table forgot: say what happened rather than hide it.
        return grpc.StatusCode.INTERNAL, str(problem)
    code, template = answer
    if not isinstance(code, grpc.StatusCode):
        code = code(problem.cause if problem.cause is not None else problem)
    return code, template.format(error=problem.cause, **problem.facts)


Handler = Callable[[S, Any, Ctx], Awaitable[R]]


class Answering(Generic[K]):
    """A servicer part over a block core `K`, whose handlers answer the core's problems from
    `answers` (see `answered`): the API's table for that block."""

    def __init__(self, core: K, answers: Answers) -> None:
        self.core = core
        self.answers = answers


A = TypeVar("A", bound=Answering[Any])


def answered(handler: Handler[A, R]) -> Handler[A, R]:
    """Decorate an RPC handler of an `Answering` servicer: a `Problem` its core raises ends the
    call with the servicer's answer to it."""

    @functools.wraps(handler)
    async def run(self: A, request: Any, context: Ctx) -> R:
        try:
            return await handler(self, request, context)
        except Problem as problem:
            await abort(context, *message_of(self.answers, problem))

    return run


class Parts(Generic[V]):
    """One API's servicer parts (one per block), each with its own state, bound onto an instance
    of the API's generated servicer class; the parts that need to can act at start and stop."""

    def __init__(self, servicer_class: type[V], parts: Sequence[object]) -> None:
        # The generated class declares every RPC; those no part binds answer UNIMPLEMENTED.
        servicer = servicer_class()
        rpcs = [name for name in vars(servicer_class) if name[:1].isupper()]
        for part in parts:
            for name in rpcs:
                handler = getattr(part, name, None)
                if handler is not None:
                    setattr(servicer, name, handler)
        self.servicer = servicer
        self.parts = parts

    async def start_api(self) -> None:
        for part in self.parts:
            start = getattr(part, "start_api", None)
            if start is not None:
                await start()

    async def stop_api(self) -> None:
        for part in self.parts:
            stop = getattr(part, "stop_api", None)
            if stop is not None:
                await stop()
