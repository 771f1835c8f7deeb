"""A state store served by a pluggable component (Dapr's StateStore service, with its
TransactionalStateStore and QueriableStateStore), mapped as daprd maps it
(dapr/dapr pkg/components/state/pluggable.go).

Keys arrive with the store's key prefix already applied by the State core, as daprd sends them.
The component's answers: FAILED_PRECONDITION to a write is an etag mismatch (ABORTED through the
APIs), INVALID_ARGUMENT to a write carrying an etag an invalid etag; a missing key is a reply
with neither data nor etag. Bulk calls a component does not implement are made one by one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import any_pb2

from layotto.components.base import ComponentContext, Metadata
from layotto.components.pluggable.connection import (
    INIT_TIMEOUT,
    PING_TIMEOUT,
    Connection,
    ErrorOf,
    features_of,
    properties,
)
from layotto.components.pluggable.discovery import QUERIABLE_STATE, STATE, TRANSACTIONAL_STATE
from layotto.components.state import base
from layotto.components.state.base import StateFeature
from layotto.errors import ETagInvalidError, ETagMismatchError, InvalidArgumentError, UnsupportedError
from layotto_proto.dapr.proto.components.v1 import common_pb2
from layotto_proto.dapr.proto.components.v1 import state_pb2 as pb

#: Dapr's state feature names (components-contrib state.Feature) that are this block's.
FEATURES: Mapping[str, StateFeature] = {
    "ETAG": StateFeature.ETAG,
    "TRANSACTIONAL": StateFeature.TRANSACTIONAL,
    "TTL": StateFeature.TTL,
    "QUERY_API": StateFeature.QUERY,
}

_CONCURRENCY = {
    base.FIRST_WRITE: pb.StateOptions.CONCURRENCY_FIRST_WRITE,
    base.LAST_WRITE: pb.StateOptions.CONCURRENCY_LAST_WRITE,
}
_CONSISTENCY = {
    base.EVENTUAL: pb.StateOptions.CONSISTENCY_EVENTUAL,
    base.STRONG: pb.StateOptions.CONSISTENCY_STRONG,
}


def _consistency(value: str) -> pb.StateOptions.StateConsistency.ValueType:
    return _CONSISTENCY.get(value, pb.StateOptions.CONSISTENCY_UNSPECIFIED)


def _options(request: base.WriteOptions) -> pb.StateOptions:
    return pb.StateOptions(
        concurrency=_CONCURRENCY.get(request.concurrency, pb.StateOptions.CONCURRENCY_UNSPECIFIED),
        consistency=_consistency(request.consistency),
    )


def _etag(etag: str | None) -> pb.Etag | None:
    return pb.Etag(value=etag) if etag else None


def _get(request: base.GetRequest) -> pb.GetRequest:
    return pb.GetRequest(key=request.key, metadata=request.metadata, consistency=_consistency(request.consistency))


def _set(request: base.SetRequest) -> pb.SetRequest:
    return pb.SetRequest(
        key=request.key,
        value=request.value,
        etag=_etag(request.etag),
        metadata=request.metadata,
        options=_options(request),
    )


def _delete(request: base.DeleteRequest) -> pb.DeleteRequest:
    return pb.DeleteRequest(
        key=request.key, etag=_etag(request.etag), metadata=request.metadata, options=_options(request)
    )


def _write_errors(requests: Sequence[base.WriteOptions]) -> dict[grpc.StatusCode, ErrorOf]:
    """What a component's refusal of these writes means (daprd: its etag errors)."""
    invalid: ErrorOf = ETagInvalidError if any(r.etag for r in requests) else InvalidArgumentError
    return {grpc.StatusCode.FAILED_PRECONDITION: ETagMismatchError, grpc.StatusCode.INVALID_ARGUMENT: invalid}


def _found(data: bytes, etag: pb.Etag | None, metadata: Mapping[str, str]) -> base.GetResponse | None:
    value = etag.value if etag is not None else ""
    if not data and not value:
        return None
    return base.GetResponse(data, value or None, dict(metadata))


def _query(request: base.QueryRequest) -> pb.Query:
    """Dapr's query document as daprd hands it over: each filter's value JSON in an Any."""
    document = request.query
    filters = document.get("filter") or {}
    page = document.get("page") or {}
    if not isinstance(filters, dict) or not isinstance(page, dict) or not isinstance(document.get("sort", []), list):
        raise InvalidArgumentError("the query's filter and page must be objects, its sort a list")
    sort = []
    for item in document.get("sort") or []:
        if not isinstance(item, dict):
            raise InvalidArgumentError("each sort of the query must be an object")
        order = pb.Sorting.DESC if str(item.get("order", "")).upper() == "DESC" else pb.Sorting.ASC
        sort.append(pb.Sorting(key=str(item.get("key", "")), order=order))
    try:
        limit = int(page.get("limit", 0) or 0)
    except (TypeError, ValueError):
        raise InvalidArgumentError(f"the query's page limit must be an integer, got {page.get('limit')!r}") from None
    return pb.Query(
        filter={op: any_pb2.Any(value=json.dumps(value).encode()) for op, value in filters.items()},
        sort=sort,
        pagination=pb.Pagination(limit=limit, token=str(page.get("token", "") or "")),
    )


class PluggableStateStore(base.StateStore):
    """The state store of a component process on `socket` (its features are the ones it
    reports)."""

    def __init__(self, socket: str, type_name: str, services: frozenset[str]) -> None:
        self.type_name = type_name
        self.services = services
        self._conn = Connection(socket, "state")
        self.features = frozenset()

    async def init(self, metadata: Metadata, context: ComponentContext) -> None:
        await super().init(metadata, context)
        self._conn.open(context.name)
        request = pb.InitRequest(metadata=common_pb2.MetadataRequest(properties=properties(metadata)))
        await self._conn.unary(STATE, "Init", request, pb.InitResponse, within=INIT_TIMEOUT)
        reply = await self._conn.unary(
            STATE, "Features", common_pb2.FeaturesRequest(), common_pb2.FeaturesResponse, within=INIT_TIMEOUT
        )
        self.features = features_of(reply.features, FEATURES, self._conn.what)

    def check_etag(self, etag: str) -> None:
        """Any etag: its format is the component's, which refuses one it does not take."""

    async def get(self, request: base.GetRequest) -> base.GetResponse | None:
        reply = await self._conn.unary(STATE, "Get", _get(request), pb.GetResponse)
        return _found(reply.data, reply.etag if reply.HasField("etag") else None, reply.metadata)

    async def set(self, request: base.SetRequest) -> None:
        await self._conn.unary(STATE, "Set", _set(request), pb.SetResponse, errors=_write_errors([request]))

    async def delete(self, request: base.DeleteRequest) -> None:
        await self._conn.unary(STATE, "Delete", _delete(request), pb.DeleteResponse, errors=_write_errors([request]))

    async def bulk_get(self, requests: Sequence[base.GetRequest], parallelism: int = 0) -> list[base.BulkGetItem]:
        bulk = pb.BulkGetRequest(
            items=[_get(r) for r in requests], options=pb.BulkGetRequestOptions(parallelism=parallelism)
        )
        try:
            reply = await self._conn.unary(STATE, "BulkGet", bulk, pb.BulkGetResponse)
        except UnsupportedError:
            return await super().bulk_get(requests, parallelism)
        by_key = {item.key: item for item in reversed(reply.items)}
        items = []
        for request in requests:
            item = by_key.get(request.key)
            if item is None:
                items.append(base.BulkGetItem(request.key, None))
            elif item.error:
                items.append(base.BulkGetItem(request.key, None, item.error))
            else:
                etag = item.etag if item.HasField("etag") else None
                items.append(base.BulkGetItem(request.key, _found(item.data, etag, item.metadata)))
        return items

    async def bulk_set(self, requests: Sequence[base.SetRequest]) -> None:
        bulk = pb.BulkSetRequest(items=[_set(r) for r in requests])
        try:
            await self._conn.unary(STATE, "BulkSet", bulk, pb.BulkSetResponse, errors=_write_errors(requests))
        except UnsupportedError:
            await super().bulk_set(requests)

    async def bulk_delete(self, requests: Sequence[base.DeleteRequest]) -> None:
        bulk = pb.BulkDeleteRequest(items=[_delete(r) for r in requests])
        try:
            await self._conn.unary(STATE, "BulkDelete", bulk, pb.BulkDeleteResponse, errors=_write_errors(requests))
        except UnsupportedError:
            await super().bulk_delete(requests)

    async def multi(self, operations: Sequence[base.Operation], metadata: dict[str, str]) -> None:
        if StateFeature.TRANSACTIONAL not in self.features:
            return await super().multi(operations, metadata)
        ops = [
            pb.TransactionalStateOperation(set=_set(op))
            if isinstance(op, base.SetRequest)
            else pb.TransactionalStateOperation(delete=_delete(op))
            for op in operations
        ]
        request = pb.TransactionalStateRequest(operations=ops, metadata=metadata)
        await self._conn.unary(
            TRANSACTIONAL_STATE, "Transact", request, pb.TransactionalStateResponse, errors=_write_errors(operations)
        )

    async def query(self, request: base.QueryRequest) -> base.QueryResponse:
        if StateFeature.QUERY not in self.features:
            return await super().query(request)
        asked = pb.QueryRequest(query=_query(request), metadata=request.metadata)
        reply = await self._conn.unary(QUERIABLE_STATE, "Query", asked, pb.QueryResponse)
        results = [
            base.QueryItem(item.key, item.data, (item.etag.value if item.HasField("etag") else "") or None, item.error)
            for item in reply.items
            if item.key.startswith(request.key_prefix)
        ]
        return base.QueryResponse(results, reply.token, dict(reply.metadata))

    async def ping(self) -> None:
        await self._conn.unary(STATE, "Ping", common_pb2.PingRequest(), common_pb2.PingResponse, within=PING_TIMEOUT)

    async def close(self) -> None:
        await self._conn.close()
