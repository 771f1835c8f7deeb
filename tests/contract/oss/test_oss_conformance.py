"""ObjectStorageService through the gRPC server, for every `oss` component we can run here."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from layotto_proto.spec.proto.extension.v1.s3 import oss_pb2 as pb
from layotto_proto.spec.proto.extension.v1.s3 import oss_pb2_grpc
from tests.contract.oss.backends import ROWS, Row
from tests.support.rows import params
from tests.support.sidecar import running_sidecar

STORE = "oss"
MIB = 1024 * 1024


Stub = oss_pb2_grpc.ObjectStorageServiceStub


@pytest.fixture(params=params(ROWS))
async def stub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Stub]:
    row: Row = request.param
    config = {"oss": {STORE: row.entry(tmp_path)}}
    options = [("grpc.max_receive_message_length", 8 * MIB)]
    async with running_sidecar(config) as (_, address), grpc.aio.insecure_channel(address, options=options) as channel:
        yield oss_pb2_grpc.ObjectStorageServiceStub(channel)


@pytest.fixture
def bucket() -> str:
    return f"b-{uuid.uuid4().hex[:12]}"


async def _put(stub: Stub, bucket: str, key: str, chunks: list[bytes], **fields: Any) -> pb.PutObjectOutput:
    async def requests() -> AsyncIterator[pb.PutObjectInput]:
        first = True
        for chunk in chunks or [b""]:
            if first:
                yield pb.PutObjectInput(store_name=STORE, bucket=bucket, key=key, body=chunk, **fields)
                first = False
            else:
                yield pb.PutObjectInput(body=chunk)

    result: pb.PutObjectOutput = await stub.PutObject(requests())
    return result


async def _get(stub: Stub, bucket: str, key: str, **fields: Any) -> list[pb.GetObjectOutput]:
    return [m async for m in stub.GetObject(pb.GetObjectInput(store_name=STORE, bucket=bucket, key=key, **fields))]


async def _error(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    return err.value


async def test_put_get_multi_chunk_both_ways(stub: Stub, bucket: str) -> None:
    body = os.urandom(2 * MIB + 12345)
    put = await _put(
        stub,
        bucket,
        "dir/blob.bin",
        [body[:300_000], body[300_000 : MIB + 7], body[MIB + 7 :]],
        meta={"owner": "alice"},
        tagging={"env": "test"},
        cache_control="no-cache",
    )
    assert put.etag == hashlib.md5(body).hexdigest()
    messages = await _get(stub, bucket, "dir/blob.bin")
    assert len(messages) == 3 and all(len(m.body) <= MIB for m in messages)
    assert b"".join(m.body for m in messages) == body
    for m in messages:  # every message repeats the header fields
        assert m.etag == put.etag and m.content_length == len(body) and m.cache_control == "no-cache"
        assert dict(m.metadata) == {"owner": "alice"} and m.tag_count == 1 and m.last_modified > 0


async def test_empty_object_and_ranges(stub: Stub, bucket: str) -> None:
    await _put(stub, bucket, "empty", [])
    messages = await _get(stub, bucket, "empty")
    assert len(messages) == 1 and messages[0].body == b"" and messages[0].content_length == 0

    await _put(stub, bucket, "digits", [b"0123456789"])
    part = await _get(stub, bucket, "digits", start=2, end=5)
    assert b"".join(m.body for m in part) == b"2345" and part[0].content_range == "bytes 2-5/10"
    tail = await _get(stub, bucket, "digits", start=7)
    assert b"".join(m.body for m in tail) == b"789"
    err = await _error(_get(stub, bucket, "digits", start=20))
    assert err.code() == grpc.StatusCode.INTERNAL and "InvalidRange" in str(err.details())


async def test_overwrite_head_exists_delete(stub: Stub, bucket: str) -> None:
    await _put(stub, bucket, "k", [b"one"], meta={"v": "1"})
    await _put(stub, bucket, "k", [b"two!"], meta={"v": "2"})
    assert b"".join(m.body for m in await _get(stub, bucket, "k")) == b"two!"
    head = await stub.HeadObject(pb.HeadObjectInput(store_name=STORE, bucket=bucket, key="k"))
    assert dict(head.result_metadata) == {"v": "2"}
    detailed = await stub.HeadObject(pb.HeadObjectInput(store_name=STORE, bucket=bucket, key="k", with_details=True))
    assert detailed.result_metadata["Content-Length"] == "4"
    exists = await stub.IsObjectExist(pb.IsObjectExistInput(store_name=STORE, bucket=bucket, key="k"))
    assert exists.file_exist

    await stub.DeleteObject(pb.DeleteObjectInput(store_name=STORE, bucket=bucket, key="k"))
    gone = await stub.IsObjectExist(pb.IsObjectExistInput(store_name=STORE, bucket=bucket, key="k"))
    assert not gone.file_exist
    err = await _error(_get(stub, bucket, "k"))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert err.details() == f"get file fail,err: NoSuchKey: object {bucket}/k does not exist"
    err = await _error(stub.HeadObject(pb.HeadObjectInput(store_name=STORE, bucket=bucket, key="k")))
    assert "NoSuchKey" in str(err.details())
    # Deleting what is not there succeeds, as in S3.
    await stub.DeleteObject(pb.DeleteObjectInput(store_name=STORE, bucket=bucket, key="k"))


async def test_list_prefix_marker_max_keys_delimiter(stub: Stub, bucket: str) -> None:
    keys = ["a/1", "a/2", "a/b/3", "b", "c/1", "c/2", "d"]
    for key in keys:
        await _put(stub, bucket, key, [key.encode()])

    def listing(**fields: Any) -> Any:
        return stub.ListObjects(pb.ListObjectsInput(store_name=STORE, bucket=bucket, **fields))

    everything = await listing()
    assert [o.key for o in everything.contents] == keys and not everything.is_truncated
    assert everything.contents[0].size == 3 and everything.contents[0].etag == hashlib.md5(b"a/1").hexdigest()
    assert everything.name == bucket

    page1 = await listing(maxKeys=3)
    assert [o.key for o in page1.contents] == ["a/1", "a/2", "a/b/3"] and page1.is_truncated
    page2 = await listing(maxKeys=3, marker=page1.next_marker)
    assert [o.key for o in page2.contents] == ["b", "c/1", "c/2"] and page2.is_truncated
    page3 = await listing(maxKeys=3, marker=page2.next_marker)
    assert [o.key for o in page3.contents] == ["d"] and not page3.is_truncated

    in_a = await listing(prefix="a/")
    assert [o.key for o in in_a.contents] == ["a/1", "a/2", "a/b/3"]
    tree = await listing(delimiter="/")
    assert [o.key for o in tree.contents] == ["b", "d"] and list(tree.common_prefixes) == ["a/", "c/"]
    sub = await listing(prefix="a/", delimiter="/")
    assert [o.key for o in sub.contents] == ["a/1", "a/2"] and list(sub.common_prefixes) == ["a/b/"]
    paged = await listing(delimiter="/", maxKeys=1)
    assert list(paged.common_prefixes) == ["a/"] and paged.is_truncated
    after = await listing(delimiter="/", maxKeys=2, marker=paged.next_marker)
    assert [o.key for o in after.contents] == ["b"] and list(after.common_prefixes) == ["c/"]

    missing = await stub.ListObjects(pb.ListObjectsInput(store_name=STORE, bucket=f"none-{bucket}"))
    assert list(missing.contents) == []

    deleted = await stub.DeleteObjects(
        pb.DeleteObjectsInput(
            store_name=STORE,
            bucket=bucket,
            delete=pb.Delete(objects=[pb.ObjectIdentifier(key="a/1"), pb.ObjectIdentifier(key="d")]),
        )
    )
    assert [d.key for d in deleted.deleted] == ["a/1", "d"]
    assert [o.key for o in (await listing()).contents] == ["a/2", "a/b/3", "b", "c/1", "c/2"]


async def test_copy_keeps_or_replaces_metadata(stub: Stub, bucket: str) -> None:
    await _put(stub, bucket, "src", [b"payload"], meta={"m": "1"}, tagging={"t": "1"})
    source = pb.CopySource(copy_source_bucket=bucket, copy_source_key="src")
    other = f"{bucket}-2"
    copied = await stub.CopyObject(pb.CopyObjectInput(store_name=STORE, bucket=other, key="dst", copy_source=source))
    assert copied.copy_object_result.etag == hashlib.md5(b"payload").hexdigest()
    messages = await _get(stub, other, "dst")
    assert messages[0].body == b"payload" and dict(messages[0].metadata) == {"m": "1"}
    tags = await stub.GetObjectTagging(pb.GetObjectTaggingInput(store_name=STORE, bucket=other, key="dst"))
    assert dict(tags.tags) == {"t": "1"}

    await stub.CopyObject(
        pb.CopyObjectInput(
            store_name=STORE,
            bucket=bucket,
            key="dst2",
            copy_source=source,
            metadata_directive="REPLACE",
            metadata={"m": "2"},
            tagging={"t": "2"},
        )
    )
    head = await stub.HeadObject(pb.HeadObjectInput(store_name=STORE, bucket=bucket, key="dst2"))
    assert dict(head.result_metadata) == {"m": "2"}
    err = await _error(
        stub.CopyObject(
            pb.CopyObjectInput(
                store_name=STORE,
                bucket=bucket,
                key="x",
                copy_source=pb.CopySource(copy_source_bucket=bucket, copy_source_key="missing"),
            )
        )
    )
    assert err.code() == grpc.StatusCode.INTERNAL and "NoSuchKey" in str(err.details())


async def test_tagging(stub: Stub, bucket: str) -> None:
    await _put(stub, bucket, "k", [b"x"])
    await stub.PutObjectTagging(pb.PutObjectTaggingInput(store_name=STORE, bucket=bucket, key="k", tags={"a": "1"}))
    got = await stub.GetObjectTagging(pb.GetObjectTaggingInput(store_name=STORE, bucket=bucket, key="k"))
    assert dict(got.tags) == {"a": "1"}
    await stub.DeleteObjectTagging(pb.DeleteObjectTaggingInput(store_name=STORE, bucket=bucket, key="k"))
    got = await stub.GetObjectTagging(pb.GetObjectTaggingInput(store_name=STORE, bucket=bucket, key="k"))
    assert dict(got.tags) == {}
    err = await _error(
        stub.PutObjectTagging(pb.PutObjectTaggingInput(store_name=STORE, bucket=bucket, key="nope", tags={"a": "1"}))
    )
    assert "NoSuchKey" in str(err.details())


async def _upload_part(stub: Stub, bucket: str, key: str, upload_id: str, number: int, data: bytes) -> str:
    async def requests() -> AsyncIterator[pb.UploadPartInput]:
        yield pb.UploadPartInput(
            store_name=STORE, bucket=bucket, key=key, upload_id=upload_id, part_number=number, body=data[:1000]
        )
        yield pb.UploadPartInput(body=data[1000:])

    reply: pb.UploadPartOutput = await stub.UploadPart(requests())
    return reply.etag


async def test_multipart_upload(stub: Stub, bucket: str) -> None:
    created = await stub.CreateMultipartUpload(
        pb.CreateMultipartUploadInput(
            store_name=STORE, bucket=bucket, key="big", meta_data={"kind": "mp"}, content_type="application/x-test"
        )
    )
    upload_id = created.upload_id
    assert upload_id and created.key == "big"
    parts = [os.urandom(MIB + 10), os.urandom(5000), os.urandom(300)]
    # Uploaded out of order; part 2 uploaded twice (the last one counts).
    etags = {3: await _upload_part(stub, bucket, "big", upload_id, 3, parts[2])}
    await _upload_part(stub, bucket, "big", upload_id, 2, b"first try" * 200)
    etags[2] = await _upload_part(stub, bucket, "big", upload_id, 2, parts[1])
    etags[1] = await _upload_part(stub, bucket, "big", upload_id, 1, parts[0])

    listed = await stub.ListParts(pb.ListPartsInput(store_name=STORE, bucket=bucket, key="big", upload_id=upload_id))
    assert [(p.part_number, p.size, p.etag) for p in listed.parts] == [
        (n, len(parts[n - 1]), etags[n]) for n in (1, 2, 3)
    ]
    first_page = await stub.ListParts(
        pb.ListPartsInput(store_name=STORE, bucket=bucket, key="big", upload_id=upload_id, max_parts=2)
    )
    assert first_page.is_truncated and first_page.next_part_number_marker == "2"
    uploads = await stub.ListMultipartUploads(pb.ListMultipartUploadsInput(store_name=STORE, bucket=bucket))
    assert [(u.key, u.upload_id) for u in uploads.uploads] == [("big", upload_id)]

    bad = await _error(
        stub.CompleteMultipartUpload(
            pb.CompleteMultipartUploadInput(
                store_name=STORE,
                bucket=bucket,
                key="big",
                upload_id=upload_id,
                multipart_upload=pb.CompletedMultipartUpload(parts=[pb.CompletedPart(part_number=1, etag="bogus")]),
            )
        )
    )
    assert "InvalidPart" in str(bad.details())

    done = await stub.CompleteMultipartUpload(
        pb.CompleteMultipartUploadInput(
            store_name=STORE,
            bucket=bucket,
            key="big",
            upload_id=upload_id,
            multipart_upload=pb.CompletedMultipartUpload(
                parts=[pb.CompletedPart(part_number=n, etag=f'"{etags[n]}"') for n in (1, 2, 3)]
            ),
        )
    )
    assert done.etag.endswith("-3")
    messages = await _get(stub, bucket, "big")
    assert b"".join(m.body for m in messages) == b"".join(parts)
    assert messages[0].parts_count == 3 and messages[0].content_type == "application/x-test"
    assert dict(messages[0].metadata) == {"kind": "mp"}
    after = await stub.ListMultipartUploads(pb.ListMultipartUploadsInput(store_name=STORE, bucket=bucket))
    assert list(after.uploads) == []


async def test_multipart_abort_and_part_copy(stub: Stub, bucket: str) -> None:
    await _put(stub, bucket, "source", [b"abcdefghij"])
    created = await stub.CreateMultipartUpload(pb.CreateMultipartUploadInput(store_name=STORE, bucket=bucket, key="t"))
    copied = await stub.UploadPartCopy(
        pb.UploadPartCopyInput(
            store_name=STORE,
            bucket=bucket,
            key="t",
            upload_id=created.upload_id,
            part_number=1,
            copy_source=pb.CopySource(copy_source_bucket=bucket, copy_source_key="source"),
            start_position=2,
            part_size=3,
        )
    )
    assert copied.copy_part_result.etag == hashlib.md5(b"cde").hexdigest()
    await stub.AbortMultipartUpload(
        pb.AbortMultipartUploadInput(store_name=STORE, bucket=bucket, key="t", upload_id=created.upload_id)
    )
    err = await _error(
        stub.ListParts(pb.ListPartsInput(store_name=STORE, bucket=bucket, key="t", upload_id=created.upload_id))
    )
    assert err.code() == grpc.StatusCode.INTERNAL and "NoSuchUpload" in str(err.details())
    err = await _error(_upload_part(stub, bucket, "t", "0" * 32, 1, b"x" * 2000))
    assert "NoSuchUpload" in str(err.details())


async def test_append_object(stub: Stub, bucket: str) -> None:
    async def append(position: int, chunks: list[bytes]) -> pb.AppendObjectOutput:
        async def requests() -> AsyncIterator[pb.AppendObjectInput]:
            yield pb.AppendObjectInput(store_name=STORE, bucket=bucket, key="log", position=position, body=chunks[0])
            for chunk in chunks[1:]:
                yield pb.AppendObjectInput(body=chunk)

        reply: pb.AppendObjectOutput = await stub.AppendObject(requests())
        return reply

    assert (await append(0, [b"hello ", b"world"])).append_position == 11
    assert (await append(11, [b"!"])).append_position == 12
    err = await _error(append(5, [b"x"]))
    assert "PositionNotEqualToLength" in str(err.details())
    assert b"".join(m.body for m in await _get(stub, bucket, "log")) == b"hello world!"


async def test_names_are_confined(stub: Stub, tmp_path: Path) -> None:
    refused = (
        ("..", "x", "invalid bucket: "),
        ("a/b", "x", "invalid bucket: "),
        (".uploads", "x", "invalid bucket: "),
        ("", "x", "invalid bucket: "),
        ("ok-bucket", "", "invalid key: is empty"),
        # S3 takes these keys; refused here so that no store that keeps files takes them as paths.
        ("ok-bucket", "../../escape", "invalid key: leads outside its bucket"),
        ("ok-bucket", "..", "invalid key: leads outside its bucket"),
        ("ok-bucket", "/abs/path", "invalid key: is an absolute path"),
    )
    for bucket, key, message in refused:
        err = await _error(_put(stub, bucket, key, [b"x"]))
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, (bucket, key)
        assert str(err.details()).startswith(message), (bucket, key, err.details())
    # A key with path syntax that stays inside its bucket is one object.
    for key in ("a/../b", "a/./b", "a//b"):
        await _put(stub, "ok-bucket", key, [key.encode()])
        assert b"".join(m.body for m in await _get(stub, "ok-bucket", key)) == key.encode()
    outside = [p for p in await asyncio.to_thread(lambda: list(tmp_path.rglob("*"))) if "objects" not in p.parts]
    assert outside == []


async def test_unknown_store_and_unsupported_operations(stub: Stub) -> None:
    err = await _error(_get_unknown(stub))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT and err.details() == "not supported store type: nope"
    err = await _error(stub.PutObject(_one(pb.PutObjectInput(store_name="nope", bucket="b", key="k"))))
    assert err.details() == "not supported store type: nope"
    err = await _error(stub.ListObjects(pb.ListObjectsInput(store_name="nope")))
    assert err.details() == "not supported store type: nope"
    for call in (
        stub.SignURL(pb.SignURLInput(store_name=STORE, bucket="b", key="k", method="GET", expired_in_sec=60)),
        stub.UpdateDownloadBandwidthRateLimit(pb.UpdateBandwidthRateLimitInput(store_name=STORE)),
        stub.UpdateUploadBandwidthRateLimit(pb.UpdateBandwidthRateLimitInput(store_name=STORE)),
        stub.RestoreObject(pb.RestoreObjectInput(store_name=STORE, bucket="b", key="k")),
        stub.GetObjectCannedAcl(pb.GetObjectCannedAclInput(store_name=STORE, bucket="b", key="k")),
        stub.PutObjectCannedAcl(pb.PutObjectCannedAclInput(store_name=STORE, bucket="b", key="k", acl="private")),
        stub.ListObjectVersions(pb.ListObjectVersionsInput(store_name=STORE, bucket="b")),
    ):
        err = await _error(call)
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED
        assert str(err.details()).endswith("is not supported by the local object store")
    err = await _error(stub.SignURL(pb.SignURLInput(store_name="nope")))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT


def _get_unknown(stub: Stub) -> Any:
    async def drain() -> None:
        async for _ in stub.GetObject(pb.GetObjectInput(store_name="nope", bucket="b", key="k")):
            pass

    return drain()


async def _one(message: pb.PutObjectInput) -> AsyncIterator[pb.PutObjectInput]:
    yield message
