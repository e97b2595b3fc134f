"""TLS against another implementation: the ``openssl`` command-line tool.

What Python's ssl module cannot start by itself is driven from the other
side: a TLS 1.2 renegotiation requested by the server (followed, data keeps
flowing) or by the client (refused by OpenSSL 3's server default: the
refusal alert must reach the client, which then gives up).  Runs on both
loops with asyncio's SSLProtocol and treadle's TLSProtocol; skipped when
there is no openssl binary.
"""

from __future__ import annotations

import asyncio
import shutil
import ssl
from typing import Any

import pytest

from .test_tls_support import (PROTOCOL_CLASSES, Recorder, client_context, get_certs,
                               protocol_class, require_sockets, server_context)

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl binary"),
]


@pytest.fixture(params=PROTOCOL_CLASSES)
def proto(request: pytest.FixtureRequest) -> Any:
    return protocol_class(request.param)


class OpenSSL:
    """An ``openssl s_server``/``s_client`` child: its output, line by line."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[bytes] = []

    @classmethod
    async def start(cls, *args: str) -> OpenSSL:
        proc = await asyncio.create_subprocess_exec(
            "openssl", *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        return cls(proc)

    async def wait_for(self, text: bytes, timeout: float = 10.0) -> bytes:
        assert self.proc.stdout is not None
        while True:
            line = await asyncio.wait_for(self.proc.stdout.readline(), timeout)
            self.lines.append(line)
            if text in line:
                return line
            if not line:
                raise AssertionError(f"openssl ended before {text!r}: {b''.join(self.lines)!r}")

    async def send(self, line: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line)
        await self.proc.stdin.drain()

    async def rest(self) -> bytes:
        assert self.proc.stdout is not None
        out = await asyncio.wait_for(self.proc.stdout.read(), 10)
        self.lines.append(out)
        return out

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        await asyncio.sleep(0)


def test_server_initiated_renegotiation_is_followed(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        require_sockets(loop)
        certs = get_certs()
        # A port for s_server: bound here, released just before it starts.
        probe = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = probe.sockets[0].getsockname()[1]
        probe.close()
        await probe.wait_closed()
        server = await OpenSSL.start("s_server", "-accept", f"127.0.0.1:{port}",
                                     "-cert", certs.localhost, "-tls1_2")
        try:
            await server.wait_for(b"ACCEPT")
            client = Recorder(loop)
            waiter = loop.create_future()
            wire, _ = await loop.create_connection(
                lambda: proto(loop, client, client_context(), waiter,
                              server_hostname="localhost"), "127.0.0.1", port)
            await waiter
            client.transport.write(b"before\n")
            await server.wait_for(b"before")
            await server.send(b"r\n")                  # the server asks to renegotiate
            await server.wait_for(b"SSL_do_handshake -> 1")
            client.transport.write(b"after\n")
            await server.wait_for(b"after")
            await server.send(b"from the server\n")
            await client.expect(len(b"from the server\n"))
            assert client.data == b"from the server\n"
            assert client.transport.get_extra_info("ssl_object").version() == "TLSv1.2"
            client.transport.close()
            assert await client.lost is None
        finally:
            await server.stop()

    run(main())


def test_client_initiated_renegotiation_is_refused(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        require_sockets(loop)
        server = Recorder(loop)
        server.on_data = lambda data: server.transport.write(b"echo:" + data)
        waiter = loop.create_future()
        listener = await loop.create_server(
            lambda: proto(loop, server, server_context(), waiter, server_side=True),
            "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        client = await OpenSSL.start("s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2")
        try:
            await waiter
            await client.send(b"before\n")
            await client.wait_for(b"echo:before")
            await client.send(b"R\n")                  # the client asks to renegotiate
            await client.wait_for(b"RENEGOTIATING")
            # OpenSSL 3 servers refuse unless told otherwise: the refusal
            # alert reaches the client (it was produced while reading), the
            # client gives up with a fatal alert, the server sees it.
            out = await client.rest()
            assert b"no renegotiation" in out
            exc = await server.lost
            assert isinstance(exc, ssl.SSLError)
            assert server.events == ["made", "data", ("lost", "SSLError")]
        finally:
            await client.stop()
            listener.close()
            await listener.wait_closed()

    run(main())
