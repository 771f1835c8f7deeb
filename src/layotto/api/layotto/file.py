"""File API: streamed GetFile/PutFile, ListFile, DelFile, GetFileMeta."""

from __future__ import annotations

from collections.abc import AsyncIterator

from google.protobuf import empty_pb2

from layotto.api.common import Answering, Answers, Ctx, abort, answered, message_of
from layotto.core.file import FileCore
from layotto.core.file import FileProblem as P
from layotto.core.problems import Problem
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb

_EMPTY = empty_pb2.Empty()


class FileApi(Answering[FileCore]):
    def __init__(self, core: FileCore, answers: Answers, get_answers: Answers) -> None:
        super().__init__(core, answers)
        #: Upstream words GetFile's problems apart from the other file RPCs'.
        self.get_answers = get_answers

    async def GetFile(self, request: pb.GetFileRequest, context: Ctx) -> AsyncIterator[pb.GetFileResponse]:
        # A streamed reply: problems are answered here, `answered` wraps unary handlers only.
        try:
            async for chunk in self.core.get(request.store_name, request.name, dict(request.metadata)):
                yield pb.GetFileResponse(data=chunk)
        except Problem as problem:
            await abort(context, *message_of(self.get_answers, problem))

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
