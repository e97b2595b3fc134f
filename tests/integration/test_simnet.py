"""Unchanged aiohttp (server and client, with TLS and a crash), uvicorn +
httpx and websockets on hosts of treadle's simulated network
(``treadle.testing.simnet``).  Needs the ``integration`` extra (each test
skips when its package is missing) and, for TLS, the ``openssl`` command."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.testing.simnet._certs import make_contexts

pytestmark = pytest.mark.treadle


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_contexts(tmp_path_factory.mktemp("certs"))


async def test_aiohttp_server_and_client(treadle_net):
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web
    server = treadle_net.add_host("server")
    client = treadle_net.add_host("client")

    async def serve():
        async def hello(request):
            body = await request.read()
            return web.Response(body=b"hello " + body)
        app = web.Application()
        app.router.add_post("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, None, 8080).start()
        await asyncio.Event().wait()

    server.start(serve)
    await asyncio.sleep(0.1)

    async def fetch():
        async with aiohttp.ClientSession() as session:
            replies = []
            for i in range(3):
                async with session.post("http://server:8080/", data=b"%d" % i) as resp:
                    replies.append((resp.status, await resp.read()))
            return replies

    assert await client.run(fetch()) == [(200, b"hello 0"), (200, b"hello 1"),
                                        (200, b"hello 2")]


async def test_aiohttp_with_tls_and_a_crash(treadle_net, certificate):
    aiohttp = pytest.importorskip("aiohttp")
    from aiohttp import web
    server_ctx, client_ctx = certificate
    server = treadle_net.add_host("server")
    client = treadle_net.add_host("client")

    async def serve():
        async def hello(request):
            return web.Response(text="secure")
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, None, 8443, ssl_context=server_ctx).start()
        await asyncio.Event().wait()

    server.start(serve)
    await asyncio.sleep(0.1)

    async def fetch():
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            async with session.get("https://server:8443/", ssl=client_ctx) as resp:
                first = await resp.text()
            treadle_net.crash("server")
            try:
                async with session.get("https://server:8443/", ssl=client_ctx) as resp:
                    await resp.text()
            except (aiohttp.ClientError, TimeoutError) as exc:
                failed = type(exc).__name__
            treadle_net.restart("server")
            await asyncio.sleep(0.1)
            async with session.get("https://server:8443/", ssl=client_ctx) as resp:
                return first, failed, await resp.text()

    first, failed, again = await client.run(fetch())
    assert first == again == "secure"
    assert failed


async def test_uvicorn_and_httpx(treadle_net):
    uvicorn = pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    server = treadle_net.add_host("server")
    client = treadle_net.add_host("client")

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body) + 3).encode())]})
        await send({"type": "http.response.body", "body": b"re:" + body})

    async def serve():
        config = uvicorn.Config(app, host="0.0.0.0", port=8000, lifespan="off",
                                log_level=logging.WARNING, access_log=False, http="h11")
        await uvicorn.Server(config).serve()

    server.start(serve)
    await asyncio.sleep(1)

    async def fetch():
        async with httpx.AsyncClient(base_url="http://server:8000") as http:
            return [(await http.post("/", content=b"x" * i)).content for i in (1, 50000)]

    assert await client.run(fetch()) == [b"re:x", b"re:" + b"x" * 50000]


async def test_websockets(treadle_net):
    pytest.importorskip("websockets")
    pytest.importorskip("websockets.asyncio.server")
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve as ws_serve
    server = treadle_net.add_host("server")
    client = treadle_net.add_host("client")

    async def echo(connection):
        async for message in connection:
            await connection.send(message[::-1])

    async def serve():
        async with ws_serve(echo, None, 8765):
            await asyncio.Event().wait()

    server.start(serve)
    await asyncio.sleep(0.1)

    async def talk():
        async with connect("ws://server:8765") as ws:
            out = []
            for text in ("abc", "simulated"):
                await ws.send(text)
                out.append(await ws.recv())
            return out

    assert await client.run(talk()) == ["cba", "detalumis"]
