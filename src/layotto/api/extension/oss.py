"""ObjectStorageService (spec.proto.extension.v1.s3) over `layotto.core.oss`: requests to a
store's operations and back (codes and texts in answers.toml [oss])."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from layotto.api.common import Answering, Ctx, abort, answered, message_of
from layotto.components.oss.base import ObjectInfo, PartSource, PutOptions
from layotto.core.oss import OssCore
from layotto.core.problems import Problem
from layotto_proto.spec.proto.extension.v1.s3 import oss_pb2 as pb

#: Largest body sent in one GetObject message (upstream's buffer size).
BODY_CHUNK = 1024 * 1024


class _HasBody(Protocol):
    body: bytes


async def _bodies(first: _HasBody, rest: AsyncIterator[_HasBody]) -> AsyncIterator[bytes]:
    """The body of a client stream: the first message's, then each following message's."""
    if first.body:
        yield first.body
    async for message in rest:
        if message.body:
            yield message.body


def _object(info: ObjectInfo) -> pb.Object:
    return pb.Object(
        etag=info.etag,
        key=info.key,
        last_modified=info.last_modified,
        size=info.size,
        storage_class=info.storage_class,
    )


class ObjectStorageApi(Answering[OssCore]):
    # ---- objects ----
    @answered
    async def PutObject(self, request_iterator: AsyncIterator[pb.PutObjectInput], context: Ctx) -> pb.PutObjectOutput:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return pb.PutObjectOutput()  # upstream: a stream closed at once is no call at all
        opts = PutOptions.headers_of(first, meta=dict(first.meta), tags=dict(first.tagging))
        info = await self.core.put_object(
            first.store_name, first.bucket, first.key, _bodies(first, request_iterator), opts
        )
        return pb.PutObjectOutput(etag=info.etag)

    async def GetObject(self, request: pb.GetObjectInput, context: Ctx) -> AsyncIterator[pb.GetObjectOutput]:
        # A streamed reply: problems are answered here, `answered` wraps the other handlers.
        try:
            async for message in self._object_messages(request):
                yield message
        except Problem as problem:
            await abort(context, *message_of(self.answers, problem))

    async def _object_messages(self, request: pb.GetObjectInput) -> AsyncIterator[pb.GetObjectOutput]:
        body = await self.core.get_object(*_named(request), request.start, request.end)
        info = body.info
        header = pb.GetObjectOutput(
            cache_control=request.response_cache_control or info.cache_control,
            content_disposition=request.response_content_disposition or info.content_disposition,
            content_encoding=request.response_content_encoding or info.content_encoding,
            content_language=request.response_content_language or info.content_language,
            content_length=body.length,
            content_range=body.content_range,
            content_type=request.response_content_type or info.content_type,
            etag=info.etag,
            expires=request.response_expires or (str(info.expires) if info.expires else ""),
            last_modified=info.last_modified,
            tag_count=len(info.tags),
            storage_class=info.storage_class,
            parts_count=info.parts_count,
            metadata=info.meta,
        )
        sent = False
        async for chunk in self.core.chunks(body):
            for offset in range(0, len(chunk), BODY_CHUNK):
                message = pb.GetObjectOutput()
                message.CopyFrom(header)
                message.body = chunk[offset : offset + BODY_CHUNK]
                yield message
                sent = True
        if not sent:
            yield header  # an empty object is still one message, with its headers

    @answered
    async def DeleteObject(self, request: pb.DeleteObjectInput, context: Ctx) -> pb.DeleteObjectOutput:
        await self.core.delete_object(*_named(request))
        return pb.DeleteObjectOutput()

    @answered
    async def DeleteObjects(self, request: pb.DeleteObjectsInput, context: Ctx) -> pb.DeleteObjectsOutput:
        targets = request.delete.objects
        await self.core.delete_objects(request.store_name, request.bucket, [target.key for target in targets])
        reply = pb.DeleteObjectsOutput()
        if not request.delete.quiet:
            for target in targets:
                reply.deleted.add(key=target.key, version_id=target.version_id)
        return reply

    @answered
    async def CopyObject(self, request: pb.CopyObjectInput, context: Ctx) -> pb.CopyObjectOutput:
        source = request.copy_source
        replace = (
            PutOptions(meta=dict(request.metadata), expires=request.expires)
            if request.metadata_directive.upper() == "REPLACE"
            else None
        )
        info = await self.core.copy_object(
            request.store_name,
            source.copy_source_bucket,
            source.copy_source_key,
            request.bucket,
            request.key,
            replace,
            dict(request.tagging),
        )
        return pb.CopyObjectOutput(
            copy_object_result=pb.CopyObjectResult(etag=info.etag, last_modified=info.last_modified)
        )

    @answered
    async def ListObjects(self, request: pb.ListObjectsInput, context: Ctx) -> pb.ListObjectsOutput:
        listing = await self.core.list_objects(
            request.store_name, request.bucket, request.prefix, request.marker, request.maxKeys, request.delimiter
        )
        return pb.ListObjectsOutput(
            common_prefixes=listing.common_prefixes,
            contents=[_object(info) for info in listing.objects],
            delimiter=request.delimiter,
            encoding_type=request.encoding_type,
            is_truncated=listing.is_truncated,
            marker=request.marker,
            max_keys=request.maxKeys or 1000,
            name=request.bucket,
            next_marker=listing.next_marker,
            prefix=request.prefix,
        )

    @answered
    async def HeadObject(self, request: pb.HeadObjectInput, context: Ctx) -> pb.HeadObjectOutput:
        info = await self.core.head_object(*_named(request))
        # As upstream's aws.oss: the object's user metadata; system headers on request.
        result = dict(info.meta)
        if request.with_details:
            result.update(
                {
                    "Content-Length": str(info.size),
                    "ETag": info.etag,
                    "Last-Modified": str(info.last_modified),
                    "Content-Type": info.content_type,
                    "Storage-Class": info.storage_class,
                }
            )
        return pb.HeadObjectOutput(result_metadata=result)

    @answered
    async def IsObjectExist(self, request: pb.IsObjectExistInput, context: Ctx) -> pb.IsObjectExistOutput:
        found = await self.core.exists(*_named(request))
        return pb.IsObjectExistOutput(file_exist=found)

    @answered
    async def AppendObject(
        self, request_iterator: AsyncIterator[pb.AppendObjectInput], context: Ctx
    ) -> pb.AppendObjectOutput:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return pb.AppendObjectOutput()
        opts = PutOptions.headers_of(first, tags=dict(first.tags))
        position = await self.core.append_object(
            first.store_name, first.bucket, first.key, first.position, _bodies(first, request_iterator), opts
        )
        return pb.AppendObjectOutput(append_position=position)

    # ---- tagging ----
    @answered
    async def PutObjectTagging(self, request: pb.PutObjectTaggingInput, context: Ctx) -> pb.PutObjectTaggingOutput:
        await self.core.put_tags(*_named(request), dict(request.tags))
        return pb.PutObjectTaggingOutput()

    @answered
    async def DeleteObjectTagging(
        self, request: pb.DeleteObjectTaggingInput, context: Ctx
    ) -> pb.DeleteObjectTaggingOutput:
        await self.core.put_tags(*_named(request), {})
        return pb.DeleteObjectTaggingOutput()

    @answered
    async def GetObjectTagging(self, request: pb.GetObjectTaggingInput, context: Ctx) -> pb.GetObjectTaggingOutput:
        tags = await self.core.get_tags(*_named(request))
        return pb.GetObjectTaggingOutput(tags=tags)

    # ---- multipart ----
    @answered
    async def CreateMultipartUpload(
        self, request: pb.CreateMultipartUploadInput, context: Ctx
    ) -> pb.CreateMultipartUploadOutput:
        opts = PutOptions.headers_of(request, meta=dict(request.meta_data), tags=dict(request.tagging))
        upload_id = await self.core.create_multipart(*_named(request), opts)
        return pb.CreateMultipartUploadOutput(bucket=request.bucket, key=request.key, upload_id=upload_id)

    @answered
    async def UploadPart(
        self, request_iterator: AsyncIterator[pb.UploadPartInput], context: Ctx
    ) -> pb.UploadPartOutput:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return pb.UploadPartOutput()
        part = await self.core.upload_part(
            first.store_name,
            first.bucket,
            first.key,
            first.upload_id,
            first.part_number,
            _bodies(first, request_iterator),
        )
        return pb.UploadPartOutput(etag=part.etag)

    @answered
    async def UploadPartCopy(self, request: pb.UploadPartCopyInput, context: Ctx) -> pb.UploadPartCopyOutput:
        source = request.copy_source
        part = await self.core.upload_part_copy(
            *_named(request),
            request.upload_id,
            request.part_number,
            PartSource(source.copy_source_bucket, source.copy_source_key, request.start_position, request.part_size),
        )
        return pb.UploadPartCopyOutput(
            copy_part_result=pb.CopyPartResult(etag=part.etag, last_modified=part.last_modified)
        )

    @answered
    async def CompleteMultipartUpload(
        self, request: pb.CompleteMultipartUploadInput, context: Ctx
    ) -> pb.CompleteMultipartUploadOutput:
        parts = [(p.part_number, p.etag) for p in request.multipart_upload.parts]
        info = await self.core.complete_multipart(*_named(request), request.upload_id, parts)
        return pb.CompleteMultipartUploadOutput(
            bucket=request.bucket, key=request.key, etag=info.etag, location=f"{request.bucket}/{request.key}"
        )

    @answered
    async def AbortMultipartUpload(
        self, request: pb.AbortMultipartUploadInput, context: Ctx
    ) -> pb.AbortMultipartUploadOutput:
        await self.core.abort_multipart(*_named(request), request.upload_id)
        return pb.AbortMultipartUploadOutput()

    @answered
    async def ListMultipartUploads(
        self, request: pb.ListMultipartUploadsInput, context: Ctx
    ) -> pb.ListMultipartUploadsOutput:
        listing = await self.core.list_uploads(
            request.store_name,
            request.bucket,
            request.prefix,
            request.key_marker,
            request.upload_id_marker,
            request.max_uploads,
        )
        return pb.ListMultipartUploadsOutput(
            bucket=request.bucket,
            delimiter=request.delimiter,
            encoding_type=request.encoding_type,
            is_truncated=listing.is_truncated,
            key_marker=request.key_marker,
            max_uploads=int(request.max_uploads or 1000),
            next_key_marker=listing.next_key_marker,
            next_upload_id_marker=listing.next_upload_id_marker,
            prefix=request.prefix,
            upload_id_marker=request.upload_id_marker,
            uploads=[
                pb.MultipartUpload(initiated=u.initiated, key=u.key, upload_id=u.upload_id, storage_class="STANDARD")
                for u in listing.uploads
            ],
        )

    @answered
    async def ListParts(self, request: pb.ListPartsInput, context: Ctx) -> pb.ListPartsOutput:
        listing = await self.core.list_parts(
            *_named(request), request.upload_id, request.part_number_marker, request.max_parts
        )
        return pb.ListPartsOutput(
            bucket=request.bucket,
            key=request.key,
            upload_id=request.upload_id,
            next_part_number_marker=str(listing.next_part_number_marker) if listing.is_truncated else "",
            max_parts=request.max_parts or 1000,
            is_truncated=listing.is_truncated,
            parts=[
                pb.Part(etag=p.etag, last_modified=p.last_modified, part_number=p.part_number, size=p.size)
                for p in listing.parts
            ],
        )


def _refused(rpc: str) -> Any:
    @answered
    async def refuse(self: ObjectStorageApi, request: Any, context: Ctx) -> Any:
        self.core.unsupported(request.store_name, rpc)

    refuse.__name__ = rpc
    return refuse


# Operations no store here has a meaning for (ACLs, restores, versions, signed URLs, rate limits).
for _rpc in (
    "GetObjectCannedAcl PutObjectCannedAcl RestoreObject ListObjectVersions SignURL "
    "UpdateDownloadBandwidthRateLimit UpdateUploadBandwidthRateLimit"
).split():
    setattr(ObjectStorageApi, _rpc, _refused(_rpc))


def _named(request: Any) -> tuple[str, str, str]:
    """The object an OSS request names: its store, bucket and key."""
    return request.store_name, request.bucket, request.key
