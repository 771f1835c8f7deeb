"""ObjectStorageService refuses bad input before any store sees it, through the real gRPC
server: bucket names and keys as S3 checks them (and no key that would be a path out of its
bucket), negative or oversized offsets, sizes and part numbers. Each refusal answers
INVALID_ARGUMENT with a message that names the field, and leaves the disk as it was; ranges
past an object's end keep S3's meaning (InvalidRange, PositionNotEqualToLength: 13 with the
store's text, as upstream answers every store failure). No failure shows the server's paths."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from layotto_proto.spec.proto.extension.v1.s3 import oss_pb2 as pb
from layotto_proto.spec.proto.extension.v1.s3 import oss_pb2_grpc
from tests.support.sidecar import running_sidecar

STORE = "oss"
BUCKET = "good-bucket"
INT64_MAX = 2**63 - 1
INVALID = grpc.StatusCode.INVALID_ARGUMENT

Stub = oss_pb2_grpc.ObjectStorageServiceStub
Tree = dict[str, tuple[object, ...]]


@dataclass
class Objects:
    stub: Stub
    scratch: Path
    root: Path


def _tree(top: Path) -> Tree:
    found: Tree = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            kind = "dir" if stat.S_ISDIR(info.st_mode) else "file"
            found[str(path.relative_to(top))] = (kind, path.read_bytes() if kind == "file" else b"")
    return found


@pytest.fixture
async def objects(tmp_path: Path) -> AsyncIterator[Objects]:
    root = tmp_path / "objects"
    config = {"oss": {STORE: {"type": "local", "metadata": {"rootPath": str(root)}}}}
    async with running_sidecar(config) as (_, address), grpc.aio.insecure_channel(address) as channel:
        stub = oss_pb2_grpc.ObjectStorageServiceStub(channel)
        await put(stub, BUCKET, "digits", b"0123456789")
        yield Objects(stub, tmp_path, root)


async def _one(message: Any) -> AsyncIterator[Any]:
    yield message


async def put(stub: Stub, bucket: str, key: str, body: bytes = b"x") -> pb.PutObjectOutput:
    reply: pb.PutObjectOutput = await stub.PutObject(
        _one(pb.PutObjectInput(store_name=STORE, bucket=bucket, key=key, body=body))
    )
    return reply


async def get(stub: Stub, bucket: str, key: str, **fields: Any) -> bytes:
    request = pb.GetObjectInput(store_name=STORE, bucket=bucket, key=key, **fields)
    return b"".join([m.body async for m in stub.GetObject(request)])


async def refused(objects: Objects, call: Any) -> tuple[grpc.StatusCode, str]:
    """The call's (code, details): it must fail, change nothing on disk, and not show where the
    store keeps its objects."""
    before = await asyncio.to_thread(_tree, objects.scratch)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    code, details = err.value.code(), err.value.details() or ""
    assert code != grpc.StatusCode.UNKNOWN, details
    assert str(objects.scratch) not in details, details
    assert await asyncio.to_thread(_tree, objects.scratch) == before
    return code, details


def _object_rpcs(stub: Stub, bucket: str, key: str) -> dict[str, Any]:
    """Every RPC that names one object, with `bucket` and `key`."""
    source = pb.CopySource(copy_source_bucket=BUCKET, copy_source_key="digits")
    return {
        "PutObject": put(stub, bucket, key),
        "GetObject": get(stub, bucket, key),
        "HeadObject": stub.HeadObject(pb.HeadObjectInput(store_name=STORE, bucket=bucket, key=key)),
        "IsObjectExist": stub.IsObjectExist(pb.IsObjectExistInput(store_name=STORE, bucket=bucket, key=key)),
        "DeleteObject": stub.DeleteObject(pb.DeleteObjectInput(store_name=STORE, bucket=bucket, key=key)),
        "CopyObject": stub.CopyObject(pb.CopyObjectInput(store_name=STORE, bucket=bucket, key=key, copy_source=source)),
        "PutObjectTagging": stub.PutObjectTagging(
            pb.PutObjectTaggingInput(store_name=STORE, bucket=bucket, key=key, tags={"a": "1"})
        ),
        "GetObjectTagging": stub.GetObjectTagging(pb.GetObjectTaggingInput(store_name=STORE, bucket=bucket, key=key)),
        "DeleteObjectTagging": stub.DeleteObjectTagging(
            pb.DeleteObjectTaggingInput(store_name=STORE, bucket=bucket, key=key)
        ),
        "AppendObject": stub.AppendObject(
            _one(pb.AppendObjectInput(store_name=STORE, bucket=bucket, key=key, body=b"x"))
        ),
        "CreateMultipartUpload": stub.CreateMultipartUpload(
            pb.CreateMultipartUploadInput(store_name=STORE, bucket=bucket, key=key)
        ),
        "UploadPart": stub.UploadPart(
            _one(pb.UploadPartInput(store_name=STORE, bucket=bucket, key=key, upload_id="0" * 32, part_number=1))
        ),
        "UploadPartCopy": stub.UploadPartCopy(
            pb.UploadPartCopyInput(
                store_name=STORE, bucket=bucket, key=key, upload_id="0" * 32, part_number=1, copy_source=source
            )
        ),
        "ListParts": stub.ListParts(pb.ListPartsInput(store_name=STORE, bucket=bucket, key=key, upload_id="0" * 32)),
        "AbortMultipartUpload": stub.AbortMultipartUpload(
            pb.AbortMultipartUploadInput(store_name=STORE, bucket=bucket, key=key, upload_id="0" * 32)
        ),
        "CompleteMultipartUpload": stub.CompleteMultipartUpload(
            pb.CompleteMultipartUploadInput(store_name=STORE, bucket=bucket, key=key, upload_id="0" * 32)
        ),
    }


# ---- bucket names ----

BAD_BUCKETS = [
    ("ab", "is 2 characters long; a bucket name is 3 to 63 characters"),
    ("b" * 64, "is 64 characters long; a bucket name is 3 to 63 characters"),
    ("", "is 0 characters long; a bucket name is 3 to 63 characters"),
    ("UpperCase", "holds 'U'; a bucket name is lowercase letters, digits, dots and hyphens"),
    ("under_score", "holds '_'; a bucket name is lowercase letters, digits, dots and hyphens"),
    ("a/b/c", "holds '/'; a bucket name is lowercase letters, digits, dots and hyphens"),
    # The pattern's `$` let a final newline through: a folder with a newline in its name.
    ("bucket\n", "holds '\\n'; a bucket name is lowercase letters, digits, dots and hyphens"),
    ("nul\x00bucket", "holds '\\x00'; a bucket name is lowercase letters, digits, dots and hyphens"),
    ("-starts", "must begin and end with a letter or digit"),
    ("ends.", "must begin and end with a letter or digit"),
    (".uploads", "must begin and end with a letter or digit"),
    ("two..dots", "has two dots in a row"),
    ("192.168.5.4", "is formatted as an IP address"),
]


@pytest.mark.parametrize(("bucket", "reason"), BAD_BUCKETS, ids=[repr(b[:12]) for b, _ in BAD_BUCKETS])
async def test_bucket_names_are_checked_as_s3_checks_them(objects: Objects, bucket: str, reason: str) -> None:
    rpcs = _object_rpcs(objects.stub, bucket, "k")
    rpcs["ListObjects"] = objects.stub.ListObjects(pb.ListObjectsInput(store_name=STORE, bucket=bucket))
    rpcs["ListMultipartUploads"] = objects.stub.ListMultipartUploads(
        pb.ListMultipartUploadsInput(store_name=STORE, bucket=bucket)
    )
    rpcs["DeleteObjects"] = objects.stub.DeleteObjects(
        pb.DeleteObjectsInput(store_name=STORE, bucket=bucket, delete=pb.Delete(objects=[pb.ObjectIdentifier(key="k")]))
    )
    for rpc, call in rpcs.items():
        assert await refused(objects, call) == (INVALID, f"invalid bucket: {reason}"), rpc


async def test_a_copy_source_bucket_is_named_as_its_field(objects: Objects) -> None:
    source = pb.CopySource(copy_source_bucket="Bad", copy_source_key="digits")
    for call in (
        objects.stub.CopyObject(pb.CopyObjectInput(store_name=STORE, bucket=BUCKET, key="c", copy_source=source)),
        objects.stub.UploadPartCopy(
            pb.UploadPartCopyInput(
                store_name=STORE, bucket=BUCKET, key="c", upload_id="0" * 32, part_number=1, copy_source=source
            )
        ),
    ):
        assert await refused(objects, call) == (
            INVALID,
            "invalid copy_source.copy_source_bucket: holds 'B'; a bucket name is lowercase letters, digits, dots"
            " and hyphens",
        )


async def test_good_bucket_names_work(objects: Objects) -> None:
    for bucket in ("abc", "a" * 63, "my.bucket-1", "1bucket9"):
        await put(objects.stub, bucket, "k", b"v")
        assert await get(objects.stub, bucket, "k") == b"v"


# ---- keys ----

BAD_KEYS = [
    ("", "is empty"),
    ("k" * 1025, "is 1025 bytes long; a key is at most 1024 bytes (UTF-8)"),
    ("é" * 513, "is 1026 bytes long; a key is at most 1024 bytes (UTF-8)"),
    ("a\x00b", "holds the control character U+0000; a key is text without any"),
    ("line\nbreak", "holds the control character U+000A; a key is text without any"),
    ("c1\x9f", "holds the control character U+009F; a key is text without any"),
    ("/etc/passwd", "is an absolute path; a key is relative to its bucket"),
    ("..", "leads outside its bucket: '..' climbs above it"),
    ("../sibling/x", "leads outside its bucket: '..' climbs above it"),
    ("a/../../x", "leads outside its bucket: '..' climbs above it"),
]


@pytest.mark.parametrize(("key", "reason"), BAD_KEYS, ids=[repr(k[:12]) for k, _ in BAD_KEYS])
async def test_object_keys_are_checked_as_s3_checks_them(objects: Objects, key: str, reason: str) -> None:
    for rpc, call in _object_rpcs(objects.stub, BUCKET, key).items():
        assert await refused(objects, call) == (INVALID, f"invalid key: {reason}"), rpc
    source = pb.CopySource(copy_source_bucket=BUCKET, copy_source_key=key)
    call = objects.stub.CopyObject(pb.CopyObjectInput(store_name=STORE, bucket=BUCKET, key="c", copy_source=source))
    assert await refused(objects, call) == (INVALID, f"invalid copy_source.copy_source_key: {reason}")


async def test_delete_objects_checks_every_key_before_deleting_any(objects: Objects) -> None:
    await put(objects.stub, BUCKET, "first")
    keys = [pb.ObjectIdentifier(key="first"), pb.ObjectIdentifier(key="../x"), pb.ObjectIdentifier(key="digits")]
    call = objects.stub.DeleteObjects(
        pb.DeleteObjectsInput(store_name=STORE, bucket=BUCKET, delete=pb.Delete(objects=keys))
    )
    assert await refused(objects, call) == (
        INVALID,
        "invalid delete.objects[1].key: leads outside its bucket: '..' climbs above it",
    )
    assert await get(objects.stub, BUCKET, "first") == b"x"


async def test_keys_within_the_limits_work(objects: Objects) -> None:
    for key in ("a/../b", "dir/./file", "é" * 20, "tab-free key with spaces", "a" * 200):
        await put(objects.stub, BUCKET, key, key.encode())
        assert await get(objects.stub, BUCKET, key) == key.encode()
    # S3's limit is 1024 bytes; the local store keeps a key in one file name, which is shorter.
    code, details = await refused(objects, put(objects.stub, BUCKET, "k" * 1024))
    assert code == grpc.StatusCode.INTERNAL and "too long for the local store" in details


# ---- ranges, offsets, sizes ----


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"start": -1}, "invalid start -1: a byte offset is 0 or more"),
        ({"start": -(2**63)}, f"invalid start {-(2**63)}: a byte offset is 0 or more"),
        ({"end": -1}, "invalid end -1: a byte offset is 0 or more (0: to the object's end)"),
        ({"start": 2, "end": -5}, "invalid end -5: a byte offset is 0 or more (0: to the object's end)"),
        ({"start": 5, "end": 2}, "invalid end 2: the range's last byte is start (5) or more"),
    ],
)
async def test_get_object_refuses_negative_and_backward_ranges(
    objects: Objects, fields: dict[str, int], message: str
) -> None:
    assert await refused(objects, get(objects.stub, BUCKET, "digits", **fields)) == (INVALID, message)


async def test_get_object_ranges_past_the_end_keep_s3s_meaning(objects: Objects) -> None:
    # A range that ends past the object is cut at its end; one that starts past it is S3's
    # InvalidRange, a store failure.
    assert await get(objects.stub, BUCKET, "digits", start=7, end=INT64_MAX) == b"789"
    assert await get(objects.stub, BUCKET, "digits", start=3, end=3) == b"3"
    for start in (10, INT64_MAX):
        code, details = await refused(objects, get(objects.stub, BUCKET, "digits", start=start))
        assert code == grpc.StatusCode.INTERNAL
        assert details == f"get file fail,err: InvalidRange: bytes {start}- are outside the object (10 bytes)"


async def test_append_object_position_is_an_offset(objects: Objects) -> None:
    def append(position: int) -> Any:
        return objects.stub.AppendObject(
            _one(pb.AppendObjectInput(store_name=STORE, bucket=BUCKET, key="digits", position=position, body=b"!"))
        )

    assert await refused(objects, append(-1)) == (
        INVALID,
        "invalid position -1: a byte offset is 0 or more (the object's length)",
    )
    code, details = await refused(objects, append(INT64_MAX))
    assert code == grpc.StatusCode.INTERNAL and details.startswith("PositionNotEqualToLength: ")
    assert (await append(10)).append_position == 11


async def test_upload_part_copy_checks_offset_size_and_part_number(objects: Objects) -> None:
    created = await objects.stub.CreateMultipartUpload(
        pb.CreateMultipartUploadInput(store_name=STORE, bucket=BUCKET, key="parts")
    )
    source = pb.CopySource(copy_source_bucket=BUCKET, copy_source_key="digits")

    def copy(**fields: Any) -> Any:
        request = {"part_number": 1, **fields}
        return objects.stub.UploadPartCopy(
            pb.UploadPartCopyInput(
                store_name=STORE, bucket=BUCKET, key="parts", upload_id=created.upload_id, copy_source=source, **request
            )
        )

    cases = [
        ({"start_position": -1}, "invalid start_position -1: a byte offset is 0 or more"),
        (
            {"part_size": -1},
            "invalid part_size -1: a part is 0 (to the object's end) to 5368709120 bytes (5 GiB, S3's largest part)",
        ),
        (
            {"part_size": 5 * 1024**3 + 1},
            "invalid part_size 5368709121: a part is 0 (to the object's end) to 5368709120 bytes"
            " (5 GiB, S3's largest part)",
        ),
        ({"part_number": 0}, "invalid part_number 0: a part number is 1 to 10000"),
        ({"part_number": 10001}, "invalid part_number 10001: a part number is 1 to 10000"),
        ({"part_number": -1}, "invalid part_number -1: a part number is 1 to 10000"),
    ]
    for fields, message in cases:
        assert await refused(objects, copy(**fields)) == (INVALID, message), fields
    code, details = await refused(objects, copy(start_position=INT64_MAX))
    assert code == grpc.StatusCode.INTERNAL and "InvalidRange" in details
    parts = await objects.stub.ListParts(
        pb.ListPartsInput(store_name=STORE, bucket=BUCKET, key="parts", upload_id=created.upload_id)
    )
    assert list(parts.parts) == []
    done = await copy(start_position=8, part_size=100)  # cut at the object's end
    assert done.copy_part_result.etag

    upload = objects.stub.UploadPart(
        _one(
            pb.UploadPartInput(
                store_name=STORE, bucket=BUCKET, key="parts", upload_id=created.upload_id, part_number=0, body=b"x"
            )
        )
    )
    assert await refused(objects, upload) == (INVALID, "invalid part_number 0: a part number is 1 to 10000")


# ---- what failures say ----


async def test_os_errors_do_not_show_server_paths(objects: Objects) -> None:
    # A file where a bucket's folder would be: the store's write fails in the OS.
    (objects.root / "blocked").write_bytes(b"not a folder")
    code, details = await refused(objects, put(objects.stub, "blocked", "k"))
    assert code == grpc.StatusCode.INTERNAL
    assert details.startswith("[Errno ") and "blocked" not in details, details
