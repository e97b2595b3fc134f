"""Faults, on both loops: resets, failing protocol callbacks, abandoned
transports.  Each ends in asyncio's callback sequence, never hangs, and
leaks nothing (the fd/thread check of every test)."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct

import pytest

from ._util import RecordingProtocol, connected_pair


def _reset(sock: socket.socket) -> None:
    """Close *sock* so that the peer sees a reset (RST), not an EOF."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


async def _tcp_pair(factory=RecordingProtocol):
    """A transport over real TCP and the raw accepted peer socket."""
    loop = asyncio.get_running_loop()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    accept = asyncio.create_task(loop.sock_accept(listener))
    tr, proto = await loop.create_connection(factory, *listener.getsockname())
    peer, _ = await accept
    listener.close()
    return tr, proto, peer


def test_peer_reset_during_a_large_write(run):
    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
        tr, proto, peer = await _tcp_pair()
        tr.write(b"x" * (32 * 1024 * 1024))
        assert tr.get_write_buffer_size() > 0
        _reset(peer)
        exc = await asyncio.wait_for(proto.done, 10)
        assert isinstance(exc, (ConnectionResetError, BrokenPipeError))
        assert proto.names()[-1] == "connection_lost"
        assert tr.is_closing()
        assert tr.get_write_buffer_size() == 0
        assert errors == []                  # OSErrors are not "unexpected"
    run(main())


def test_peer_reset_while_idle(run):
    async def main():
        tr, proto, peer = await _tcp_pair()
        _reset(peer)
        exc = await asyncio.wait_for(proto.done, 10)
        assert isinstance(exc, ConnectionResetError)
        assert proto.names() == ["connection_made", "connection_lost"]
    run(main())


def test_a_reply_to_a_peer_that_has_reset_reports_the_reset(run):
    # The peer sends, then resets; the reply written from data_received()
    # meets the reset: connection_lost() gets ConnectionResetError, what the
    # send raised, not what a second attempt would raise (EPIPE).
    class Replying(RecordingProtocol):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            self.transport.write(b"reply")

    async def main():
        tr, proto, peer = await _tcp_pair(Replying)
        peer.sendall(b"hello")
        _reset(peer)
        exc = await asyncio.wait_for(proto.done, 10)
        assert isinstance(exc, ConnectionResetError)
        assert proto.names() == ["connection_made", "data_received", "connection_lost"]
        assert tr.get_write_buffer_size() == 0
    run(main())


def test_streams_see_the_reset(run):
    async def main():
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        accept = asyncio.create_task(loop.sock_accept(listener))
        reader, writer = await asyncio.open_connection(*listener.getsockname())
        peer, _ = await accept
        listener.close()
        _reset(peer)
        with pytest.raises(ConnectionResetError):
            await asyncio.wait_for(reader.read(10), 10)
        with pytest.raises(ConnectionResetError):
            for _ in range(100):
                writer.write(b"x" * 65536)
                await writer.drain()
        writer.close()
        with pytest.raises(ConnectionResetError):
            await writer.wait_closed()
    run(main())


@pytest.mark.parametrize("callback, message", [
    ("data_received", "Fatal error: protocol.data_received() call failed."),
    ("eof_received", "Fatal error: protocol.eof_received() call failed."),
])
def test_a_protocol_callback_that_raises_closes_the_transport(run, callback, message):
    class Failing(RecordingProtocol):
        def data_received(self, data):
            super().data_received(data)
            if callback == "data_received":
                raise ZeroDivisionError("in data_received")

        def eof_received(self):
            super().eof_received()
            raise ZeroDivisionError("in eof_received")

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
        tr, proto, peer = await connected_pair(Failing)
        await loop.sock_sendall(peer, b"data")
        peer.shutdown(socket.SHUT_WR)
        exc = await asyncio.wait_for(proto.done, 10)
        assert isinstance(exc, ZeroDivisionError)
        assert len(errors) == 1
        assert errors[0]["message"] == message
        assert errors[0]["exception"] is exc
        assert errors[0]["transport"] is tr
        assert errors[0]["protocol"] is proto
        assert tr.is_closing()
        assert proto.names().count("connection_lost") == 1
        peer.close()
    run(main())


def test_buffer_updated_that_raises(run):
    class Failing(asyncio.BufferedProtocol):
        def __init__(self):
            self.done = asyncio.get_running_loop().create_future()

        def get_buffer(self, n):
            return bytearray(100)

        def buffer_updated(self, n):
            raise KeyError("in buffer_updated")

        def connection_lost(self, exc):
            self.done.set_result(exc)

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
        tr, proto, peer = await connected_pair(Failing)
        await loop.sock_sendall(peer, b"data")
        assert isinstance(await asyncio.wait_for(proto.done, 10), KeyError)
        assert errors[0]["message"] == "Fatal error: protocol.buffer_updated() call failed."
        peer.close()
    run(main())


def test_pause_writing_that_raises_is_reported_and_the_transport_lives_on(run):
    class Failing(RecordingProtocol):
        def pause_writing(self):
            raise RuntimeError("in pause_writing")

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
        tr, proto, peer = await connected_pair(Failing)
        tr.write(b"x" * (8 * 1024 * 1024))
        assert errors[0]["message"] == "protocol.pause_writing() failed"
        assert not tr.is_closing()
        tr.abort()
        await proto.done
        peer.close()
    run(main())


def test_connection_made_that_raises_is_reported(run):
    class Failing(RecordingProtocol):
        def connection_made(self, transport):
            super().connection_made(transport)
            raise RuntimeError("in connection_made")

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
        tr, proto, peer = await connected_pair(Failing)
        assert len(errors) == 1
        assert isinstance(errors[0]["exception"], RuntimeError)
        # As a failed Handle reports (asyncio calls connection_made in
        # one): exception handlers read the context's "handle".
        assert sorted(errors[0]) == ["exception", "handle", "message"]
        assert isinstance(errors[0]["handle"], asyncio.Handle)
        assert errors[0]["message"].startswith("Exception in callback ")
        assert "Failing.connection_made(" in errors[0]["message"]
        # The transport still works, as on asyncio.
        await loop.sock_sendall(peer, b"ok")
        while proto.data != b"ok":
            await asyncio.sleep(0.005)
        tr.close()
        await proto.done
        peer.close()
    run(main())


def test_connection_lost_that_raises_still_closes_the_socket(run):
    class Failing(RecordingProtocol):
        def connection_lost(self, exc):
            super().connection_lost(exc)
            raise RuntimeError("in connection_lost")

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
        tr, proto, peer = await connected_pair(Failing)
        sock = tr.get_extra_info("socket")
        tr.close()
        await proto.done
        await asyncio.sleep(0)
        assert sock.fileno() == -1
        assert len(errors) == 1
        peer.close()
    run(main())


def test_an_abandoned_transport_warns_and_closes_its_socket(loop):
    a, b = socket.socketpair()

    async def make():
        tr, proto = await loop.create_connection(RecordingProtocol, sock=a)
        return tr

    tr = loop.run_until_complete(make())
    loop.close()
    with pytest.warns(ResourceWarning, match="unclosed transport") as caught:
        del tr
        gc.collect()
    b.close()
    assert a.fileno() == -1                  # closed by the transport
    # The warning comes first, so its repr shows the socket still open.
    text = next(str(w.message) for w in caught if "unclosed transport" in str(w.message))
    assert "fd=" in text and " closed" not in text, text


def test_close_is_idempotent_and_abort_after_close_is_harmless(run):
    async def main():
        tr, proto, peer = await connected_pair()
        tr.close()
        tr.close()
        tr.abort()
        await proto.done
        await asyncio.sleep(0)
        assert proto.names() == ["connection_made", "connection_lost"]
        peer.close()
    run(main())
