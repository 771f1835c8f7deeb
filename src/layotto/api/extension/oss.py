"""ObjectStorageService (spec.proto.extension.v1.s3) over `oss` components.

Codes and texts as upstream's pkg/grpc/extension/s3: an unknown store is 3 `not supported
store type: <name>`; a component failure is 13 with the component's text (GetObject: `get file
fail,err: ...`), except that an unreachable backend is 14 and an operation the backend has no
meaning for is 12.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import NoReturn, Protocol

import grpc
from google.protobuf import empty_pb2

from layotto.api.extension.common import ExtensionApi, code_of
from layotto.api.layotto.base import Ctx, abort
from layotto.components.oss.base import ObjectInfo, ObjectStore, PutOptions
from layotto.errors import ComponentError
from layotto_proto.spec.proto.extension.v1.s3 import oss_pb2 as pb
from layotto_proto.spec.proto.extension.v1.s3 import oss_pb2_grpc as pb_grpc

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


class ObjectStorageApi(ExtensionApi, pb_grpc.ObjectStorageServiceServicer):
    _stores: dict[str, ObjectStore]

    async def start_api(self) -> None:
        self._stores = {n: c for n, c in self.rt.components("oss").items() if isinstance(c, ObjectStore)}

    async def _store(self, name: str, context: Ctx) -> ObjectStore:
        store = self._stores.get(name)
        if store is None:
            await abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"not supported store type: {name}")
        return store

    async def _fail(self, context: Ctx, exc: Exception, prefix: str = "") -> NoReturn:
        await abort(context, code_of(exc), f"{prefix}{exc}")

    async def _unsupported(self, name: str, rpc: str, context: Ctx) -> NoReturn:
        store = await self._store(name, context)
        await abort(context, grpc.StatusCode.UNIMPLEMENTED, f"{rpc} is not supported by the {store.kind} object store")

    # ---- objects ----
    async def PutObject(self, request_iterator: AsyncIterator[pb.PutObjectInput], context: Ctx) -> pb.PutObjectOutput:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return pb.PutObjectOutput()  # upstream: a stream closed at once is no call at all
        store = await self._store(first.store_name, context)
        opts = PutOptions(
            meta=dict(first.meta),
            tags=dict(first.tagging),
            cache_control=first.cache_control,
            content_disposition=first.content_disposition,
            content_encoding=first.content_encoding,
            expires=first.expires,
            storage_class=first.storage_class,
        )
        try:
            info = await store.put_object(first.bucket, first.key, _bodies(first, request_iterator), opts)
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.PutObjectOutput(etag=info.etag)

    async def GetObject(self, request: pb.GetObjectInput, context: Ctx) -> AsyncIterator[pb.GetObjectOutput]:
        store = await self._store(request.store_name, context)
        start, end = request.start, request.end
        if end <= 0 and start >= 0:
            end = -1  # no end: to the end of the object
        try:
            body = await store.get_object(request.bucket, request.key, start, end)
        except ComponentError as exc:
            await self._fail(context, exc, "get file fail,err: ")
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
        try:
            async for chunk in body.chunks:
                for offset in range(0, len(chunk), BODY_CHUNK):
                    message = pb.GetObjectOutput()
                    message.CopyFrom(header)
                    message.body = chunk[offset : offset + BODY_CHUNK]
                    yield message
                    sent = True
        except (ComponentError, OSError) as exc:
            await self._fail(context, exc, "oss GetObject fail, err: ")
        if not sent:
            yield header  # an empty object is still one message, with its headers

    async def DeleteObject(self, request: pb.DeleteObjectInput, context: Ctx) -> pb.DeleteObjectOutput:
        store = await self._store(request.store_name, context)
        try:
            await store.delete_object(request.bucket, request.key)
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.DeleteObjectOutput()

    async def DeleteObjects(self, request: pb.DeleteObjectsInput, context: Ctx) -> pb.DeleteObjectsOutput:
        store = await self._store(request.store_name, context)
        reply = pb.DeleteObjectsOutput()
        try:
            for target in request.delete.objects:
                await store.delete_object(request.bucket, target.key)
                if not request.delete.quiet:
                    reply.deleted.add(key=target.key, version_id=target.version_id)
        except ComponentError as exc:
            await self._fail(context, exc)
        return reply

    async def CopyObject(self, request: pb.CopyObjectInput, context: Ctx) -> pb.CopyObjectOutput:
        store = await self._store(request.store_name, context)
        source = request.copy_source
        replace = (
            PutOptions(meta=dict(request.metadata), expires=request.expires)
            if request.metadata_directive.upper() == "REPLACE"
            else None
        )
        try:
            info = await store.copy_object(
                source.copy_source_bucket,
                source.copy_source_key,
                request.bucket,
                request.key,
                replace,
                dict(request.tagging),
            )
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.CopyObjectOutput(
            copy_object_result=pb.CopyObjectResult(etag=info.etag, last_modified=info.last_modified)
        )

    async def ListObjects(self, request: pb.ListObjectsInput, context: Ctx) -> pb.ListObjectsOutput:
        store = await self._store(request.store_name, context)
        try:
            listing = await store.list_objects(
                request.bucket, request.prefix, request.marker, request.maxKeys, request.delimiter
            )
        except ComponentError as exc:
            await self._fail(context, exc)
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

    async def HeadObject(self, request: pb.HeadObjectInput, context: Ctx) -> pb.HeadObjectOutput:
        store = await self._store(request.store_name, context)
        try:
            info = await store.head_object(request.bucket, request.key)
        except ComponentError as exc:
            await self._fail(context, exc)
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

    async def IsObjectExist(self, request: pb.IsObjectExistInput, context: Ctx) -> pb.IsObjectExistOutput:
        store = await self._store(request.store_name, context)
        try:
            found = await store.exists(request.bucket, request.key)
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.IsObjectExistOutput(file_exist=found)

    async def AppendObject(
        self, request_iterator: AsyncIterator[pb.AppendObjectInput], context: Ctx
    ) -> pb.AppendObjectOutput:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return pb.AppendObjectOutput()
        store = await self._store(first.store_name, context)
        opts = PutOptions(
            tags=dict(first.tags),
            cache_control=first.cache_control,
            content_disposition=first.content_disposition,
            content_encoding=first.content_encoding,
            expires=first.expires,
            storage_class=first.storage_class,
        )
        try:
            position = await store.append_object(
                first.bucket, first.key, first.position, _bodies(first, request_iterator), opts
            )
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.AppendObjectOutput(append_position=position)

    # ---- tagging ----
    async def PutObjectTagging(self, request: pb.PutObjectTaggingInput, context: Ctx) -> pb.PutObjectTaggingOutput:
        store = await self._store(request.store_name, context)
        try:
            await store.put_tags(request.bucket, request.key, dict(request.tags))
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.PutObjectTaggingOutput()

    async def DeleteObjectTagging(
        self, request: pb.DeleteObjectTaggingInput, context: Ctx
    ) -> pb.DeleteObjectTaggingOutput:
        store = await self._store(request.store_name, context)
        try:
            await store.put_tags(request.bucket, request.key, {})
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.DeleteObjectTaggingOutput()

    async def GetObjectTagging(self, request: pb.GetObjectTaggingInput, context: Ctx) -> pb.GetObjectTaggingOutput:
        store = await self._store(request.store_name, context)
        try:
            tags = await store.get_tags(request.bucket, request.key)
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.GetObjectTaggingOutput(tags=tags)

    # ---- multipart ----
    async def CreateMultipartUpload(
        self, request: pb.CreateMultipartUploadInput, context: Ctx
    ) -> pb.CreateMultipartUploadOutput:
        store = await self._store(request.store_name, context)
        opts = PutOptions(
            meta=dict(request.meta_data),
            tags=dict(request.tagging),
            content_type=request.content_type,
            cache_control=request.cache_control,
            content_disposition=request.content_disposition,
            content_encoding=request.content_encoding,
            content_language=request.content_language,
            expires=request.expires,
            storage_class=request.storage_class,
        )
        try:
            upload_id = await store.create_multipart(request.bucket, request.key, opts)
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.CreateMultipartUploadOutput(bucket=request.bucket, key=request.key, upload_id=upload_id)

    async def UploadPart(
        self, request_iterator: AsyncIterator[pb.UploadPartInput], context: Ctx
    ) -> pb.UploadPartOutput:
        first = await anext(aiter(request_iterator), None)
        if first is None:
            return pb.UploadPartOutput()
        store = await self._store(first.store_name, context)
        try:
            part = await store.upload_part(
                first.bucket, first.key, first.upload_id, first.part_number, _bodies(first, request_iterator)
            )
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.UploadPartOutput(etag=part.etag)

    async def UploadPartCopy(self, request: pb.UploadPartCopyInput, context: Ctx) -> pb.UploadPartCopyOutput:
        store = await self._store(request.store_name, context)
        source = request.copy_source
        try:
            part = await store.upload_part_copy(
                request.bucket,
                request.key,
                request.upload_id,
                request.part_number,
                source.copy_source_bucket,
                source.copy_source_key,
                request.start_position,
                request.part_size,
            )
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.UploadPartCopyOutput(
            copy_part_result=pb.CopyPartResult(etag=part.etag, last_modified=part.last_modified)
        )

    async def CompleteMultipartUpload(
        self, request: pb.CompleteMultipartUploadInput, context: Ctx
    ) -> pb.CompleteMultipartUploadOutput:
        store = await self._store(request.store_name, context)
        parts = [(p.part_number, p.etag) for p in request.multipart_upload.parts]
        try:
            info = await store.complete_multipart(request.bucket, request.key, request.upload_id, parts)
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.CompleteMultipartUploadOutput(
            bucket=request.bucket, key=request.key, etag=info.etag, location=f"{request.bucket}/{request.key}"
        )

    async def AbortMultipartUpload(
        self, request: pb.AbortMultipartUploadInput, context: Ctx
    ) -> pb.AbortMultipartUploadOutput:
        store = await self._store(request.store_name, context)
        try:
            await store.abort_multipart(request.bucket, request.key, request.upload_id)
        except ComponentError as exc:
            await self._fail(context, exc)
        return pb.AbortMultipartUploadOutput()

    async def ListMultipartUploads(
        self, request: pb.ListMultipartUploadsInput, context: Ctx
    ) -> pb.ListMultipartUploadsOutput:
        store = await self._store(request.store_name, context)
        try:
            listing = await store.list_uploads(
                request.bucket, request.prefix, request.key_marker, request.upload_id_marker, request.max_uploads
            )
        except ComponentError as exc:
            await self._fail(context, exc)
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

    async def ListParts(self, request: pb.ListPartsInput, context: Ctx) -> pb.ListPartsOutput:
        store = await self._store(request.store_name, context)
        try:
            listing = await store.list_parts(
                request.bucket, request.key, request.upload_id, request.part_number_marker, request.max_parts
            )
        except ComponentError as exc:
            await self._fail(context, exc)
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

    # ---- operations with no local meaning ----
    async def GetObjectCannedAcl(
        self, request: pb.GetObjectCannedAclInput, context: Ctx
    ) -> pb.GetObjectCannedAclOutput:
        await self._unsupported(request.store_name, "GetObjectCannedAcl", context)
        return pb.GetObjectCannedAclOutput()

    async def PutObjectCannedAcl(
        self, request: pb.PutObjectCannedAclInput, context: Ctx
    ) -> pb.PutObjectCannedAclOutput:
        await self._unsupported(request.store_name, "PutObjectCannedAcl", context)
        return pb.PutObjectCannedAclOutput()

    async def RestoreObject(self, request: pb.RestoreObjectInput, context: Ctx) -> pb.RestoreObjectOutput:
        await self._unsupported(request.store_name, "RestoreObject", context)
        return pb.RestoreObjectOutput()

    async def ListObjectVersions(
        self, request: pb.ListObjectVersionsInput, context: Ctx
    ) -> pb.ListObjectVersionsOutput:
        await self._unsupported(request.store_name, "ListObjectVersions", context)
        return pb.ListObjectVersionsOutput()

    async def SignURL(self, request: pb.SignURLInput, context: Ctx) -> pb.SignURLOutput:
        await self._unsupported(request.store_name, "SignURL", context)
        return pb.SignURLOutput()

    async def UpdateDownloadBandwidthRateLimit(
        self, request: pb.UpdateBandwidthRateLimitInput, context: Ctx
    ) -> empty_pb2.Empty:
        await self._unsupported(request.store_name, "UpdateDownloadBandwidthRateLimit", context)
        return empty_pb2.Empty()

    async def UpdateUploadBandwidthRateLimit(
        self, request: pb.UpdateBandwidthRateLimitInput, context: Ctx
    ) -> empty_pb2.Empty:
        await self._unsupported(request.store_name, "UpdateUploadBandwidthRateLimit", context)
        return empty_pb2.Empty()
