"""Stream transports (TCP and socketpair), on asyncio's loop and treadle's:
the callback sequence, reading, writing, flow control, half-close, close
and abort."""

from __future__ import annotations

import asyncio
import socket
import sys

import pytest

from ._util import RecordingProtocol, connected_pair, recv_exactly, recv_until_eof


def test_transport_is_an_asyncio_transport_with_the_extra_info_keys(run):
    async def main():
        loop = asyncio.get_running_loop()
        handled = loop.create_future()

        async def handle(reader, writer):
            await reader.read()
            writer.close()
            handled.set_result(None)
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        tr, proto = await loop.create_connection(RecordingProtocol, "127.0.0.1", port)
        try:
            assert isinstance(tr, asyncio.Transport)
            assert tr.get_protocol() is proto
            sock = tr.get_extra_info("socket")
            assert isinstance(sock, asyncio.trsock.TransportSocket)
            assert tr.get_extra_info("sockname") == sock.getsockname()
            assert tr.get_extra_info("peername") == ("127.0.0.1", port)
            assert tr.get_extra_info("sslcontext") is None
            assert tr.get_extra_info("nonexistent", "dflt") == "dflt"
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            assert tr.can_write_eof()
            assert tr.is_reading()
            assert not tr.is_closing()
            assert tr.get_write_buffer_size() == 0
            assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
            assert "fd=" in repr(tr)
        finally:
            tr.close()
            await proto.done
            await handled
            server.close()
            await server.wait_closed()
        assert proto.names() == ["connection_made", "connection_lost"]
        assert tr.is_closing()
        assert "closed" in repr(tr)
    run(main())


def test_data_eof_and_close_sequence(run):
    async def main():
        tr, proto, peer = await connected_pair()
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(peer, b"hello")
        peer.shutdown(socket.SHUT_WR)
        await proto.done
        assert bytes(proto.data) == b"hello"
        assert proto.names()[0] == "connection_made"
        assert proto.names()[-2:] == ["eof_received", "connection_lost"]
        assert proto.events[-1][1] is None
        # eof_received returned None: the transport closed itself.
        assert tr.is_closing()
        peer.close()
    run(main())


def test_eof_received_true_keeps_the_transport_open_for_writing(run):
    async def main():
        class KeepOpen(RecordingProtocol):
            def eof_received(self):
                super().eof_received()
                self.transport.write(b"bye")
                return True

        tr, proto, peer = await connected_pair(KeepOpen)
        peer.shutdown(socket.SHUT_WR)
        assert await recv_exactly(peer, 3) == b"bye"
        assert not tr.is_closing()
        tr.write(b"more")
        tr.close()
        assert await recv_until_eof(peer) == b"more"
        await proto.done
        peer.close()
    run(main())


def test_half_close_with_write_eof(run):
    async def main():
        tr, proto, peer = await connected_pair()
        tr.write(b"request")
        tr.write_eof()
        tr.write_eof()                      # idempotent
        with pytest.raises(RuntimeError, match="write_eof"):
            tr.write(b"x")
        assert await recv_until_eof(peer) == b"request"
        # The other direction still works.
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(peer, b"response")
        peer.shutdown(socket.SHUT_WR)
        await proto.done
        assert bytes(proto.data) == b"response"
        peer.close()
    run(main())


def test_close_with_pending_writes_flushes_first(run):
    async def main():
        tr, proto, peer = await connected_pair()
        payload = b"x" * (4 * 1024 * 1024)      # more than the socket takes
        tr.write(payload)
        assert tr.get_write_buffer_size() > 0
        tr.close()
        assert tr.is_closing()
        assert not proto.done.done()
        received = await recv_until_eof(peer)
        assert received == payload
        assert await proto.done is None
        peer.close()
    run(main())


def test_abort_drops_pending_writes(run):
    async def main():
        tr, proto, peer = await connected_pair()
        tr.write(b"x" * (4 * 1024 * 1024))
        tr.abort()
        assert tr.get_write_buffer_size() == 0
        assert await proto.done is None
        received = await recv_until_eof(peer)
        assert len(received) < 4 * 1024 * 1024
        peer.close()
    run(main())


def test_write_after_connection_lost_is_dropped_and_eventually_logged(run, caplog):
    async def main():
        tr, proto, peer = await connected_pair()
        tr.abort()
        await proto.done
        for _ in range(10):
            tr.write(b"late")
        peer.close()
    with caplog.at_level("WARNING", logger="asyncio"):
        run(main())
    assert any("socket.send() raised exception" in r.getMessage() for r in caplog.records)


def test_write_type_errors(run):
    async def main():
        tr, proto, peer = await connected_pair()
        # (3.14 reworded asyncio's message; treadle follows each version)
        with pytest.raises(TypeError, match="^data argument must be a bytes"):
            tr.write("text")
        with pytest.raises(TypeError):
            tr.writelines([b"ok", "text"])
        tr.write(b"")                   # nothing, no error
        tr.writelines([])
        # (abort, not close: asyncio 3.15 keeps the b"ok" of the failed
        # writelines() buffered without watching for writability, so its
        # close() never finishes)
        tr.abort()
        await proto.done
        peer.close()
    run(main())


def test_write_accepts_every_bytes_like_type(run):
    async def main():
        import array
        tr, proto, peer = await connected_pair()
        tr.write(b"ab")
        tr.write(bytearray(b"cd"))
        tr.write(memoryview(b"xxefxx")[2:4])
        tr.write(memoryview(array.array("H", [0x6867])))   # 2 bytes, one item
        tr.writelines([b"i", bytearray(b"j"), memoryview(b"k")])
        tr.close()
        assert await recv_until_eof(peer) == b"abcdef" + array.array("H", [0x6867]).tobytes() + b"ijk"
        await proto.done
        peer.close()
    run(main())


def test_writelines_follows_asyncio_on_each_version(run):
    # 3.12+: writelines() has checks of its own and takes a memoryview of
    # each item (any buffer); 3.11: the items are joined and written.
    async def main():
        import array
        tr, proto, peer = await connected_pair()
        tr.writelines([array.array("B", b"ab"), b"c"])     # write() refuses an array
        with pytest.raises(TypeError) as info:
            # (the refused item first: asyncio 3.15 keeps the items before
            # it buffered without watching for writability)
            tr.writelines([1, b"ok"])
        if sys.version_info >= (3, 12):
            assert str(info.value) == "memoryview: a bytes-like object is required, not 'int'"
        else:
            assert str(info.value) == "sequence item 0: expected a bytes-like object, int found"
        if sys.version_info >= (3, 14):
            tr.writelines([b"d", None, 0, b""])     # 3.14+ passes over false items
            tr.writelines(None)
        elif sys.version_info >= (3, 12):
            with pytest.raises(TypeError, match=r"^memoryview: a bytes-like object is required"):
                tr.writelines([None, b"not sent"])
            tr.writelines(None)                     # nothing to write
            tr.write(b"d")
        else:
            with pytest.raises(TypeError, match=r"^can only join an iterable$"):
                tr.writelines(None)
            tr.write(b"d")
        tr.write_eof()
        method = "writelines" if sys.version_info >= (3, 12) else "write"
        with pytest.raises(RuntimeError, match=rf"^Cannot call {method}\(\) after write_eof\(\)$"):
            tr.writelines([b"late"])
        tr.close()
        assert await recv_until_eof(peer) == b"abcd"
        await proto.done
        peer.close()
    run(main())


def test_buffered_data_is_copied_from_mutable_buffers(run, loop_factory):
    if loop_factory is asyncio.new_event_loop and sys.version_info >= (3, 12):
        pytest.skip("asyncio 3.12+ buffers the caller's bytearray without a copy")

    async def main():
        tr, proto, peer = await connected_pair()
        tr.write(b"x" * (4 * 1024 * 1024))      # fills the socket: the rest is buffered
        buf = bytearray(b"original")
        tr.write(buf)
        buf[:] = b"CHANGED!"
        tr.close()
        data = await recv_until_eof(peer)
        assert data.endswith(b"original")
        await proto.done
        peer.close()
    run(main())


def test_flow_control_pauses_and_resumes_the_protocol(run):
    async def main():
        tr, proto, peer = await connected_pair()
        tr.set_write_buffer_limits(high=4096)
        assert tr.get_write_buffer_limits() == (1024, 4096)
        tr.write(b"x" * (8 * 1024 * 1024))
        assert proto.names().count("pause_writing") == 1
        tr.write(b"y")                   # already paused: not again
        assert proto.names().count("pause_writing") == 1
        await recv_exactly(peer, 8 * 1024 * 1024 + 1)
        for _ in range(100):
            if "resume_writing" in proto.names():
                break
            await asyncio.sleep(0.01)
        assert proto.names().count("resume_writing") == 1
        assert tr.get_write_buffer_size() == 0
        tr.close()
        await proto.done
        peer.close()
    run(main())


def test_set_write_buffer_limits_validation(run):
    async def main():
        tr, proto, peer = await connected_pair()
        with pytest.raises(ValueError, match="must be >="):
            tr.set_write_buffer_limits(high=1, low=2)
        with pytest.raises(ValueError):
            tr.set_write_buffer_limits(high=-1)
        tr.set_write_buffer_limits(low=100)
        assert tr.get_write_buffer_limits() == (100, 400)
        tr.set_write_buffer_limits()
        assert tr.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        tr.close()
        await proto.done
        peer.close()
    run(main())


def test_pause_and_resume_reading(run):
    async def main():
        loop = asyncio.get_running_loop()
        tr, proto, peer = await connected_pair()
        tr.pause_reading()
        assert not tr.is_reading()
        tr.pause_reading()               # idempotent
        await loop.sock_sendall(peer, b"held")
        await asyncio.sleep(0.05)
        assert proto.data == b""
        tr.resume_reading()
        assert tr.is_reading()
        tr.resume_reading()
        for _ in range(100):
            if proto.data:
                break
            await asyncio.sleep(0.01)
        assert proto.data == b"held"
        tr.close()
        assert not tr.is_reading()
        tr.resume_reading()              # closing: ignored
        await proto.done
        peer.close()
    run(main())


class _Buffered(asyncio.BufferedProtocol):
    def __init__(self):
        self.buf = bytearray(7)
        self.received = bytearray()
        self.sizes = []
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def get_buffer(self, sizehint):
        self.sizes.append(sizehint)
        return self.buf

    def buffer_updated(self, nbytes):
        self.received += self.buf[:nbytes]

    def eof_received(self):
        return None

    def connection_lost(self, exc):
        self.done.set_result(exc)


def test_buffered_protocol_reads_into_its_own_buffer(run):
    async def main():
        loop = asyncio.get_running_loop()
        tr, proto, peer = await connected_pair(_Buffered)
        payload = bytes(range(256)) * 64
        await loop.sock_sendall(peer, payload)
        peer.shutdown(socket.SHUT_WR)
        await proto.done
        assert bytes(proto.received) == payload
        # A 7-byte buffer: every read was at most 7 bytes.
        assert len(proto.sizes) >= len(payload) // 7
        peer.close()
    run(main())


def test_set_protocol_switches_between_protocol_kinds(run):
    async def main():
        loop = asyncio.get_running_loop()
        tr, first, peer = await connected_pair()
        await loop.sock_sendall(peer, b"one")
        while first.data != b"one":
            await asyncio.sleep(0.01)
        second = _Buffered()
        tr.set_protocol(second)
        assert tr.get_protocol() is second
        await loop.sock_sendall(peer, b"two")
        peer.shutdown(socket.SHUT_WR)
        await second.done
        assert bytes(second.received) == b"two"
        peer.close()
    run(main())


def test_empty_buffer_from_get_buffer_is_a_fatal_error(run):
    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))

        class Empty(_Buffered):
            def get_buffer(self, sizehint):
                return bytearray()

        tr, proto, peer = await connected_pair(Empty)
        await loop.sock_sendall(peer, b"x")
        exc = await proto.done
        assert isinstance(exc, RuntimeError)
        assert errors and errors[0]["message"] == \
            "Fatal error: protocol.get_buffer() call failed."
        assert errors[0]["transport"] is tr
        peer.close()
    run(main())


class _RecvSpy(socket.socket):
    """A socket subclass whose recv() marks what it returns."""

    def recv(self, n, *flags):
        data = super().recv(n, *flags)
        return data.upper()


def test_a_socket_subclass_recv_override_is_honoured(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        spy = _RecvSpy(a.family, a.type, a.proto, fileno=a.detach())
        b.setblocking(False)
        tr, proto = await loop.create_connection(RecordingProtocol, sock=spy)
        await loop.sock_sendall(b, b"quiet")
        while len(proto.data) < 5:
            await asyncio.sleep(0.005)
        assert proto.data == b"QUIET"
        tr.close()
        await proto.done
        c, d = socket.socketpair()
        spy2 = _RecvSpy(c.family, c.type, c.proto, fileno=c.detach())
        spy2.setblocking(False)
        with spy2, d:
            d.sendall(b"hello")
            assert await loop.sock_recv(spy2, 65536) == b"HELLO"
        b.close()
    run(main())


def test_peer_sees_data_two_turns_after_write(run):
    """write() then two sleep(0)s: the peer's data_received has run by then
    on asyncio (the loop polls I/O on every turn); websockets' test suite
    relies on this.  treadle used to poll only every 64 callbacks while
    busy, so the data arrived a turn late."""

    class Sink(asyncio.Protocol):
        def __init__(self) -> None:
            self.got: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.got.append(data)

    async def main() -> list[int]:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        ta, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        tb, sink = await loop.create_connection(Sink, sock=b)
        turns = []
        try:
            for _ in range(3):
                ta.write(b"x")
                for turn in range(5):
                    if sink.got:
                        break
                    await asyncio.sleep(0)
                turns.append(turn)
                sink.got.clear()
        finally:
            ta.close()
            tb.close()
            await asyncio.sleep(0)
        return turns

    assert run(main()) == [2, 2, 2]


def test_transport_methods_can_be_patched_per_instance(run):
    """asyncio's socket transports carry an instance __dict__, so a test can
    mock.patch.object(transport, "write", ...) and code can set attributes
    on a transport (aiohttp's heartbeat test does the former)."""
    from unittest import mock

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        ta, _ = await loop.create_connection(asyncio.Protocol, sock=a)
        tb, sink = await loop.create_connection(RecordingProtocol, sock=b)
        try:
            ta.note = "set by the program"
            with mock.patch.object(ta, "write") as fake_write:
                ta.write(b"intercepted")
            assert fake_write.call_args_list == [mock.call(b"intercepted")]
            assert ta.note == "set by the program"
            ta.write(b"real")        # the real write() is back
            ta.write_eof()
            await sink.done          # eof_received() -> None: b closes
            return bytes(sink.data)
        finally:
            ta.close()
            tb.close()
            await asyncio.sleep(0)

    assert run(main()) == b"real"


def test_a_transport_subclass_keeps_its_own_write():
    """treadle's stream transport hands out its core's write() directly
    (base.TransportBase._bind_to_core), but not over a subclass's own."""
    import treadle
    from treadle._net.stream import SocketTransport

    class Counting(SocketTransport):
        writes = 0

        def write(self, data):
            type(self).writes += 1
            super().write(data)

    async def main() -> bytes:
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        made = loop.create_future()
        tr = Counting(loop, a, asyncio.Protocol(), made)
        await made
        try:
            tr.write(b"abc")
            return await recv_exactly(b, 3)
        finally:
            tr.close()
            b.close()
            await asyncio.sleep(0)

    assert treadle.run(main()) == b"abc"
    assert Counting.writes == 1


def test_datagram_transport_takes_instance_attributes(run):
    async def main() -> str:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0))
        try:
            transport.note = "set by the program"
            return transport.note
        finally:
            transport.close()
            await asyncio.sleep(0)

    assert run(main()) == "set by the program"


def test_socket_methods_replaced_on_the_class_are_called(run):
    # asyncio's transports call the socket's recv()/send() (and sendmsg()
    # on 3.12+): a test that replaces them on socket.socket (a network
    # guard, injected faults) sees every read and write of every transport
    # made while they are replaced.
    from unittest import mock

    calls = []

    def recording(name):
        real = getattr(socket.socket, name)

        def method(self, *args):
            calls.append(name)
            return real(self, *args)
        return method

    async def main():
        async def echo(reader, writer):
            writer.write(await reader.readexactly(6))
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(echo, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with mock.patch.object(socket.socket, "recv", recording("recv")), \
                mock.patch.object(socket.socket, "send", recording("send")), \
                mock.patch.object(socket.socket, "sendmsg", recording("sendmsg")):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"abc")
            writer.write(b"def")
            assert await reader.readexactly(6) == b"abcdef"
            assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
        # Both sides wrote and read through the replacements.
        assert calls.count("send") + calls.count("sendmsg") >= 2
        assert calls.count("recv") >= 3

    run(main())


def test_a_reader_that_cannot_be_registered_is_reported_and_the_transport_still_made(run, tmp_path):
    # asyncio registers a new transport's reader in a callback of its own:
    # when the poller refuses the fd (epoll and a regular file: EPERM) the
    # failure goes to the exception handler and create_connection() returns.
    from unittest import mock

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        with open(tmp_path / "not-a-socket", "wb") as f:
            sock = mock.create_autospec(socket.socket, spec_set=True, instance=True)
            sock.type = socket.SOCK_STREAM
            sock.family = socket.AF_INET
            sock.fileno.return_value = f.fileno()
            sock.getpeername.return_value = ("127.0.0.1", 9)
            tr, proto = await asyncio.wait_for(
                loop.create_connection(asyncio.Protocol, sock=sock), 5)
            await asyncio.sleep(0)
            assert [type(c["exception"]) for c in errors] == [PermissionError]
            assert errors[0]["message"].startswith("Exception in callback ")
            tr.abort()
            await asyncio.sleep(0)
        sock.close.assert_called_once_with()

    run(main())


def test_what_the_sockets_close_and_shutdown_return_is_ignored(run):
    # asyncio ignores it; a library's socket wrapper (or a mock) may return
    # something other than None.
    class Wrapped:
        def __init__(self, sock):
            self._sock = sock

        def __getattr__(self, name):
            return getattr(self._sock, name)

        def close(self):
            self._sock.close()
            return True

        def shutdown(self, how):
            self._sock.shutdown(how)
            return True

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda loop, context: errors.append(context))
        a, b = socket.socketpair()
        lost = loop.create_future()

        class Protocol(asyncio.Protocol):
            def connection_lost(self, exc):
                lost.set_result(exc)

        tr, _ = await loop.create_connection(Protocol, sock=Wrapped(a))
        tr.write_eof()
        b.setblocking(False)
        assert await loop.sock_recv(b, 10) == b""
        tr.close()
        assert await lost is None
        assert errors == []
        assert a.fileno() == -1
        b.close()

    run(main())


def test_a_writer_that_never_yields_sees_the_peer_gone_within_a_few_writes(run):
    """``write(); await drain()`` in a loop does not yield while the
    protocol is not paused, so the loop turn never ends: the writes must
    still reach the socket, and its error stop the loop, within a few
    iterations (asyncio: at the second, and treadle, which sends every
    write outside a protocol callback at once).  aioftp's tests write to a
    closed peer this way."""
    async def main():
        ours, peer = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours)
        writer.write(b"first")
        await writer.drain()
        peer.close()
        n = 0
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            while n < 100_000:
                n += 1
                writer.write(b"-")
                await writer.drain()
        writer.close()
        return n
    assert run(main()) <= 2


def test_every_write_of_a_step_reaches_a_blocking_peer_in_the_same_thread(run):
    """A task writes twice without yielding, then reads the peer with a
    *blocking* recv in the same thread: asyncio has sent both writes, so
    both arrive (treadle held the second for the end of the loop turn until
    December 2026: the peer saw only the first, here after a timeout)."""
    async def main():
        ours, peer = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=ours)
        writer.write(b"head ")
        writer.write(b"body")
        peer.settimeout(2)
        got = b""
        try:
            while len(got) < 9:
                chunk = peer.recv(9)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            pass
        assert got == b"head body"
        writer.close()
        await writer.wait_closed()
        peer.close()
    run(main())
