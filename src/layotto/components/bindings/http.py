"""Dapr's `bindings.http` output binding: each operation is one HTTP request to `url`."""

from __future__ import annotations

import asyncio

import aiohttp
import yarl

from layotto.components.base import ComponentContext, Metadata
from layotto.components.bindings.base import InvokeRequest, InvokeResponse, OutputBinding
from layotto.errors import BackendTimeoutError, BackendUnavailableError, ComponentError, InvalidArgumentError

_OPERATIONS = ["create", "get", "head", "post", "put", "patch", "delete", "options", "trace"]
_WITH_BODY = {"POST", "PUT", "PATCH"}
_JSON = "application/json; charset=utf-8"


def go_header_name(name: str) -> str:
    """Go's canonical MIME header key ("content-type" -> "Content-Type"): upstream's reply keys."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


def _status_text(status: int, reason: str | None) -> str:
    # Go's http.Response.Status is "<code> <reason>", e.g. "404 Not Found".
    return f"{status} {reason}" if reason else str(status)


class HttpBinding(OutputBinding):
    metadata_keys = ("url", "dialTimeout", "responseTimeout", "maxConnections")
    _session: aiohttp.ClientSession | None = None

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self.url = metadata.required("url")
        # Upstream's client: 5 s to connect, 10 s for the whole exchange.
        self._dial_timeout = metadata.get_duration("dialTimeout", 5.0)
        timeout = aiohttp.ClientTimeout(
            total=metadata.get_duration("responseTimeout", 10.0), sock_connect=self._dial_timeout
        )
        connector = aiohttp.TCPConnector(limit=metadata.get_int("maxConnections", 100))
        self._session = aiohttp.ClientSession(timeout=timeout, connector=connector, auto_decompress=True)

    async def ping(self) -> None:
        """The target accepts TCP connections. No HTTP request: a readiness probe must not
        call the target's endpoints, which may have effects."""
        url = yarl.URL(self.url)
        if not url.host:
            return
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            async with asyncio.timeout(self._dial_timeout):
                _, writer = await asyncio.open_connection(url.host, port)
        except (OSError, TimeoutError) as exc:
            raise BackendUnavailableError(f"http binding target {url.host}:{port} is unreachable: {exc!r}") from exc
        writer.close()

    def operations(self) -> list[str]:
        return list(_OPERATIONS)

    def _target(self, metadata: dict[str, str]) -> str:
        if "path" not in metadata:
            return self.url
        path = metadata["path"]
        url = f"{self.url.rstrip('/')}/{path.lstrip('/')}"
        # As upstream: refuse any path that could climb out of the configured URL.
        if ".." in url:
            raise InvalidArgumentError(f"invalid path: {path}")
        return url

    async def invoke(self, request: InvokeRequest) -> InvokeResponse:
        assert self._session is not None, "init() was not called"
        url = self._target(request.metadata)
        method = request.operation.upper()
        if method == "CREATE":
            method = "POST"
        if method not in {op.upper() for op in _OPERATIONS}:
            raise InvalidArgumentError(f"invalid operation: {request.operation}")
        body = request.data if method in _WITH_BODY else None
        headers: dict[str, str] = {}
        if body is not None and "Content-Type" not in request.metadata:
            headers["Content-Type"] = _JSON
        if "Accept" not in request.metadata:
            headers["Accept"] = _JSON
        # Upstream's rule: metadata keys starting with a capital letter are request headers.
        for key, value in request.metadata.items():
            if key[:1].isupper():
                headers[key] = value
        try:
            async with self._session.request(method, url, data=body, headers=headers) as reply:
                data = await reply.read()
                status, reason = reply.status, reply.reason
                reply_headers: dict[str, list[str]] = {}
                for name, value in reply.headers.items():
                    reply_headers.setdefault(go_header_name(name), []).append(value)
        except aiohttp.ConnectionTimeoutError as exc:
            raise BackendUnavailableError(f'{method} "{url}": timeout connecting') from exc
        except TimeoutError as exc:
            raise BackendTimeoutError(f'{method} "{url}": timeout awaiting response') from exc
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise BackendUnavailableError(f'{method} "{url}": {exc or type(exc).__name__}') from exc
        except aiohttp.ClientError as exc:
            raise ComponentError(f'{method} "{url}": {exc}') from exc
        metadata = {name: ", ".join(values) for name, values in reply_headers.items()}
        metadata["statusCode"] = str(status)
        metadata["status"] = _status_text(status, reason)
        if status // 100 != 2:
            raise ComponentError(f"received status code {status}")
        return InvokeResponse(data=data, metadata=metadata)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
