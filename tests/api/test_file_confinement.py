"""The File API keeps every call inside the store's root, through the real gRPC server: names
that climb out, name the root, hold control characters or are too long; permission bits beyond
0o777; links in the root that lead out of it or nowhere; OS errors that would name the
server's paths. Each refused call answers INVALID_ARGUMENT (GetFile: upstream's INTERNAL for
what the store refuses) with a message that names the field, and leaves the disk as it was."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from layotto_proto.spec.proto.runtime.v1 import runtime_pb2 as pb
from layotto_proto.spec.proto.runtime.v1 import runtime_pb2_grpc
from tests.support.sidecar import running_sidecar

STORE = "files"
SECRET = b"outside the root"

Stub = runtime_pb2_grpc.RuntimeStub
#: A tree as lstat sees it: each entry's kind, permission bits and content or link target.
Tree = dict[str, tuple[object, ...]]


@dataclass
class Files:
    stub: Stub
    #: The scratch folder: the store's root and a folder beside it, outside the store.
    scratch: Path
    root: Path
    outside: Path


def _tree(top: Path) -> Tree:
    found: Tree = {}
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = Path(folder, name)
            info = path.lstat()
            mode = stat.S_IMODE(info.st_mode)
            if stat.S_ISLNK(info.st_mode):
                found[str(path.relative_to(top))] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                found[str(path.relative_to(top))] = ("dir", mode)
            else:
                found[str(path.relative_to(top))] = ("file", mode, path.read_bytes())
    return found


async def tree(top: Path) -> Tree:
    return await asyncio.to_thread(_tree, top)


@pytest.fixture
async def files(tmp_path: Path) -> AsyncIterator[Files]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    config = {"file": {STORE: {"type": "local", "metadata": {"rootPath": str(root)}}}}
    async with running_sidecar(config) as (_, address), grpc.aio.insecure_channel(address) as channel:
        yield Files(runtime_pb2_grpc.RuntimeStub(channel), tmp_path, root, outside)


async def _requests(name: str, chunks: list[bytes], metadata: dict[str, str]) -> AsyncIterator[pb.PutFileRequest]:
    for chunk in chunks:
        yield pb.PutFileRequest(store_name=STORE, name=name, data=chunk, metadata=metadata)


async def put(stub: Stub, name: str, data: bytes = b"data", **metadata: str) -> None:
    await stub.PutFile(_requests(name, [data], metadata))


async def get(stub: Stub, name: str) -> bytes:
    return b"".join([r.data async for r in stub.GetFile(pb.GetFileRequest(store_name=STORE, name=name))])


def _req(name: str) -> pb.FileRequest:
    return pb.FileRequest(store_name=STORE, name=name)


async def listing(stub: Stub, name: str = "") -> list[str]:
    reply = await stub.ListFile(pb.ListFileRequest(request=_req(name), page_size=100))
    return [f.file_name for f in reply.files]


async def delete(stub: Stub, name: str) -> None:
    await stub.DelFile(pb.DelFileRequest(request=_req(name)))


async def meta(stub: Stub, name: str) -> pb.GetFileMetaResponse:
    reply: pb.GetFileMetaResponse = await stub.GetFileMeta(pb.GetFileMetaRequest(request=_req(name)))
    return reply


async def refused(files: Files, call: object) -> tuple[grpc.StatusCode, str]:
    """The call's (code, details): it must fail, change nothing on disk, and not show where the
    store keeps its files."""
    assert asyncio.iscoroutine(call)
    before = await tree(files.scratch)
    with pytest.raises(grpc.aio.AioRpcError) as err:
        await call
    code, details = err.value.code(), err.value.details() or ""
    assert code != grpc.StatusCode.UNKNOWN, details
    assert str(files.scratch) not in details and str(files.root) not in details, details
    assert await tree(files.scratch) == before
    return code, details


def _every_rpc(stub: Stub, name: str) -> dict[str, object]:
    return {
        "GetFile": get(stub, name),
        "PutFile": put(stub, name),
        "ListFile": listing(stub, name),
        "DelFile": delete(stub, name),
        "GetFileMeta": meta(stub, name),
    }


# ---- names ----


@pytest.mark.parametrize("name", [".", "/", "a/..", "./", "//"])
async def test_a_name_for_the_root_is_refused_before_any_write(files: Files, name: str) -> None:
    # Upstream-style temp files beside the target landed beside the root, outside it.
    code, details = await refused(files, put(files.stub, name))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "invalid file name: names the store's root folder, not a file"
    for call in (get(files.stub, name), delete(files.stub, name)):
        assert (await refused(files, call))[0] == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("name", ["..", "../x", "a/../../x", "/../outside/secret.txt", "a/b/../../.."])
async def test_a_name_that_climbs_out_is_refused_by_every_rpc(files: Files, name: str) -> None:
    for rpc, call in _every_rpc(files.stub, name).items():
        code, details = await refused(files, call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, rpc
        assert details == "invalid file name: leads outside the store: '..' climbs above its root", rpc


@pytest.mark.parametrize(
    ("name", "char"),
    [
        ("a\x00b", "U+0000"),
        ("line\nbreak", "U+000A"),
        ("tab\there", "U+0009"),
        ("del\x7f", "U+007F"),
        ("c1\x85", "U+0085"),
    ],
)
async def test_control_characters_are_refused_by_every_rpc(files: Files, name: str, char: str) -> None:
    for rpc, call in _every_rpc(files.stub, name).items():
        code, details = await refused(files, call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, rpc
        assert details == f"invalid file name: holds the control character {char}; a name is text without any", rpc


async def test_an_empty_name_is_refused_and_a_too_long_one_names_the_limit(files: Files) -> None:
    for call in (put(files.stub, ""), get(files.stub, ""), delete(files.stub, ""), meta(files.stub, "")):
        assert await refused(files, call) == (grpc.StatusCode.INVALID_ARGUMENT, "invalid file name: is empty")
    long = "d/" * 2048 + "f"
    for call in _every_rpc(files.stub, long).values():
        code, details = await refused(files, call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details == "invalid file name: is 4097 bytes long; a name is at most 4096 bytes (UTF-8)"


async def test_writes_stream_into_a_folder_inside_the_root(files: Files) -> None:
    seen: list[Tree] = []

    async def slow() -> AsyncIterator[pb.PutFileRequest]:
        yield pb.PutFileRequest(store_name=STORE, name="dir/new.bin", data=b"first")
        await asyncio.sleep(0.3)
        seen.append(await tree(files.scratch))
        yield pb.PutFileRequest(data=b" second")

    await files.stub.PutFile(slow())
    during = [path for path in seen[0] if seen[0][path][0] == "file"]
    assert [p for p in during if not p.startswith("root/.tmp/")] == ["outside/secret.txt"]
    assert any(p.startswith("root/.tmp/") for p in during)
    assert await get(files.stub, "dir/new.bin") == b"first second"
    assert sorted(os.listdir(files.root / ".tmp")) == []
    assert await listing(files.stub) == ["dir"]  # the store's own folder is not listed
    # Its own folder is no caller's to name.
    code, details = await refused(files, put(files.stub, ".tmp/x"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "own folder .tmp" in details


# ---- fileMode ----


@pytest.mark.parametrize(
    "mode",
    [
        str(0o4755),  # setuid
        str(0o2755),  # setgid
        str(0o1777),  # sticky
        "512",
        "-1",
        "9" * 5000,  # an OverflowError in chmod, once
        "99999999999999999999",
        "0o777",
        "0x1ff",
        " 420",
        "4_20",
        "rw-r--r--",
    ],
    ids=lambda value: repr(value[:12]),
)
async def test_file_mode_is_permission_bits_only(files: Files, mode: str) -> None:
    code, details = await refused(files, put(files.stub, "f.txt", fileMode=mode))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("invalid metadata fileMode ")
    assert details.endswith(": permission bits only, a decimal number from 0 to 511 (0o777), e.g. 420 for rw-r--r--")
    assert len(details) < 200


async def test_file_mode_and_flag_within_their_limits_work(files: Files) -> None:
    await put(files.stub, "private.txt", fileMode="384")  # 0o600
    await put(files.stub, "open.txt", fileMode="511")
    await put(files.stub, "none.txt", fileMode="0")
    modes = {name: stat.S_IMODE((files.root / name).stat().st_mode) for name in ("private.txt", "open.txt", "none.txt")}
    assert modes == {"private.txt": 0o600, "open.txt": 0o777, "none.txt": 0}
    assert list((await meta(files.stub, "private.txt")).response.metadata["FileMode"].value) == ["384"]

    code, details = await refused(files, put(files.stub, "f.txt", fileFlag="-1"))
    assert (code, details) == (
        grpc.StatusCode.INVALID_ARGUMENT,
        "invalid metadata fileFlag '-1': open(2) flags, a decimal number from 0 to 2147483647",
    )
    await put(files.stub, "once.txt", b"one", fileFlag=str(os.O_EXCL))
    code, details = await refused(files, put(files.stub, "once.txt", b"two", fileFlag=str(os.O_EXCL)))
    assert (code, details) == (grpc.StatusCode.ALREADY_EXISTS, "file once.txt already exists")
    assert await get(files.stub, "once.txt") == b"one"


# ---- links ----


@pytest.fixture
async def linked(files: Files) -> Files:
    await put(files.stub, "real.txt", b"inside")
    await put(files.stub, "sub/kept.txt", b"kept")
    root = files.root
    (root / "out").symlink_to(files.outside, target_is_directory=True)
    (root / "secret").symlink_to(files.outside / "secret.txt")
    (root / "dangling").symlink_to(root / "nowhere")
    (root / "dangling-out").symlink_to(files.outside / "nowhere")
    (root / "loop").symlink_to(root / "loop")
    (root / "inner").symlink_to(root / "real.txt")
    (root / "sub" / "up").symlink_to("../real.txt")
    return files


async def test_listing_leaves_out_links_that_lead_outside_or_nowhere(linked: Files) -> None:
    assert await listing(linked.stub) == ["inner", "real.txt", "sub"]
    reply = await linked.stub.ListFile(pb.ListFileRequest(request=_req("")))
    assert {f.file_name: f.size for f in reply.files} == {"inner": 6, "real.txt": 6, "sub": reply.files[2].size}
    assert await listing(linked.stub, "sub") == ["kept.txt", "up"]
    code, details = await refused(linked, listing(linked.stub, "out"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and details == "file name 'out' points outside the store"


@pytest.mark.parametrize("name", ["secret", "out/secret.txt", "dangling-out", "out/../out/secret.txt"])
async def test_no_rpc_follows_a_link_out_of_the_root(linked: Files, name: str) -> None:
    code, details = await refused(linked, get(linked.stub, name))
    # GetFile answers what the store refuses as upstream does: 13, "get file fail,err: ...".
    assert (code, details) == (
        grpc.StatusCode.INTERNAL,
        f"get file fail,err: file name {name!r} points outside the store",
    )
    for call in (put(linked.stub, name, b"overwritten"), meta(linked.stub, name)):
        assert await refused(linked, call) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            f"file name {name!r} points outside the store",
        )
    assert (linked.outside / "secret.txt").read_bytes() == SECRET


async def test_put_through_a_linked_folder_creates_nothing_outside(linked: Files) -> None:
    code, details = await refused(linked, put(linked.stub, "out/planted.txt"))
    assert (code, details) == (grpc.StatusCode.INVALID_ARGUMENT, "file name 'out/planted.txt' points outside the store")
    code, _ = await refused(linked, put(linked.stub, "out/deeper/planted.txt"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert sorted(os.listdir(linked.outside)) == ["secret.txt"]


async def test_deleting_a_link_removes_the_link_never_its_target(linked: Files) -> None:
    code, _ = await refused(linked, delete(linked.stub, "out/secret.txt"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    await delete(linked.stub, "secret")
    await delete(linked.stub, "inner")
    assert not (linked.root / "secret").is_symlink() and not (linked.root / "inner").is_symlink()
    assert (linked.outside / "secret.txt").read_bytes() == SECRET
    assert (linked.root / "real.txt").read_bytes() == b"inside"


async def test_links_inside_the_root_work_and_broken_ones_fail_cleanly(linked: Files) -> None:
    assert await get(linked.stub, "inner") == b"inside"
    assert await get(linked.stub, "sub/up") == b"inside"
    assert (await meta(linked.stub, "inner")).size == 6
    for name in ("dangling", "loop"):
        code, details = await refused(linked, get(linked.stub, name))
        assert code == grpc.StatusCode.INTERNAL and details.startswith("get file fail,err: "), details
        assert name in details
        code, details = await refused(linked, meta(linked.stub, name))
        assert code in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INTERNAL) and name in details


# ---- what failures say ----


async def test_os_errors_name_the_file_as_the_caller_named_it(files: Files) -> None:
    await put(files.stub, "plain.txt", b"x")
    long_segment = "n" * 300  # over NAME_MAX: the OS refuses it, with the full server path
    cases = {
        get(files.stub, long_segment): (grpc.StatusCode.INTERNAL, "get file fail,err: "),
        put(files.stub, long_segment): (grpc.StatusCode.INTERNAL, ""),
        # The folders made for it are removed again when the write fails.
        put(files.stub, f"new/folders/{long_segment}"): (grpc.StatusCode.INTERNAL, ""),
        meta(files.stub, long_segment): (grpc.StatusCode.INTERNAL, ""),
        delete(files.stub, long_segment): (grpc.StatusCode.INTERNAL, ""),
        put(files.stub, "plain.txt/below"): (grpc.StatusCode.INVALID_ARGUMENT, ""),
        get(files.stub, "plain.txt/below"): (grpc.StatusCode.INTERNAL, "get file fail,err: "),
        listing(files.stub, "plain.txt"): (grpc.StatusCode.NOT_FOUND, "directory plain.txt does not exist"),
    }
    for call, (code, start) in cases.items():
        got_code, details = await refused(files, call)
        assert got_code == code and details.startswith(start), details
    code, details = await refused(files, get(files.stub, long_segment))
    assert details == f"get file fail,err: [Errno 36] File name too long: {long_segment!r}"
    code, details = await refused(files, put(files.stub, "plain.txt/below"))
    assert details == "plain.txt/below: a folder on its path is a file"
