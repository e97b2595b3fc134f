"""The benchmark's servers, in-process on asyncio's loop and treadle's: the
bytes on the wire must be right before their speed means anything."""

from __future__ import annotations

import asyncio

import pytest


@pytest.fixture(autouse=True)
def _needs_networking(loop_factory):
    # Until a loop has its own create_server (treadle's networking is being
    # built in _net), these tests cannot say anything about it.
    loop = loop_factory()
    try:
        if type(loop).create_server is asyncio.AbstractEventLoop.create_server:
            pytest.skip(f"{type(loop).__module__} has no networking yet")
    finally:
        loop.close()

from treadle.bench._http import BODY, HEAD_CLOSE, RESPONSE
from treadle.bench._netloads import EchoProtocol, HttpProtocol, IdleProtocol

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
CLOSE = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"


async def _exchange(factory, payload: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(factory, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        data = await asyncio.wait_for(reader.read(), 10)       # until the server closes
        writer.close()
        await writer.wait_closed()
        return data
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("split", [False, True])
def test_http_pipelined_keep_alive_then_close(run, split):
    data = run(_exchange(lambda: HttpProtocol(split), GET + GET + CLOSE))
    assert data == RESPONSE + RESPONSE + HEAD_CLOSE + BODY


def test_http_bad_request_gets_400_and_close(run):
    data = run(_exchange(lambda: HttpProtocol(False), b"BROKEN\r\n\r\n"))
    assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
    assert b"Connection: close" in data


def test_echo_protocol_echoes_64k(run):
    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(EchoProtocol, "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            msg = bytes(range(256)) * 256
            writer.write(msg)
            got = await asyncio.wait_for(reader.readexactly(len(msg)), 10)
            writer.close()
            await writer.wait_closed()
            return got == msg
        finally:
            server.close()
            await server.wait_closed()

    assert run(main()) is True


def test_idle_protocol_greets_and_counts(run):
    async def main() -> tuple[bytes, int]:
        loop = asyncio.get_running_loop()
        transports: list = []
        server = await loop.create_server(lambda: IdleProtocol(transports), "127.0.0.1", 0)
        try:
            port = server.sockets[0].getsockname()[1]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            greeting = await asyncio.wait_for(reader.readexactly(1), 10)
            count = len(transports)
            writer.close()
            await writer.wait_closed()
            for t in transports:
                t.close()
            return greeting, count
        finally:
            server.close()
            await server.wait_closed()

    assert run(main()) == (b"!", 1)
