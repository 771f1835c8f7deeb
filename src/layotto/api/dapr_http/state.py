"""daprd's state endpoints over `layotto.core.state`: get, save, delete, bulk get, transactions
(and the query endpoint, which the core refuses).

Values arrive as JSON and are stored as daprd's stores keep them (json.Marshal of the decoded
value: a string is stored quoted), so an app reading them back through either Dapr API gets
what daprd would give it; the key layout is the core's, shared with the gRPC APIs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from layotto.api.dapr_http import common
from layotto.api.dapr_http.answers import RequestProblem
from layotto.components.state import base as state
from layotto.core.problems import Problem
from layotto.core.state import DELETE, UPSERT, StateCore, etag_of

__all__ = ["StateApi"]

ETAG_HEADER = "ETag"


def _etag(item: dict[str, Any], concurrency: str, where: str) -> str | None:
    value = common.field(item, "etag")
    if value is not None and not isinstance(value, str):
        raise common.BodyError(
            f"json: cannot unmarshal {common.kind_of(value)} into Go struct field {where}.etag of type string"
        )
    return etag_of(value is not None, value or "", concurrency)


def _options(item: dict[str, Any], where: str) -> tuple[str, str]:
    """(concurrency, consistency) of a state item's `options`."""
    options = common.field(item, "options")
    if options is None:
        return "", ""
    options = common.want_object(options, f"{where}.options")
    where = f"{where}.options"
    return common.text_field(options, "concurrency", where), common.text_field(options, "consistency", where)


def set_request(raw: Any, query: dict[str, str], where: str = "state.SetRequest") -> state.SetRequest:
    """A state item of a save body or an upsert; the query's metadata overrides the item's."""
    item = common.want_object(raw, where)
    concurrency, consistency = _options(item, where)
    return state.SetRequest(
        key=common.text_field(item, "key", where),
        value=common.stringify(common.field(item, "value")),
        etag=_etag(item, concurrency, where),
        metadata={**common.map_field(item, "metadata", where), **query},
        concurrency=concurrency,
        consistency=consistency,
    )


def delete_request(raw: Any, query: dict[str, str], where: str = "state.DeleteRequest") -> state.DeleteRequest:
    item = common.want_object(raw, where)
    concurrency, consistency = _options(item, where)
    return state.DeleteRequest(
        key=common.text_field(item, "key", where),
        etag=_etag(item, concurrency, where),
        metadata={**common.map_field(item, "metadata", where), **query},
        concurrency=concurrency,
        consistency=consistency,
    )


def _data(value: bytes) -> str:
    """A stored value inside a bulk reply: the JSON it holds (daprd embeds it raw); a value
    that is not JSON (stored through a gRPC API) goes as a JSON string of its text."""
    try:
        return common.go_json(json.loads(value))
    except ValueError:
        return common.go_json(value.decode("utf-8", errors="replace"))


class StateApi(common.Part[StateCore]):
    def routes(self) -> list[common.Route]:
        return [
            common.Route(("POST", "PUT"), "/v1.0/state/{store}/bulk", self.bulk_get),
            common.Route(("POST", "PUT"), "/v1.0/state/{store}/transaction", self.transaction),
            common.Route(("POST", "PUT"), "/v1.0-alpha1/state/{store}/query", self.query),
            common.Route(("GET",), "/v1.0/state/{store}/{key}", self.get),
            common.Route(("DELETE",), "/v1.0/state/{store}/{key}", self.delete),
            common.Route(("POST", "PUT"), "/v1.0/state/{store}", self.save),
        ]

    @common.answered
    async def get(self, request: web.Request) -> web.StreamResponse:
        store, key = request.match_info["store"], request.match_info["key"]
        found = await self.core.get(
            store, state.GetRequest(key, common.query_metadata(request), request.query.get("consistency", ""))
        )
        if found is None:
            return common.no_content()
        headers = common.metadata_headers(found.metadata)
        if found.etag is not None:
            headers.append((ETAG_HEADER, found.etag))
        return common.raw_reply(200, found.data, headers=headers)

    @common.answered
    async def delete(self, request: web.Request) -> web.StreamResponse:
        concurrency = request.query.get("concurrency", "")
        # A present If-Match, even empty, is an etag to check (as daprd reads it).
        etag = request.headers.get("If-Match")
        await self.core.delete(
            request.match_info["store"],
            state.DeleteRequest(
                key=request.match_info["key"],
                etag=etag_of(etag is not None, etag or "", concurrency),
                metadata=common.query_metadata(request),
                concurrency=concurrency,
                consistency=request.query.get("consistency", ""),
            ),
        )
        return common.no_content()

    @common.answered
    async def save(self, request: web.Request) -> web.StreamResponse:
        store, body = await _store_and_body(request, self.core.bound, RequestProblem.MALFORMED_STATES)
        query = common.query_metadata(request)
        try:
            items = [set_request(raw, query) for raw in common.want_list(body, "[]state.SetRequest")]
        except common.BodyError as exc:
            raise Problem(RequestProblem.MALFORMED_STATES, exc) from None
        if items:
            await self.core.save(store, items)
        return common.no_content()

    @common.answered
    async def bulk_get(self, request: web.Request) -> web.StreamResponse:
        store, body = await _store_and_body(request, self.core.bound, RequestProblem.MALFORMED_REQUEST)
        try:
            spec = common.want_object(body, "http.BulkGetRequest")
            keys = common.want_list(common.field(spec, "keys") or [], "[]string")
            if not all(isinstance(k, str) for k in keys):
                raise common.BodyError(
                    "json: cannot unmarshal number into Go struct field BulkGetRequest.keys of type string"
                )
            parallelism = common.int_field(spec, "parallelism", "BulkGetRequest")
            metadata = {**common.map_field(spec, "metadata", "BulkGetRequest"), **common.query_metadata(request)}
        except common.BodyError as exc:
            raise Problem(RequestProblem.MALFORMED_REQUEST, exc) from None
        if not keys:
            return common.json_reply([])
        results = await self.core.bulk_get(store, [state.GetRequest(k, dict(metadata)) for k in keys], parallelism)
        items = []
        for key, item in zip(keys, results, strict=True):
            # daprd's BulkGetResponse: key, data, etag, metadata, error, the empty ones left out.
            parts = [f'"key":{common.go_json(key)}']
            if item.error:
                parts.append(f'"error":{common.go_json(item.error)}')
            elif item.response is not None:
                if item.response.data:
                    parts.append(f'"data":{_data(item.response.data)}')
                if item.response.etag is not None:
                    parts.append(f'"etag":{common.go_json(item.response.etag)}')
                if item.response.metadata:
                    parts.append(f'"metadata":{common.go_json(item.response.metadata, decoded=True)}')
            items.append("{" + ",".join(parts) + "}")
        return common.raw_reply(200, ("[" + ",".join(items) + "]\n").encode())

    @common.answered
    async def transaction(self, request: web.Request) -> web.StreamResponse:
        # daprd asks whether the store runs transactions before it reads the operations.
        store, body = await _store_and_body(request, self.core.transactional, RequestProblem.MALFORMED_REQUEST)
        query = common.query_metadata(request)
        try:
            spec = common.want_object(body, "http.stateTransactionRequestBody")
            raw_ops = common.want_list(
                common.field(spec, "operations") or [], "[]http.stateTransactionRequestBodyOperation"
            )
            metadata = {**common.map_field(spec, "metadata", "stateTransactionRequestBody"), **query}
            operations: list[tuple[str, state.Operation]] = []
            for raw in raw_ops:
                op = common.want_object(raw, "http.stateTransactionRequestBodyOperation")
                kind = common.text_field(op, "operation", "stateTransactionRequestBodyOperation")
                body_of = common.field(op, "request") or {}
                if kind == UPSERT:
                    operations.append((kind, set_request(body_of, query)))
                elif kind == DELETE:
                    operations.append((kind, delete_request(body_of, query)))
                else:
                    # Any other type goes with what key it has, for the core to refuse.
                    operations.append((kind, delete_request(body_of if isinstance(body_of, dict) else {}, query)))
        except common.BodyError as exc:
            raise Problem(RequestProblem.MALFORMED_REQUEST, exc) from None
        if operations:
            await self.core.transact(store, operations, metadata)
        return common.no_content()

    @common.answered
    async def query(self, request: web.Request) -> web.StreamResponse:
        body = (await request.read()).decode("utf-8", errors="replace")
        found = await self.core.query(request.match_info["store"], body, common.query_metadata(request))
        if not found.results:
            return common.no_content()
        results = []
        for item in found.results:
            parts = [f'"key":{common.go_json(item.key)}', f'"data":{_data(item.data) if item.data else "null"}']
            if item.etag:
                parts.append(f'"etag":{common.go_json(item.etag)}')
            if item.error:
                parts.append(f'"error":{common.go_json(item.error)}')
            results.append("{" + ",".join(parts) + "}")
        reply = '{"results":[' + ",".join(results) + "]"
        if found.token:
            reply += f',"token":{common.go_json(found.token)}'
        if found.metadata:
            reply += f',"metadata":{common.go_json(found.metadata, decoded=True)}'
        return common.raw_reply(200, (reply + "}\n").encode())


async def _store_and_body(
    request: web.Request, check: Callable[[str], object], malformed: RequestProblem
) -> tuple[str, Any]:
    """The route's store, checked with `check` before the body is read (daprd finds the store
    first, so a wrong store name wins over a malformed body), and the JSON body."""
    store = request.match_info["store"]
    check(store)
    return store, await common.read_json(request, malformed)
