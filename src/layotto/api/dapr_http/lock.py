"""daprd's distributed lock endpoints (v1.0-alpha1) over `layotto.core.lock`.

The bodies are the protos' JSON (`resourceId`, `lockOwner`, `expiryInSeconds`, or their
proto names), read as protojson reads them; the replies are `{"success": bool}` and
`{"status": n}` with the status as its number, as daprd writes them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from layotto.api.dapr_http.answers import RequestProblem
from layotto.api.dapr_http.common import BodyError, Part, Route, answered, decode, json_reply
from layotto.core.lock import LockCore
from layotto.core.problems import Problem

__all__ = ["TryLockApi", "UnlockApi"]


def _field(body: Mapping[str, Any], json_name: str, proto_name: str) -> Any:
    return body[json_name] if json_name in body else body.get(proto_name)


def _text(body: Mapping[str, Any], json_name: str, proto_name: str) -> str:
    value = _field(body, json_name, proto_name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BodyError(f"proto: invalid value for string field {json_name}: {value!r}")
    return value


def _int32(body: Mapping[str, Any], json_name: str, proto_name: str) -> int:
    value = _field(body, json_name, proto_name)
    if value is None:
        return 0
    # protojson takes an integer as a JSON number or a string of one.
    if isinstance(value, str) and value.lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not -(2**31) <= value < 2**31:
        raise BodyError(f"proto: invalid value for int32 field {json_name}: {value!r}")
    return value


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:
        return {}
    try:
        body = decode(raw, whole=True)
        if not isinstance(body, dict):
            raise BodyError("proto: syntax error: unexpected token, expected an object")
    except BodyError as exc:
        raise Problem(RequestProblem.MALFORMED_REQUEST, exc) from None
    return body


class TryLockApi(Part[LockCore]):
    def routes(self) -> list[Route]:
        return [Route(("POST",), "/v1.0-alpha1/lock/{store}", self.try_lock)]

    @answered
    async def try_lock(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        try:
            resource, owner = _text(body, "resourceId", "resource_id"), _text(body, "lockOwner", "lock_owner")
            expiry = _int32(body, "expiryInSeconds", "expiry_in_seconds")
        except BodyError as exc:
            raise Problem(RequestProblem.MALFORMED_REQUEST, exc) from None
        ok = await self.core.try_lock(request.match_info["store"], resource, owner, expiry)
        return json_reply({"success": ok})


class UnlockApi(Part[LockCore]):
    """Unlock, answered from its own table: daprd words its refusals apart from TryLock's."""

    def routes(self) -> list[Route]:
        return [Route(("POST",), "/v1.0-alpha1/unlock/{store}", self.unlock)]

    @answered
    async def unlock(self, request: web.Request) -> web.StreamResponse:
        body = await _body(request)
        try:
            resource, owner = _text(body, "resourceId", "resource_id"), _text(body, "lockOwner", "lock_owner")
        except BodyError as exc:
            raise Problem(RequestProblem.MALFORMED_REQUEST, exc) from None
        status = await self.core.unlock(request.match_info["store"], resource, owner)
        return json_reply({"status": int(status)})
