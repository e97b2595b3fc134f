"""TLS over simulated bytes: ``start_tls`` and ``ssl=`` on simulated hosts
(treadle's TLS layer over the simulated transports); needs the ``openssl``
command to make a certificate."""

from __future__ import annotations

import asyncio

import pytest

from treadle.testing.simnet import SimNetwork

from ._certs import make_contexts

pytestmark = pytest.mark.treadle


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    return make_contexts(tmp_path_factory.mktemp("certs"))


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
