"""What every part of Dapr's HTTP API does alike: daprd's responses (JSON as Go's encoding/json
writes it), its error bodies, reading request bodies as Go's decoder reads them, the
`metadata.*` query parameters, and answering a core's problem from the API's table."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Generic, TypeVar

from aiohttp import web

from layotto.api.dapr_http.answers import HttpAnswers, answer
from layotto.core import cloudevents
from layotto.core.gojson import go_json, stringify
from layotto.core.problems import Problem

__all__ = [
    "JSON",
    "BodyError",
    "Handler",
    "Part",
    "Route",
    "answered",
    "decode",
    "error_reply",
    "field",
    "go_json",
    "int_field",
    "json_reply",
    "kind_of",
    "map_field",
    "metadata_headers",
    "no_content",
    "query_metadata",
    "raw_reply",
    "read_json",
    "stringify",
    "text_field",
    "want_list",
    "want_object",
]

JSON = "application/json"
METADATA_PREFIX = "metadata."

K = TypeVar("K")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class BodyError(ValueError):
    """A request body Go's decoder would refuse; the message is what daprd reports."""


# ---- JSON as Go reads it (Go's writing is layotto.core.gojson) ----


def _reject_constant(name: str) -> Any:
    raise BodyError(f"invalid character '{name[0]}' looking for beginning of value")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode(body: bytes, *, whole: bool = False) -> Any:
    """The first JSON value of `body`, as Go's json.Decoder reads it (what follows is not read);
    `whole` for protojson, which reads all of it."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyError(f"invalid UTF-8 in request body at offset {exc.start}") from None
    stripped = text.lstrip()
    if not stripped:
        raise BodyError("EOF" if not whole else "unexpected end of JSON input")
    # The decoder recurses once per level: past the stack it would raise RecursionError.
    if cloudevents.nested_deeper_than(body, cloudevents.MAX_JSON_DEPTH):
        raise BodyError(f"the JSON is nested deeper than {cloudevents.MAX_JSON_DEPTH} levels")
    try:
        value, end = _DECODER.raw_decode(stripped)
    except json.JSONDecodeError as exc:
        raise BodyError(f"{exc.msg} at offset {exc.pos + len(text) - len(stripped)}") from None
    except RecursionError:
        raise BodyError(f"the JSON is nested deeper than {cloudevents.MAX_JSON_DEPTH} levels") from None
    if whole and stripped[end:].strip():
        raise BodyError(f"unexpected token after the JSON value at offset {end + len(text) - len(stripped)}")
    return value


def kind_of(value: Any) -> str:
    """A JSON value's kind, as Go's decoder names it in errors."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def field(obj: Mapping[str, Any], name: str) -> Any:
    """A field of a decoded object, matched as Go matches struct fields (case-insensitively)."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if key.lower() == lowered:
            return value
    return None


def want_object(value: Any, go_type: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BodyError(f"json: cannot unmarshal {kind_of(value)} into Go value of type {go_type}")
    return value


def want_list(value: Any, go_type: str) -> list[Any]:
    if not isinstance(value, list):
        raise BodyError(f"json: cannot unmarshal {kind_of(value)} into Go value of type {go_type}")
    return value


def _wrong(value: Any, where: str, go_type: str) -> BodyError:
    return BodyError(f"json: cannot unmarshal {kind_of(value)} into Go struct field {where} of type {go_type}")


def text_field(obj: Mapping[str, Any], name: str, where: str) -> str:
    value = field(obj, name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _wrong(value, f"{where}.{name}", "string")
    return value


def int_field(obj: Mapping[str, Any], name: str, where: str) -> int:
    value = field(obj, name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(value, f"{where}.{name}", "int")
    return value


def map_field(obj: Mapping[str, Any], name: str, where: str) -> dict[str, str]:
    value = field(obj, name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _wrong(value, f"{where}.{name}", "map[string]string")
    for item in value.values():
        if not isinstance(item, str):
            raise _wrong(item, f"{where}.{name}", "string")
    return dict(value)


async def read_json(request: web.Request, kind: Enum, **facts: object) -> Any:
    """The request's JSON body; one that cannot be read is the problem `kind`."""
    try:
        return decode(await request.read())
    except BodyError as exc:
        raise Problem(kind, exc, **facts) from None


def query_metadata(request: web.Request) -> dict[str, str]:
    """The `metadata.<key>` query parameters (the first value of each), as daprd reads them."""
    out: dict[str, str] = {}
    for key, value in request.query.items():
        if key.startswith(METADATA_PREFIX) and key[len(METADATA_PREFIX) :] not in out:
            out[key[len(METADATA_PREFIX) :]] = value
    return out


# ---- responses ----


def no_content() -> web.Response:
    return web.Response(status=204)


def raw_reply(
    status: int, body: bytes, content_type: str = JSON, headers: Iterable[tuple[str, str]] = ()
) -> web.Response:
    reply = web.Response(status=status, body=body)
    for key, value in headers:
        reply.headers.add(key, value)
    reply.headers["Content-Type"] = content_type or JSON
    return reply


def json_reply(value: Any, status: int = 200, *, decoded: bool = False) -> web.Response:
    """`value` as daprd's json.Encoder writes a response (with its trailing newline)."""
    return raw_reply(status, (go_json(value, decoded=decoded) + "\n").encode())


def error_reply(status: int, code: str, message: str) -> web.Response:
    """daprd's error body; with no error code, the plain text its http.Error writes."""
    if not code:
        reply = web.Response(status=status, body=(message + "\n").encode())
        reply.headers["Content-Type"] = "text/plain; charset=utf-8"
        reply.headers["X-Content-Type-Options"] = "nosniff"
        return reply
    return raw_reply(status, go_json({"errorCode": code, "message": message}).encode())


def metadata_headers(metadata: Mapping[str, object]) -> list[tuple[str, str]]:
    """A component's reply metadata as daprd sends it back: one `metadata.<key>` header each."""
    return [(METADATA_PREFIX + str(k), str(v)) for k, v in metadata.items()]


# ---- parts ----


@dataclass(frozen=True, slots=True)
class Route:
    methods: tuple[str, ...]
    path: str
    handler: Handler


class Part(Generic[K]):
    """The endpoints of one block over its core `K`, answering the core's problems (and the
    adapter's own) from `answers`: this API's table for that block."""

    def __init__(self, core: K, answers: HttpAnswers) -> None:
        self.core = core
        self.answers = answers

    def routes(self) -> list[Route]:
        raise NotImplementedError

    def refusal(self, problem: Problem) -> web.Response:
        return error_reply(*answer(self.answers, problem))

    async def stop(self) -> None:
        """Called once the server takes no more calls, before the components close."""


P = TypeVar("P", bound=Part[Any])


def answered(
    handler: Callable[[P, web.Request], Awaitable[web.StreamResponse]],
) -> Callable[[P, web.Request], Awaitable[web.StreamResponse]]:
    """Decorate an endpoint of a `Part`: a `Problem` ends the call with the part's answer to it."""

    @functools.wraps(handler)
    async def run(self: P, request: web.Request) -> web.StreamResponse:
        try:
            return await handler(self, request)
        except Problem as problem:
            return self.refusal(problem)

    return run
