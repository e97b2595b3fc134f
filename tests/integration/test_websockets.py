"""A websockets echo server and client on treadle (and on asyncio's loop,
as a check of the test): every byte of every message is verified.

Needs the ``integration`` extra; skips without it."""

from __future__ import annotations

import random

import pytest

websockets = pytest.importorskip("websockets")
pytest.importorskip("websockets.asyncio.server")
from websockets.asyncio.client import connect  # noqa: E402
from websockets.asyncio.server import serve  # noqa: E402

BLOB = random.Random(9).randbytes(1024 * 1024)


async def echo(connection):
    async for message in connection:
        await connection.send(message)


def test_websockets_echo(run):
    async def main():
        async with serve(echo, "127.0.0.1", 0, max_size=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}", max_size=None) as client:
                rng = random.Random(2)
                for i in range(100):
                    n = rng.randint(0, 64 * 1024) if i % 10 else len(BLOB)
                    start = rng.randint(0, len(BLOB) - n)
                    data = BLOB[start:start + n]
                    await client.send(data)
                    assert await client.recv() == data
                text = "treadle ✓ " * 1000
                await client.send(text)
                assert await client.recv() == text
    run(main())
