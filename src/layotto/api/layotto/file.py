"""File API: streamed GetFile/PutFile, ListFile, DelFile, GetFileMeta with upstream's codes.

Upstream words the unknown-store error two ways (`not supported store type` for GetFile,
`not support store type` for the rest); both are kept, since SDK tests match them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from layotto.api.layotto.base import ApiBase, Ctx, abort
from layotto.components.file.base import FileStore
from layotto.errors import (
    AlreadyExistsError,
    BackendUnavailableError,
    ComponentError,
    InvalidArgumentError,
    NotFoundError,
)
from layotto.proto.spec.proto.runtime.v1 import runtime_pb2 as pb

_EMPTY = empty_pb2.Empty()


def _code(exc: Exception) -> grpc.StatusCode:
    if isinstance(exc, InvalidArgumentError):
        return grpc.StatusCode.INVALID_ARGUMENT
    if isinstance(exc, NotFoundError):
        return grpc.StatusCode.NOT_FOUND
    if isinstance(exc, AlreadyExistsError):
        return grpc.StatusCode.ALREADY_EXISTS
    if isinstance(exc, PermissionError):
        return grpc.StatusCode.PERMISSION_DENIED
    if isinstance(exc, BackendUnavailableError):
        return grpc.StatusCode.UNAVAILABLE
    return grpc.StatusCode.INTERNAL


class FileApi(ApiBase):
    async def _file_store(self, name: str, context: Ctx, wording: str = "not support store type") -> FileStore:
        store = self.rt.get("file", name)
        if not isinstance(store, FileStore):
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{wording}: {name}")
        return store

    async def GetFile(self, request: pb.GetFileRequest, context: Ctx) -> AsyncIterator[pb.GetFileResponse]:
        store = await self._file_store(request.store_name, context, "not supported store type")
        chunks = store.get(request.name, dict(request.metadata))
        try:
            async for chunk in chunks:
                yield pb.GetFileResponse(data=chunk)
        except (ComponentError, OSError) as exc:
            code = grpc.StatusCode.UNAVAILABLE if isinstance(exc, BackendUnavailableError) else grpc.StatusCode.INTERNAL
            await abort(context, code, f"get file fail,err: {exc}")

    async def PutFile(self, request_iterator: AsyncIterator[pb.PutFileRequest], context: Ctx) -> empty_pb2.Empty:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "request can't be nil")
        store = await self._file_store(first.store_name, context)

        async def chunks() -> AsyncIterator[bytes]:
            if first.data:
                yield first.data
            async for more in request_iterator:
                if more.data:
                    yield more.data

        try:
            await store.put(first.name, chunks(), dict(first.metadata))
        except (ComponentError, OSError) as exc:
            await abort(context, _code(exc), str(exc))
        return _EMPTY

    async def _requested(self, request: pb.FileRequest | None, context: Ctx) -> tuple[FileStore, pb.FileRequest]:
        if request is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, "request can't be nil")
        return await self._file_store(request.store_name, context), request

    async def ListFile(self, request: pb.ListFileRequest, context: Ctx) -> pb.ListFileResp:
        store, inner = await self._requested(request.request if request.HasField("request") else None, context)
        try:
            listing = await store.list(inner.name, dict(inner.metadata), request.page_size, request.marker)
        except (ComponentError, OSError) as exc:
            await abort(context, _code(exc), str(exc))
        reply = pb.ListFileResp(marker=listing.marker, is_truncated=listing.is_truncated)
        for info in listing.files:
            reply.files.add(
                file_name=info.name, size=info.size, last_modified=info.last_modified, metadata=info.metadata
            )
        return reply

    async def DelFile(self, request: pb.DelFileRequest, context: Ctx) -> empty_pb2.Empty:
        store, inner = await self._requested(request.request if request.HasField("request") else None, context)
        try:
            await store.delete(inner.name, dict(inner.metadata))
        except (ComponentError, OSError) as exc:
            await abort(context, _code(exc), str(exc))
        return _EMPTY

    async def GetFileMeta(self, request: pb.GetFileMetaRequest, context: Ctx) -> pb.GetFileMetaResponse:
        store, inner = await self._requested(request.request if request.HasField("request") else None, context)
        try:
            meta = await store.stat(inner.name, dict(inner.metadata))
        except (ComponentError, OSError) as exc:
            await abort(context, _code(exc), str(exc))
        reply = pb.GetFileMetaResponse(size=meta.size, last_modified=meta.last_modified)
        for key, values in meta.metadata.items():
            reply.response.metadata[key].value.extend(values)
        return reply
