"""File API: streamed GetFile/PutFile, ListFile, DelFile, GetFileMeta with upstream's codes.

Upstream words the unknown-store error two ways (`not supported store type` for GetFile,
`not support store type` for the rest); both are kept, since SDK tests match them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
from google.protobuf import empty_pb2

from layotto.api.common import Answering, Answers, Ctx, abort, answered, message_of
from layotto.core.file import FileCore
from layotto.core.file import FileProblem as P
from layotto.core.problems import Problem
from layotto.errors import AlreadyExistsError, BackendUnavailableError, InvalidArgumentError, NotFoundError
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

_EMPTY = empty_pb2.Empty()
Code = grpc.StatusCode


def _code(exc: BaseException) -> grpc.StatusCode:
    if isinstance(exc, InvalidArgumentError):
        return Code.INVALID_ARGUMENT
    if isinstance(exc, NotFoundError):
        return Code.NOT_FOUND
    if isinstance(exc, AlreadyExistsError):
        return Code.ALREADY_EXISTS
    if isinstance(exc, PermissionError):
        return Code.PERMISSION_DENIED
    if isinstance(exc, BackendUnavailableError):
        return Code.UNAVAILABLE
    return Code.INTERNAL


def _get_code(exc: BaseException) -> grpc.StatusCode:
    return Code.UNAVAILABLE if isinstance(exc, BackendUnavailableError) else Code.INTERNAL


class FileApi(Answering[FileCore]):
    ANSWERS: Answers = {
        P.REQUEST_MISSING: (Code.INVALID_ARGUMENT, "request can't be nil"),
        P.STORE_NOT_FOUND: (Code.INVALID_ARGUMENT, "not support store type: {store}"),
        P.PUT_FAILED: (_code, "{error}"),
        P.LIST_FAILED: (_code, "{error}"),
        P.DELETE_FAILED: (_code, "{error}"),
        P.STAT_FAILED: (_code, "{error}"),
    }
    GET_ANSWERS: Answers = {
        P.STORE_NOT_FOUND: (Code.INVALID_ARGUMENT, "not supported store type: {store}"),
        P.GET_FAILED: (_get_code, "get file fail,err: {error}"),
    }


    async def GetFile(self, request: pb.GetFileRequest, context: Ctx) -> AsyncIterator[pb.GetFileResponse]:
        # A streamed reply: problems are answered here, `answered` wraps unary handlers only.
        try:
            async for chunk in self.core.get(request.store_name, request.name, dict(request.metadata)):
                yield pb.GetFileResponse(data=chunk)
        except Problem as problem:
            await abort(context, *message_of(self.GET_ANSWERS, problem))

    @answered
    async def PutFile(self, request_iterator: AsyncIterator[pb.PutFileRequest], context: Ctx) -> empty_pb2.Empty:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            raise Problem(P.REQUEST_MISSING)
        self.core.store(first.store_name)

        async def chunks() -> AsyncIterator[bytes]:
            if first.data:
                yield first.data
            async for more in request_iterator:
                if more.data:
                    yield more.data

        await self.core.put(first.store_name, first.name, chunks(), dict(first.metadata))
        return _EMPTY

    @staticmethod
    def _inner(request: pb.ListFileRequest | pb.DelFileRequest | pb.GetFileMetaRequest) -> pb.FileRequest:
        if not request.HasField("request"):
            raise Problem(P.REQUEST_MISSING)
        return request.request

    @answered
    async def ListFile(self, request: pb.ListFileRequest, context: Ctx) -> pb.ListFileResp:
        inner = self._inner(request)
        listing = await self.core.list(
            inner.store_name, inner.name, dict(inner.metadata), request.page_size, request.marker
        )
        reply = pb.ListFileResp(marker=listing.marker, is_truncated=listing.is_truncated)
        for info in listing.files:
            reply.files.add(
                file_name=info.name, size=info.size, last_modified=info.last_modified, metadata=info.metadata
            )
        return reply

    @answered
    async def DelFile(self, request: pb.DelFileRequest, context: Ctx) -> empty_pb2.Empty:
        inner = self._inner(request)
        await self.core.delete(inner.store_name, inner.name, dict(inner.metadata))
        return _EMPTY

    @answered
    async def GetFileMeta(self, request: pb.GetFileMetaRequest, context: Ctx) -> pb.GetFileMetaResponse:
        inner = self._inner(request)
        meta = await self.core.stat(inner.store_name, inner.name, dict(inner.metadata))
        reply = pb.GetFileMetaResponse(size=meta.size, last_modified=meta.last_modified)
        for key, values in meta.metadata.items():
            reply.response.metadata[key].value.extend(values)
        return reply
