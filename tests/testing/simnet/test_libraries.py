"""Unchanged aiohttp (server and client), uvicorn + httpx, websockets and
TLS on simulated hosts.  Needs the ``integration`` extra (each test skips
when its package is missing) and, for TLS, the ``openssl`` command."""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess

import pytest

from treadle.testing.simnet import SimNetwork

pytestmark = pytest.mark.treadle


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """An RSA certificate for the simulated hosts (RSA: its signatures, so
    the handshake's sizes, are the same in every run)."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not available")
    folder = tmp_path_factory.mktemp("certs")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
         "-out", str(cert), "-days", "2", "-subj", "/CN=server",
         "-addext", "subjectAltName=DNS:server,DNS:api.example"],
        check=True, capture_output=True)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(cert, key)
    client = ssl.create_default_context(cafile=str(cert))
    return server, client


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


async def test_start_tls_over_simulated_bytes(treadle_net, certificate):
    server_ctx, client_ctx = certificate
    server = treadle_net.add_host("server")
    client = treadle_net.add_host("client")

    async def serve():
        async def handle(reader, writer):
            assert await reader.readline() == b"STARTTLS\n"
            writer.write(b"GO\n")
            await writer.drain()
            await writer.start_tls(server_ctx)
            line = await reader.readline()
            writer.write(line.upper())
            await writer.drain()
            writer.close()
        await asyncio.start_server(handle, None, 25)
        await asyncio.Event().wait()

    server.start(serve)
    await asyncio.sleep(0)

    async def talk():
        reader, writer = await asyncio.open_connection("server", 25)
        writer.write(b"STARTTLS\n")
        assert await reader.readline() == b"GO\n"
        await writer.start_tls(client_ctx, server_hostname="server")
        assert writer.get_extra_info("ssl_object") is not None
        writer.write(b"secret\n")
        line = await reader.readline()
        writer.close()
        return line

    assert await client.run(talk()) == b"SECRET\n"


def test_tls_runs_are_deterministic(certificate):
    server_ctx, client_ctx = certificate

    async def main(net):
        server = net.add_host("server")
        client = net.add_host("client")

        async def serve():
            async def handle(reader, writer):
                writer.write(await reader.read(100))
                writer.close()
            await asyncio.start_server(handle, None, 443, ssl=server_ctx)
            await asyncio.Event().wait()

        server.start(serve)
        await asyncio.sleep(0)

        async def talk():
            reader, writer = await asyncio.open_connection(
                "server", 443, ssl=client_ctx)
            writer.write(b"x" * 50)
            data = await reader.read()
            writer.close()
            return data

        return await client.run(talk())

    first = SimNetwork(seed=4, keep_events=True)
    second = SimNetwork(seed=4, keep_events=True)
    assert first.run(main) == second.run(main) == b"x" * 50
    assert first.log.events() == second.log.events()
