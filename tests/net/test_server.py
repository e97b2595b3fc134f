"""create_server and the Server object, on both loops; the accept back-off
on EMFILE."""

from __future__ import annotations

import asyncio
import errno
import socket
import sys

import pytest

from ._util import RecordingProtocol, recv_exactly

PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)


def test_server_is_an_abstract_server_and_serves(run):
    async def main():
        loop = asyncio.get_running_loop()
        protos = []

        def factory():
            protos.append(RecordingProtocol())
            return protos[-1]

        server = await loop.create_server(factory, "127.0.0.1", 0)
        assert isinstance(server, asyncio.AbstractServer)
        assert server.get_loop() is loop
        assert server.is_serving()
        assert len(server.sockets) == 1
        sock = server.sockets[0]
        assert isinstance(sock, asyncio.trsock.TransportSocket)
        assert "sockets=" in repr(server)
        host, port = sock.getsockname()
        r, w = await asyncio.open_connection(host, port)
        w.write(b"x")
        await w.drain()
        while not protos or protos[0].data != b"x":
            await asyncio.sleep(0.005)
        assert protos[0].transport.get_extra_info("peername") == w.get_extra_info("sockname")
        protos[0].transport.close()
        assert await r.read() == b""
        w.close()
        await w.wait_closed()
        server.close()
        assert not server.is_serving()
        assert server.sockets == ()
        await server.wait_closed()
        server.close()                      # idempotent
    run(main())


def test_several_hosts_are_each_bound_once(run):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")

    async def main():
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_server(
                RecordingProtocol, ["127.0.0.1", "::1", "127.0.0.1"], 0)
        except OSError as exc:
            pytest.skip(f"cannot bind ::1 here: {exc}")
        async with server:
            families = sorted(s.family for s in server.sockets)
            assert families == [socket.AF_INET, socket.AF_INET6]
            v6 = [s for s in server.sockets if s.family == socket.AF_INET6][0]
            assert v6.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
    run(main())


def test_start_serving_false_then_start_serving(run):
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(RecordingProtocol, "127.0.0.1", 0,
                                          start_serving=False)
        assert not server.is_serving()
        port = server.sockets[0].getsockname()[1]
        await server.start_serving()
        assert server.is_serving()
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.close()
        await w.wait_closed()
        server.close()
        await server.wait_closed()
    run(main())


def test_start_serving_a_closed_server(run):
    # asyncio raises TypeError (its loop iterates the None a closed server
    # has for sockets), once: a second call finds the server "serving".
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(RecordingProtocol, "127.0.0.1", 0,
                                          start_serving=False)
        server.close()
        with pytest.raises(TypeError):
            await server.start_serving()
        await server.start_serving()
        await server.wait_closed()
    run(main())


def test_serve_forever_cancellation_closes_the_server(run):
    async def main():
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        task = asyncio.create_task(server.serve_forever())
        await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError, match="already being awaited"):
            await server.serve_forever()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.is_serving()
        with pytest.raises(RuntimeError, match="is closed"):
            await server.serve_forever()
    run(main())


def test_wait_closed_waits_for_the_connections(run):
    if not PY312:
        pytest.skip("asyncio 3.11's wait_closed returns as soon as the server is closed")

    async def main():
        loop = asyncio.get_running_loop()
        protos = []

        def factory():
            protos.append(RecordingProtocol())
            return protos[-1]
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        while not protos or protos[0].transport is None:
            await asyncio.sleep(0.005)
        server.close()
        waiter = asyncio.create_task(server.wait_closed())
        await asyncio.sleep(0.02)
        assert not waiter.done()             # one connection still open
        protos[0].transport.close()
        await asyncio.wait_for(waiter, 5)
        w.close()
        await w.wait_closed()
    run(main())


def test_close_clients_and_abort_clients(run, loop_factory):
    if loop_factory is asyncio.new_event_loop and not PY313:
        pytest.skip("asyncio has close_clients/abort_clients from 3.13")

    async def main():
        loop = asyncio.get_running_loop()
        protos = []

        def factory():
            protos.append(RecordingProtocol())
            return protos[-1]
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(4)]
        while len(protos) < 4 or any(p.transport is None for p in protos):
            await asyncio.sleep(0.005)
        server.close()
        protos[0].transport.write(b"x" * (8 * 1024 * 1024))   # pending writes
        server.close_clients()
        # close() flushes; abort() does not.
        server.abort_clients()
        for p in protos:
            await p.done
        await asyncio.wait_for(server.wait_closed(), 5)
        for r, w in conns:
            w.close()
            try:
                await w.wait_closed()
            except ConnectionError:
                pass
    run(main())


def test_create_server_with_sock_and_reuse_port(run):
    async def main():
        loop = asyncio.get_running_loop()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = await loop.create_server(RecordingProtocol, sock=sock)
        async with server:
            assert server.sockets[0].getsockname() == sock.getsockname()
            assert sock.gettimeout() == 0
        assert sock.fileno() == -1              # closed with the server
        if hasattr(socket, "SO_REUSEPORT"):
            server = await loop.create_server(RecordingProtocol, "127.0.0.1", 0,
                                              reuse_port=True)
            async with server:
                s = server.sockets[0]
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
                assert s.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    run(main())


def test_create_server_errors(run):
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(TypeError, match="ssl argument must be an SSLContext"):
            await loop.create_server(RecordingProtocol, "127.0.0.1", 0, ssl=True)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await loop.create_server(RecordingProtocol, "127.0.0.1", 0,
                                     ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="ssl_shutdown_timeout is only meaningful"):
            await loop.create_server(RecordingProtocol, "127.0.0.1", 0,
                                     ssl_shutdown_timeout=1)
        with pytest.raises(ValueError, match="Neither host/port nor sock"):
            await loop.create_server(RecordingProtocol)
        with socket.socket() as s:
            with pytest.raises(ValueError, match="host/port and sock can not be"):
                await loop.create_server(RecordingProtocol, "127.0.0.1", 0, sock=s)
        with socket.socket(type=socket.SOCK_DGRAM) as s:
            with pytest.raises(ValueError, match="A Stream Socket was expected"):
                await loop.create_server(RecordingProtocol, sock=s)
        server = await loop.create_server(RecordingProtocol, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            with pytest.raises(OSError) as info:
                await loop.create_server(RecordingProtocol, "127.0.0.1", port,
                                         reuse_address=False)
            assert info.value.errno == errno.EADDRINUSE
            assert "error while attempting to bind on address" in str(info.value)
        with pytest.raises(socket.gaierror):
            await loop.create_server(RecordingProtocol, "no-such-host.invalid", 0)
    run(main())


class _ExhaustedListener(socket.socket):
    """A listening socket whose accept() runs out of descriptors the first
    *failures* times."""

    failures = 1

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.accept_calls = 0

    def accept(self):
        self.accept_calls += 1
        if self.accept_calls <= self.failures:
            raise OSError(errno.EMFILE, "Too many open files")
        return super().accept()


def test_accept_out_of_descriptors_backs_off_instead_of_spinning(run):
    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
        listener = _ExhaustedListener()
        listener.bind(("127.0.0.1", 0))
        protos = []

        def factory():
            protos.append(RecordingProtocol())
            return protos[-1]
        server = await loop.create_server(factory, sock=listener)
        async with server:
            client = socket.create_connection(listener.getsockname())
            client.setblocking(False)
            await asyncio.sleep(0.3)
            # The failure is reported, and the socket is not polled in a
            # tight loop meanwhile.
            assert 1 <= listener.accept_calls <= 3
            assert len(errors) == 1
            assert errors[0]["message"] == "socket.accept() out of system resource"
            assert errors[0]["exception"].errno == errno.EMFILE
            # The connection is accepted (after the back-off at the latest).
            for _ in range(300):
                if protos:
                    break
                await asyncio.sleep(0.01)
            assert protos, "the pending connection was never accepted"
            while protos[0].transport is None:
                await asyncio.sleep(0.005)
            protos[0].transport.write(b"ok")
            assert await recv_exactly(client, 2) == b"ok"
            client.close()
            await protos[0].done
    run(main())


def test_persistent_emfile_is_retried_once_per_back_off():
    # treadle only: asyncio keeps calling accept() up to *backlog* times in
    # the same callback after EMFILE (and reports each); treadle stops at
    # the first failure and retries after the back-off.
    import treadle

    class AlwaysExhausted(_ExhaustedListener):
        failures = 10 ** 9

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
        listener = AlwaysExhausted()
        listener.bind(("127.0.0.1", 0))
        server = await loop.create_server(RecordingProtocol, sock=listener)
        async with server:
            client = socket.create_connection(listener.getsockname())
            await asyncio.sleep(0.5)
            assert listener.accept_calls == 1 and len(errors) == 1
            await asyncio.sleep(1.0)
            assert listener.accept_calls == 2 and len(errors) == 2
            client.close()
        # Closed during a back-off: the retry does nothing.
        await asyncio.sleep(1.1)
        assert listener.accept_calls == 2

    with asyncio.Runner(loop_factory=treadle.new_event_loop) as runner:
        runner.run(main())


def test_protocol_factory_errors_do_not_stop_the_server(run):
    async def main():
        loop = asyncio.get_running_loop()
        calls = []

        def factory():
            calls.append(1)
            if len(calls) == 1:
                raise RuntimeError("no protocol for you")
            return RecordingProtocol()
        server = await loop.create_server(factory, "127.0.0.1", 0)
        async with server:
            port = server.sockets[0].getsockname()[1]
            r, w = await asyncio.open_connection("127.0.0.1", port)
            # The failed connection is closed, not leaked.
            assert await asyncio.wait_for(r.read(), 5) == b""
            w.close()
            await w.wait_closed()
            r, w = await asyncio.open_connection("127.0.0.1", port)
            while len(calls) < 2:
                await asyncio.sleep(0.005)
            w.close()
            await w.wait_closed()
    run(main())


def test_streams_echo_through_start_server(run):
    async def main():
        async def handle(reader, writer):
            while line := await reader.readline():
                writer.write(line.upper())
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            for i in range(20):
                writer.write(f"line {i}\n".encode())
            await writer.drain()
            for i in range(20):
                assert await reader.readline() == f"LINE {i}\n".encode()
            writer.write_eof()
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
    run(main())
