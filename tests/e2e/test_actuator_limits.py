"""The actuator's listener holds nothing for good: idle connections are closed after the idle
timeout, connections over the cap are answered 503 and closed, and a request body over the
limit is answered 413 without being read (the sidecar's memory stays where it was)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable

import psutil
import pytest

from layotto.actuator.http import MAX_BODY, MAX_CONNECTIONS, Actuator
from layotto.config import layotto_json
from layotto.runtime.runtime import Runtime
from tests.support.sidecar import SidecarProcess, free_port, layotto_config

LIVENESS = b"GET /actuator/health/liveness HTTP/1.1\r\nHost: x\r\n\r\n"


async def until(what: str, condition: Callable[[], bool], within: float = 10.0) -> float:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            pytest.fail(f"{what} not within {within}s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


@contextlib.asynccontextmanager
async def actuator(**limits: float) -> AsyncIterator[Actuator]:
    rt = Runtime(layotto_json.load_document(layotto_config({}, grpc_port=free_port()), source="<test>"))
    await rt.start()
    listener = Actuator(rt, "127.0.0.1:0", **limits)  # type: ignore[arg-type]
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()
        await rt.close()


async def _connect(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", port)


async def _closed_by_server(reader: asyncio.StreamReader) -> bytes:
    """What the server sent before it closed the connection."""
    return await asyncio.wait_for(reader.read(), 10)


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """One response: its status line and its body."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status, *headers = head.split(b"\r\n")
    length = next(int(h.split(b":")[1]) for h in headers if h.lower().startswith(b"content-length:"))
    return status, await reader.readexactly(length)


async def test_idle_connections_are_closed_after_the_idle_timeout() -> None:
    async with actuator(idle_timeout=0.3) as listener:
        silent = [await _connect(listener.port) for _ in range(50)]
        # One that asked once and stays (keep-alive), one that stopped half way through a request.
        kept_reader, kept_writer = await _connect(listener.port)
        kept_writer.write(LIVENESS)
        assert (await _answer(kept_reader))[0].startswith(b"HTTP/1.1 200 ")
        partial_reader, partial_writer = await _connect(listener.port)
        partial_writer.write(b"GET /actuator/health/liveness HTTP/1.1\r\nHost:")
        await until("the connections are open", lambda: listener.connections == 52)
        took = await until("every idle connection closed", lambda: listener.connections == 0, within=5)
        for reader, _ in [*silent, (partial_reader, partial_writer), (kept_reader, kept_writer)]:
            assert await _closed_by_server(reader) == b""
        for _, writer in [*silent, (kept_reader, kept_writer), (partial_reader, partial_writer)]:
            writer.close()
    assert took < 3, took


async def test_connections_over_the_cap_are_answered_503_and_closed() -> None:
    async with actuator(max_connections=5, idle_timeout=30) as listener:
        held = [await _connect(listener.port) for _ in range(5)]
        await until("the connections are open", lambda: listener.connections == 5)
        reader, writer = await _connect(listener.port)
        answer = await _closed_by_server(reader)
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        assert b"Connection: close" in answer
        writer.close()
        assert listener.connections == 5
        # One goes, one more may come.
        held.pop()[1].close()
        await until("a connection closed", lambda: listener.connections == 4)
        reader, writer = await _connect(listener.port)
        writer.write(LIVENESS)
        assert (await _answer(reader))[0].startswith(b"HTTP/1.1 200 ")
        writer.close()
        for _, w in held:
            w.close()


async def test_a_body_over_the_limit_is_refused_unread() -> None:
    async with actuator(idle_timeout=5) as listener:
        reader, writer = await _connect(listener.port)
        writer.write(
            b"POST /actuator/health/readiness HTTP/1.1\r\nHost: x\r\n"
            + f"Content-Length: {MAX_BODY + 1}\r\n\r\n".encode()
        )
        answer = await _closed_by_server(reader)
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        writer.close()
        # A body within the limit is read (and dropped), and the connection serves on.
        reader, writer = await _connect(listener.port)
        body = b"x" * MAX_BODY
        head = f"POST /actuator/health/liveness HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n"
        writer.write(head.encode() + body)
        assert (await _answer(reader))[0].startswith(b"HTTP/1.1 200 ")
        writer.write(LIVENESS)
        assert (await _answer(reader))[0].startswith(b"HTTP/1.1 200 ")
        writer.close()
        # A body of unknown length is not read either.
        reader, writer = await _connect(listener.port)
        writer.write(b"POST /actuator/health/liveness HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        assert (await _closed_by_server(reader)).startswith(b"HTTP/1.1 411 ")
        writer.close()


def _send_huge_post(port: int, size: int) -> tuple[bytes, int]:
    """POST `size` bytes (announced, then sent until the server stops taking them); the answer
    and how many body bytes went out."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /actuator/health/readiness HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode())
        answer = sock.recv(4096)
        chunk, sent = b"x" * (1 << 20), 0
        with contextlib.suppress(OSError):
            while sent < size:
                sock.sendall(chunk)
                sent += len(chunk)
        return answer, sent


async def test_a_sidecar_refuses_a_huge_post_and_too_many_connections_without_growing() -> None:
    with SidecarProcess({"hellos": {"helloworld": {"type": "helloworld"}}}) as sidecar:
        assert sidecar.proc is not None and sidecar.actuator_port is not None
        process = psutil.Process(sidecar.proc.pid)
        rss_before = process.memory_info().rss
        answer, sent = await asyncio.to_thread(_send_huge_post, sidecar.actuator_port, 300 << 20)
        assert answer.startswith(b"HTTP/1.1 413 "), answer
        rss_after = process.memory_info().rss
        print(
            f"\n300 MiB POST: {sent >> 20} MiB sent before the close; RSS {rss_before >> 20} -> {rss_after >> 20} MiB"
        )
        assert rss_after - rss_before < 20 << 20

        extra = 44
        fds_before = process.num_fds()
        port = sidecar.actuator_port
        sockets = [socket.create_connection(("127.0.0.1", port)) for _ in range(MAX_CONNECTIONS + extra)]
        try:
            # Accepted in the order they connected: the last ones are over the cap.
            refused = 0
            for sock in sockets[-extra:]:
                sock.settimeout(5)
                if sock.recv(64).startswith(b"HTTP/1.1 503 "):
                    refused += 1
            fds_open = process.num_fds()
        finally:
            for sock in sockets:
                sock.close()
        print(f"{MAX_CONNECTIONS + extra} connections: {refused} refused; FDs {fds_before} -> {fds_open}")
        assert refused == extra
        assert fds_open - fds_before <= MAX_CONNECTIONS + 5


async def test_readiness_is_503_while_the_sidecar_drains() -> None:
    async with actuator() as listener:
        assert (await listener.health("readiness"))[0] == 200
        listener.rt.status = "DOWN"  # what Sidecar.stop sets first
        code, body = await listener.health("readiness")
        assert (code, body["status"]) == (503, "DOWN")
        # Liveness keeps upstream's answer for a runtime that is down.
        assert (await listener.health("liveness"))[0] == 500
