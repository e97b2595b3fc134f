"""aiohttp's server and client on treadle (and, as a check of the test,
on asyncio's loop): every byte of every body is verified.

Needs the ``integration`` extra (``pip install ".[integration]"``); skips
without it."""

from __future__ import annotations

import asyncio
import hashlib
import random

import pytest

aiohttp = pytest.importorskip("aiohttp")
from aiohttp import web  # noqa: E402

BLOB = random.Random(3).randbytes(3 * 1024 * 1024 + 17)


def _app() -> web.Application:
    async def echo(request: web.Request) -> web.Response:
        body = await request.read()
        return web.Response(body=body, headers={"X-Sha256": hashlib.sha256(body).hexdigest()})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        rng = random.Random(int(request.query["seed"]))
        pos = 0
        while pos < len(BLOB):
            n = rng.randint(1, 100_000)
            await response.write(BLOB[pos:pos + n])
            pos += n
        await response.write_eof()
        return response

    async def ws(request: web.Request) -> web.WebSocketResponse:
        sock = web.WebSocketResponse()
        await sock.prepare(request)
        async for msg in sock:
            if msg.type == aiohttp.WSMsgType.BINARY:
                await sock.send_bytes(msg.data[::-1])
            elif msg.type == aiohttp.WSMsgType.TEXT:
                await sock.send_str(msg.data.upper())
        return sock

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/echo", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/ws", ws)
    return app


async def _serve():
    runner = web.AppRunner(_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


def test_aiohttp_server_and_client(run):
    async def main():
        runner, url = await _serve()
        try:
            async with aiohttp.ClientSession() as session:
                # Many requests over a few keep-alive connections, concurrently.
                async def one(i: int) -> None:
                    body = BLOB[i * 1000:i * 1000 + 50_000 + i]
                    async with session.post(url + "/echo", data=body) as resp:
                        assert resp.status == 200
                        got = await resp.read()
                        assert got == body
                        assert resp.headers["X-Sha256"] == hashlib.sha256(body).hexdigest()
                await asyncio.gather(*(one(i) for i in range(40)))

                async with session.post(url + "/echo", data=BLOB) as resp:
                    assert await resp.read() == BLOB

                async with session.get(url + "/stream", params={"seed": "7"}) as resp:
                    received = bytearray()
                    async for chunk in resp.content.iter_any():
                        received += chunk
                    assert bytes(received) == BLOB
        finally:
            await runner.cleanup()
    run(main())


def test_aiohttp_websocket(run):
    async def main():
        runner, url = await _serve()
        try:
            async with aiohttp.ClientSession() as session:
                async with session.ws_connect(url + "/ws") as sock:
                    rng = random.Random(11)
                    for i in range(50):
                        n = rng.randint(0, 200_000)
                        data = BLOB[i:i + n]
                        await sock.send_bytes(data)
                        reply = await sock.receive()
                        assert reply.type == aiohttp.WSMsgType.BINARY
                        assert reply.data == data[::-1]
                    await sock.send_str("hello, treadle")
                    assert (await sock.receive()).data == "HELLO, TREADLE"
        finally:
            await runner.cleanup()
    run(main())
