"""daprd's service invocation: `/v1.0/invoke/<app id>/method/<method>` with any verb, or any
path with a `dapr-app-id` header (the path is then the method), through the one invocation
engine (`layotto.runtime.invoke`) every API uses. It is also the fallback of every path no
other endpoint serves, as in daprd (so an unknown path answers "no app id").

The verb, the query string, the body, its content type and the headers go to the app; the
app's reply (body, content type, headers) comes back with 200. A failed invocation is daprd's
ERR_DIRECT_INVOKE: the engine reports failures, not the app's own HTTP status.
"""

from __future__ import annotations

import base64
import binascii
import posixpath
from collections.abc import Mapping
from urllib.parse import unquote_plus

from aiohttp import web

from layotto.api.dapr_http.answers import RequestProblem
from layotto.api.dapr_http.common import Part, Route, answered, raw_reply
from layotto.core.problems import Problem
from layotto.runtime.invoke import InvokeError, Invoker, InvokeRequest, call_headers

__all__ = ["InvokeApi", "target_of"]

APP_ID_HEADER = "dapr-app-id"
_INVOKE_PREFIX = "/v1.0/invoke/"
_METHOD = "/method/"


def _clean(path: str) -> str:
    """Go's path.Clean: no repeated slashes, no dot segments, no trailing slash."""
    cleaned = posixpath.normpath(path) if path else "."
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def target_of(path: str, headers: Mapping[str, str]) -> tuple[str, str]:
    """(app id, method) of an invocation, or ("", "") when it names no app, found as daprd
    finds them: the `dapr-app-id` header, Basic auth user `dapr-app-id`, then the path."""
    app_id = headers.get(APP_ID_HEADER, "")
    if app_id:
        return app_id, _clean(path).lstrip("/")
    auth = headers.get("Authorization", "")
    if auth.startswith("Basic "):
        try:
            user, sep, password = base64.b64decode(auth[len("Basic ") :]).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, sep, password = "", "", ""
        if sep and ":" not in password and user.lower() == APP_ID_HEADER:
            return password, _clean(path).lstrip("/")
    stripped = "/" + path.lstrip("/")
    if not stripped.startswith(_INVOKE_PREFIX):
        return "", ""
    rest = stripped[len(_INVOKE_PREFIX) :].lstrip("/")
    at = rest.find(_METHOD)
    if at <= 0:
        return "", ""
    method = _clean(rest[at + len(_METHOD) :])
    return unquote_plus(rest[:at]) or rest[:at], "" if method == "." else method


class InvokeApi(Part[Invoker]):
    def routes(self) -> list[Route]:
        # Any verb; the server also sends every path nothing else serves here.
        return [Route(("*",), "/v1.0/invoke/{target}/method/{method:.*}", self.invoke)]

    @answered
    async def invoke(self, request: web.Request) -> web.StreamResponse:
        app_id, method = target_of(request.path, request.headers)
        if not app_id:
            raise Problem(RequestProblem.NO_APP_ID)
        call = InvokeRequest(
            app_id=app_id,
            method=method,
            data=await request.read(),
            content_type=request.headers.get("Content-Type", ""),
            verb=request.method.upper(),
            querystring=request.rel_url.raw_query_string,
            # The app id header addressed this sidecar; it is not the app's to see.
            headers=[(k, v) for k, v in call_headers(request.headers.items()) if k != APP_ID_HEADER],
        )
        try:
            reply = await self.core.invoke(call)
        except InvokeError as exc:
            raise Problem(RequestProblem.INVOKE_FAILED, exc, app_id=app_id) from None
        return raw_reply(200, reply.data, reply.content_type or "application/octet-stream", reply.headers)
