"""File API conformance: the same cases for every file component, through the gRPC server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.contract.file.backends import ROWS, Row
from tests.support.rows import params
from tests.support.sidecar import running_sidecar


@pytest.fixture(params=params(ROWS))
async def stub(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[runtime_pb2_grpc.RuntimeStub]:
    row: Row = request.param
    config = {"file": {"files": row.entry(tmp_path)}}
    async with running_sidecar(config) as (_, address), grpc.aio.insecure_channel(address) as channel:
        yield runtime_pb2_grpc.RuntimeStub(channel)


async def _put(stub: runtime_pb2_grpc.RuntimeStub, name: str, chunks: list[bytes], **md: str) -> None:
    async def requests() -> AsyncIterator[pb.PutFileRequest]:
        for chunk in chunks:
            yield pb.PutFileRequest(store_name="files", name=name, data=chunk, metadata=md)

    await stub.PutFile(requests())


async def _get(stub: runtime_pb2_grpc.RuntimeStub, name: str) -> list[bytes]:
    return [reply.data async for reply in stub.GetFile(pb.GetFileRequest(store_name="files", name=name))]


def _req(name: str) -> pb.FileRequest:
    return pb.FileRequest(store_name="files", name=name)


async def test_put_get_round_trip_in_bounded_chunks(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    name = f"dir-{uuid.uuid4().hex}/blob.bin"
    body = bytes(range(256)) * 1200  # 307200 bytes: several GetFile chunks
    await _put(stub, name, [body[:100000], body[100000:250000], body[250000:]])
    chunks = await _get(stub, name)
    assert b"".join(chunks) == body
    assert max(len(c) for c in chunks) <= 102400


async def test_stat_list_and_delete(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    folder = f"list-{uuid.uuid4().hex}"
    for i in range(5):
        await _put(stub, f"{folder}/f{i}", [b"x" * (i + 1)])
    meta = await stub.GetFileMeta(pb.GetFileMetaRequest(request=_req(f"{folder}/f2")))
    assert meta.size == 3 and meta.last_modified
    assert list(meta.response.metadata["IsDir"].value) == ["false"]

    first = await stub.ListFile(pb.ListFileRequest(request=_req(folder), page_size=2))
    assert [f.file_name for f in first.files] == ["f0", "f1"] and first.is_truncated
    rest = await stub.ListFile(pb.ListFileRequest(request=_req(folder), page_size=10, marker=first.marker))
    assert [f.file_name for f in rest.files] == ["f2", "f3", "f4"] and not rest.is_truncated

    await stub.DelFile(pb.DelFileRequest(request=_req(f"{folder}/f0")))
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.GetFileMeta(pb.GetFileMetaRequest(request=_req(f"{folder}/f0")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.DelFile(pb.DelFileRequest(request=_req(f"{folder}/f0")))
    assert err.value.code() == grpc.StatusCode.NOT_FOUND


async def test_missing_file_and_bad_requests(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _get(stub, f"missing-{uuid.uuid4().hex}")
    assert err.value.code() == grpc.StatusCode.INTERNAL
    assert err.value.details().startswith("get file fail,err: ")

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.ListFile(pb.ListFileRequest())
    assert (err.value.code(), err.value.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "request can't be nil")

    # A name that climbs out of the store is refused as the caller's mistake, before any store
    # sees it (upstream opens it).
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _get(stub, "../../etc/passwd")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "outside the store" in err.value.details()

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await _put(stub, "../escape", [b"x"])
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_unknown_store_uses_upstreams_two_wordings(stub: runtime_pb2_grpc.RuntimeStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        [r async for r in stub.GetFile(pb.GetFileRequest(store_name="notexists", name="x"))]
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "not supported store type: notexists",
    )
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await stub.DelFile(pb.DelFileRequest(request=pb.FileRequest(store_name="notexists", name="x")))
    assert (err.value.code(), err.value.details()) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "not support store type: notexists",
    )
