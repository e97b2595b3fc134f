"""A uvicorn ASGI app served to httpx, both on treadle (and on asyncio's
loop, as a check of the test): every byte of every body is verified.

Needs the ``integration`` extra; skips without it."""

from __future__ import annotations

import asyncio
import logging
import random
import socket

import pytest

uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

BLOB = random.Random(5).randbytes(2 * 1024 * 1024 + 3)


async def app(scope, receive, send):
    """Echoes the request body; GET /blob?n=... streams BLOB in pieces."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    assert scope["type"] == "http"
    if scope["method"] == "GET":
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        rng = random.Random(scope["query_string"])
        pos = 0
        while pos < len(BLOB):
            n = rng.randint(1, 65536)
            await send({"type": "http.response.body", "body": BLOB[pos:pos + n],
                        "more_body": True})
            pos += n
        await send({"type": "http.response.body", "body": b""})
        return
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": bytes(body)})


def test_uvicorn_app_served_to_httpx(run):
    async def main():
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level=logging.WARNING, access_log=False,
                                lifespan="on", http="h11")
        server = uvicorn.Server(config)
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        try:
            while not server.started:
                await asyncio.sleep(0.01)
                assert not serving.done(), serving
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                rng = random.Random(1)

                async def one(i: int) -> None:
                    body = BLOB[i:i + rng.randint(0, 300_000)]
                    resp = await client.post("/echo", content=body)
                    assert resp.status_code == 200
                    assert resp.content == body
                await asyncio.gather(*(one(i) for i in range(30)))

                resp = await client.post("/echo", content=BLOB)
                assert resp.content == BLOB

                async with client.stream("GET", "/blob?seed=9") as resp:
                    received = bytearray()
                    async for chunk in resp.aiter_bytes():
                        received += chunk
                assert bytes(received) == BLOB
        finally:
            server.should_exit = True
            await serving
            sock.close()
    run(main())
