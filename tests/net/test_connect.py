"""create_connection, connect_accepted_socket, create_unix_connection and
start_tls, on both loops: parameters, errors, Happy Eyeballs."""

from __future__ import annotations

import asyncio
import gc
import os
import socket
import ssl
import sys
import tempfile
import types

import pytest

from ._util import (RecordingProtocol, closed_port, hanging_address, recv_exactly,
                    tls_contexts)

PY312 = sys.version_info >= (3, 12)


async def _echo_server(**kwargs):
    async def handle(reader, writer):
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()
    return await asyncio.start_server(handle, "127.0.0.1", 0, **kwargs)


async def _roundtrip(tr, proto, payload=b"ping"):
    tr.write(payload)
    while len(proto.data) < len(payload):
        await asyncio.sleep(0.005)
    assert bytes(proto.data) == payload


def test_create_connection_to_host_and_port(run):
    async def main():
        loop = asyncio.get_running_loop()
        server = await _echo_server()
        port = server.sockets[0].getsockname()[1]
        async with server:
            tr, proto = await loop.create_connection(RecordingProtocol, "127.0.0.1", port)
            await _roundtrip(tr, proto)
            tr.close()
            await proto.done
            # A host name goes through the resolver.
            tr, proto = await loop.create_connection(RecordingProtocol, "localhost", port,
                                                     family=socket.AF_INET)
            await _roundtrip(tr, proto)
            tr.close()
            await proto.done
    run(main())


def test_create_connection_local_addr(run):
    async def main():
        loop = asyncio.get_running_loop()
        server = await _echo_server()
        port = server.sockets[0].getsockname()[1]
        async with server:
            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                local_port = probe.getsockname()[1]
            tr, proto = await loop.create_connection(
                RecordingProtocol, "127.0.0.1", port, local_addr=("127.0.0.1", local_port))
            assert tr.get_extra_info("sockname") == ("127.0.0.1", local_port)
            tr.close()
            await proto.done
            # A local address of another family only: no socket can be bound.
            if socket.has_ipv6:
                with pytest.raises(OSError, match="no matching local address"):
                    await loop.create_connection(RecordingProtocol, "127.0.0.1", port,
                                                 local_addr=("::1", 0))
    run(main())


def test_create_connection_local_addr_in_use(run):
    async def main():
        loop = asyncio.get_running_loop()
        server = await _echo_server()
        port = server.sockets[0].getsockname()[1]
        async with server:
            with pytest.raises(OSError) as info:
                await loop.create_connection(RecordingProtocol, "127.0.0.1", port,
                                             local_addr=("127.0.0.1", port))
            assert "error while attempting to bind on address" in str(info.value)
            assert "address already in use" in str(info.value)
    run(main())


def test_create_connection_with_sock(run):
    async def main():
        loop = asyncio.get_running_loop()
        server = await _echo_server()
        port = server.sockets[0].getsockname()[1]
        async with server:
            sock = socket.create_connection(("127.0.0.1", port))
            tr, proto = await loop.create_connection(RecordingProtocol, sock=sock)
            assert sock.gettimeout() == 0          # made non-blocking
            await _roundtrip(tr, proto)
            tr.close()
            await proto.done
            assert sock.fileno() == -1             # the transport closed it
    run(main())


def test_create_connection_refused(run):
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(RecordingProtocol, "127.0.0.1", closed_port())
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", closed_port())
    run(main())


def test_all_addresses_failing(run):
    async def main():
        loop = asyncio.get_running_loop()
        p1, p2 = closed_port(), closed_port()
        infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p1)),
                 (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p2))]

        async def getaddrinfo(*args, **kwargs):
            return infos
        loop.getaddrinfo = getaddrinfo
        with pytest.raises(OSError, match="Multiple exceptions: .*Connect call failed"):
            await loop.create_connection(RecordingProtocol, "two.invalid", 1)
        # Identical messages: the first error itself.
        infos[1] = infos[0]
        with pytest.raises(ConnectionRefusedError):
            await loop.create_connection(RecordingProtocol, "two.invalid", 1)

        async def empty(*args, **kwargs):
            return []
        loop.getaddrinfo = empty
        with pytest.raises(OSError, match="getaddrinfo\\(\\) returned empty list"):
            await loop.create_connection(RecordingProtocol, "none.invalid", 1)
    run(main())


def test_all_errors_raises_an_exception_group(loop_factory, run):
    if loop_factory is asyncio.new_event_loop and not PY312:
        pytest.skip("asyncio has all_errors from 3.12")

    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(ExceptionGroup) as info:
            await loop.create_connection(RecordingProtocol, "127.0.0.1", closed_port(),
                                         all_errors=True)
        assert info.value.message == "create_connection failed"
        assert isinstance(info.value.exceptions[0], ConnectionRefusedError)
    run(main())


@pytest.mark.parametrize("delay", [None, 0.05])
def test_falls_through_to_the_next_address(run, delay):
    async def main():
        loop = asyncio.get_running_loop()
        server = await _echo_server()
        port = server.sockets[0].getsockname()[1]

        async def getaddrinfo(*args, **kwargs):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", closed_port())),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        loop.getaddrinfo = getaddrinfo
        async with server:
            tr, proto = await loop.create_connection(
                RecordingProtocol, "two.invalid", 1, happy_eyeballs_delay=delay)
            assert tr.get_extra_info("peername") == ("127.0.0.1", port)
            await _roundtrip(tr, proto)
            tr.close()
            await proto.done
    run(main())


def test_happy_eyeballs_starts_the_next_attempt_after_the_delay(run):
    async def main():
        loop = asyncio.get_running_loop()
        server = await _echo_server()
        port = server.sockets[0].getsockname()[1]
        listener, fillers, hang = await hanging_address()

        async def getaddrinfo(*args, **kwargs):
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", hang),
                    (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
        loop.getaddrinfo = getaddrinfo
        try:
            async with server:
                tr, proto = await asyncio.wait_for(loop.create_connection(
                    RecordingProtocol, "two.invalid", 1, happy_eyeballs_delay=0.05), 10)
                # The second address won; the hanging attempt was cancelled
                # and its socket closed (the fd check of the test verifies).
                assert tr.get_extra_info("peername") == ("127.0.0.1", port)
                await _roundtrip(tr, proto)
                tr.close()
                await proto.done
        finally:
            for s in fillers + [listener]:
                s.close()
    run(main())


def test_cancelling_create_connection_closes_the_pending_socket(run):
    async def main():
        loop = asyncio.get_running_loop()
        listener, fillers, hang = await hanging_address()
        try:
            for delay in (None, 0.01):
                task = asyncio.create_task(loop.create_connection(
                    RecordingProtocol, *hang, happy_eyeballs_delay=delay))
                await asyncio.sleep(0.05)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
        finally:
            for s in fillers + [listener]:
                s.close()
    run(main())


@pytest.mark.parametrize("kwargs, message", [
    (dict(host="127.0.0.1", port=1, server_hostname="x"),
     "server_hostname is only meaningful with ssl"),
    (dict(host="127.0.0.1", port=1, ssl_handshake_timeout=1),
     "ssl_handshake_timeout is only meaningful with ssl"),
    (dict(host="127.0.0.1", port=1, ssl_shutdown_timeout=1),
     "ssl_shutdown_timeout is only meaningful with ssl"),
    (dict(ssl=True, sock="SOCK"),
     "You must set server_hostname when using ssl without a host"),
    (dict(host="127.0.0.1", port=1, sock="SOCK"),
     "host/port and sock can not be specified at the same time"),
    (dict(), "host and port was not specified and no sock specified"),
    (dict(sock="UDP"), "A Stream Socket was expected"),
])
def test_create_connection_rejects_bad_parameters(run, kwargs, message):
    async def main():
        loop = asyncio.get_running_loop()
        sockets = []
        for key, value in list(kwargs.items()):
            if value == "SOCK":
                sockets.append(socket.socket())
                kwargs[key] = sockets[-1]
            elif value == "UDP":
                sockets.append(socket.socket(type=socket.SOCK_DGRAM))
                kwargs[key] = sockets[-1]
        try:
            with pytest.raises(ValueError, match=message):
                await loop.create_connection(RecordingProtocol, **kwargs)
        finally:
            for s in sockets:
                s.close()
    run(main())


def test_invalid_addresses(run):
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(socket.gaierror):
            await loop.create_connection(RecordingProtocol, "127.0.0.1", "no-such-service")
        with pytest.raises(socket.gaierror):
            await loop.create_connection(RecordingProtocol, "256.1.1.1.1", 80)
        with pytest.raises(OverflowError):
            await loop.create_connection(RecordingProtocol, "127.0.0.1", 70000)
    run(main())


def test_connect_accepted_socket(run):
    async def main():
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.create_connection(listener.getsockname())
        conn, _ = listener.accept()
        listener.close()
        client.setblocking(False)
        tr, proto = await loop.connect_accepted_socket(RecordingProtocol, conn)
        await loop.sock_sendall(client, b"hi")
        while proto.data != b"hi":
            await asyncio.sleep(0.005)
        tr.write(b"back")
        assert await recv_exactly(client, 4) == b"back"
        tr.close()
        await proto.done
        client.close()
        with socket.socket(type=socket.SOCK_DGRAM) as udp:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.connect_accepted_socket(RecordingProtocol, udp)
        with socket.socket() as plain:
            with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
                await loop.connect_accepted_socket(RecordingProtocol, plain,
                                                   ssl_handshake_timeout=1)
    run(main())


def test_unix_connection(run):
    async def main():
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "sock")
            server = await loop.create_unix_server(RecordingProtocol, path)
            async with server:
                tr, proto = await loop.create_unix_connection(RecordingProtocol, path)
                assert tr.get_extra_info("peername") == path
                tr.close()
                await proto.done
                with pytest.raises(FileNotFoundError):
                    await loop.create_unix_connection(RecordingProtocol, path + "-missing")
                with pytest.raises(ValueError, match="path and sock can not be"):
                    await loop.create_unix_connection(RecordingProtocol, path, sock=object())
                with pytest.raises(ValueError, match="no path and sock were specified"):
                    await loop.create_unix_connection(RecordingProtocol)
                with pytest.raises(ValueError, match="you have to pass server_hostname"):
                    await loop.create_unix_connection(RecordingProtocol, path, ssl=True)
                with pytest.raises(ValueError, match="server_hostname is only meaningful"):
                    await loop.create_unix_connection(RecordingProtocol, path,
                                                      server_hostname="x")
                with socket.socket() as tcp:
                    with pytest.raises(ValueError, match="A UNIX Domain Stream Socket"):
                        await loop.create_unix_connection(RecordingProtocol, sock=tcp)
    run(main())


def test_ssl_connection_and_extra_info(run):
    server_ctx, client_ctx = tls_contexts()

    async def main():
        loop = asyncio.get_running_loop()
        server = await _echo_server(ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            tr, proto = await loop.create_connection(
                RecordingProtocol, "127.0.0.1", port, ssl=client_ctx,
                server_hostname="localhost", ssl_handshake_timeout=10)
            assert tr.get_extra_info("sslcontext") is client_ctx
            assert isinstance(tr.get_extra_info("ssl_object"), ssl.SSLObject)
            assert tr.get_extra_info("cipher") is not None
            assert tr.get_extra_info("peercert") == {}      # not verified (CERT_NONE)
            assert tr.get_extra_info("compression") is None
            assert isinstance(tr.get_extra_info("socket"), asyncio.trsock.TransportSocket)
            assert tr.get_extra_info("peername") == ("127.0.0.1", port)
            await _roundtrip(tr, proto, b"secret" * 1000)
            tr.close()
            await proto.done
    run(main())


def test_start_tls_upgrades_a_plain_connection(run):
    server_ctx, client_ctx = tls_contexts()

    async def main():
        loop = asyncio.get_running_loop()
        upgraded = loop.create_future()

        async def handle(reader, writer):
            line = await reader.readline()
            assert line == b"STARTTLS\n"
            writer.write(b"OK\n")
            await writer.drain()
            await writer.start_tls(server_ctx)
            data = await reader.read(100)
            writer.write(data.upper())
            await writer.drain()
            writer.close()
            upgraded.set_result(None)

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            tr, proto = await loop.create_connection(RecordingProtocol, "127.0.0.1", port)
            tr.write(b"STARTTLS\n")
            while proto.data != b"OK\n":
                await asyncio.sleep(0.005)
            tls_tr = await loop.start_tls(tr, proto, client_ctx,
                                          server_hostname="localhost")
            assert tls_tr.get_extra_info("ssl_object") is not None
            tls_tr.write(b"hello")
            while bytes(proto.data) != b"OK\nHELLO":
                await asyncio.sleep(0.005)
            await upgraded
            tls_tr.close()
            await proto.done
            with pytest.raises(TypeError, match="sslcontext is expected"):
                await loop.start_tls(tr, proto, object())
    run(main())


def test_start_tls_rejects_transports_without_support(run):
    async def main():
        loop = asyncio.get_running_loop()
        ctx = ssl.create_default_context()
        with pytest.raises(TypeError, match="is not supported by start_tls"):
            await loop.start_tls(asyncio.Transport(), asyncio.Protocol(), ctx)
    run(main())


def test_the_error_of_a_failed_connect_belongs_to_the_caller_alone(run):
    # Once create_connection() has raised, nothing of the loop's (a future,
    # a handle's arguments, a frame a traceback kept) still holds the error
    # in a reference cycle (anyio's test of CPython's gh-124859).
    async def main():
        exc = None
        try:
            await asyncio.get_running_loop().create_connection(
                asyncio.Protocol, "127.0.0.1", closed_port())
        except OSError as error:
            exc = error
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        # (this coroutine holds it: as a frame, or from 3.14 as itself)
        return [type(r).__name__ for r in gc.get_referrers(exc)
                if not isinstance(r, (types.FrameType, types.CoroutineType))]
    assert run(main()) == []
