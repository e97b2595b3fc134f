"""treadle only: the stream transport's write rule (see ``_writeflow.py``):
writes inside the transport's protocol callbacks leave together when the
callback returns; every other write goes out at once, as on asyncio.

Syscalls are counted with a ``socket.socket`` subclass that records every
``send``/``sendmsg`` the transport makes on it.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

import treadle

from ._util import RecordingProtocol, recv_exactly, recv_until_eof


class CountingSocket(socket.socket):
    """Records (method, number of buffers, bytes sent) per send call."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.calls = []

    def send(self, data, *flags):
        n = super().send(data, *flags)
        self.calls.append(("send", 1, n))
        return n

    def sendmsg(self, buffers, *args):
        buffers = list(buffers)
        n = super().sendmsg(buffers, *args)
        self.calls.append(("sendmsg", len(buffers), n))
        return n


def counting_pair():
    a, b = socket.socketpair()
    counted = CountingSocket(a.family, a.type, a.proto, fileno=a.detach())
    return counted, b


@pytest.fixture
def trun():
    def _run(coro):
        with asyncio.Runner(loop_factory=treadle.new_event_loop) as runner:
            return runner.run(coro)
    return _run


async def transport_on(sock, factory=RecordingProtocol):
    loop = asyncio.get_running_loop()
    return await loop.create_connection(factory, sock=sock)


def test_a_write_is_sent_at_once_so_a_blocking_peer_sees_it(trun):
    # uvloop issue #631: write() then a *blocking* recv in the same thread.
    async def main():
        sock, peer = counting_pair()
        tr, proto = await transport_on(sock)
        peer.settimeout(5)
        tr.write(b"x")
        assert peer.recv(1) == b"x"
        assert sock.calls == [("send", 1, 1)]
        tr.close()
        await proto.done
        peer.close()
    trun(main())


def test_every_write_outside_a_protocol_callback_is_sent_at_once(trun):
    # asyncio's rule.  (treadle held the later writes of a loop turn for
    # its end until December 2026: a response's body then left a turn after
    # its head, and woke the client twice.)
    async def main():
        sock, peer = counting_pair()
        tr, proto = await transport_on(sock)
        peer.setblocking(False)
        tr.write(b"a")
        tr.write(b"bb")
        tr.write(b"ccc")
        assert sock.calls == [("send", 1, 1), ("send", 1, 2), ("send", 1, 3)]
        assert tr.get_write_buffer_size() == 0
        assert await recv_exactly(peer, 6) == b"abbccc"
        tr.close()
        await proto.done
        peer.close()
    trun(main())


def test_writes_inside_data_received_go_out_in_one_sendmsg_when_it_returns(trun):
    class Responder(RecordingProtocol):
        def data_received(self, data):
            super().data_received(data)
            self.transport.write(b"HTTP/1.1 200 OK\r\n")
            self.transport.write(b"Content-Length: 2\r\n\r\n")
            self.transport.write(b"hi")
            # Still held while the callback runs.
            self.held = self.transport.get_write_buffer_size()

    async def main():
        loop = asyncio.get_running_loop()
        sock, peer = counting_pair()
        tr, proto = await transport_on(sock, Responder)
        peer.setblocking(False)
        await loop.sock_sendall(peer, b"GET / HTTP/1.1\r\n\r\n")
        expected = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        assert await recv_exactly(peer, len(expected)) == expected
        assert proto.held == len(expected)
        assert sock.calls == [("sendmsg", 3, len(expected))]
        tr.close()
        await proto.done
        peer.close()
    trun(main())


def test_writelines_queues_chunks_for_one_sendmsg(trun):
    async def main():
        sock, peer = counting_pair()
        tr, proto = await transport_on(sock)
        peer.setblocking(False)
        tr.writelines([b"a", b"b", bytearray(b"c"), memoryview(b"d")])
        assert sock.calls == [("sendmsg", 4, 4)]
        tr.writelines([b"e", b"f"])
        assert sock.calls[1] == ("sendmsg", 2, 2)
        assert await recv_exactly(peer, 6) == b"abcdef"
        tr.close()
        await proto.done
        peer.close()
    trun(main())


def test_held_bytes_never_pause_the_protocol_by_themselves(trun):
    async def main():
        loop = asyncio.get_running_loop()
        sock, peer = counting_pair()
        sent_in_callback = []

        class Big(RecordingProtocol):
            def data_received(self, data):
                super().data_received(data)
                self.transport.set_write_buffer_limits(high=16)
                self.transport.write(b"a")            # held (rule 1)
                self.transport.write(b"b" * 32)       # held, above the mark: sent now
                sent_in_callback.extend(sock.calls)

        tr, proto = await transport_on(sock, Big)
        peer.setblocking(False)
        await loop.sock_sendall(peer, b"go")
        assert await recv_exactly(peer, 33) == b"a" + b"b" * 32
        assert sent_in_callback == [("sendmsg", 2, 33)]
        assert "pause_writing" not in proto.names()
        assert tr.get_write_buffer_size() == 0
        tr.close()
        await proto.done
        peer.close()
    trun(main())


def test_what_the_socket_refuses_pauses_the_protocol(trun):
    async def main():
        sock, peer = counting_pair()
        tr, proto = await transport_on(sock)
        peer.setblocking(False)
        big = b"z" * (8 * 1024 * 1024)
        tr.write(big)
        assert proto.names().count("pause_writing") == 1
        assert tr.get_write_buffer_size() > 64 * 1024
        assert await recv_exactly(peer, len(big)) == big
        tr.close()
        await proto.done
        assert "resume_writing" in proto.names()
        peer.close()
    trun(main())


def test_close_with_held_writes_sends_them_then_reports_connection_lost(trun):
    class Closer(RecordingProtocol):
        def data_received(self, data):
            super().data_received(data)
            self.transport.write(b"first")
            self.transport.write(b"second")      # both held (rule 1)
            self.transport.close()

    async def main():
        loop = asyncio.get_running_loop()
        sock, peer = counting_pair()
        tr, proto = await transport_on(sock, Closer)
        peer.setblocking(False)
        await loop.sock_sendall(peer, b"go")
        assert await recv_until_eof(peer) == b"firstsecond"
        assert await proto.done is None
        assert proto.names() == ["connection_made", "data_received", "connection_lost"]
        peer.close()
    trun(main())


def test_write_eof_after_held_writes_shuts_down_after_sending_them(trun):
    class Ender(RecordingProtocol):
        def data_received(self, data):
            super().data_received(data)
            self.transport.write(b"a")
            self.transport.write(b"b")
            self.transport.write_eof()

    async def main():
        loop = asyncio.get_running_loop()
        sock, peer = counting_pair()
        tr, proto = await transport_on(sock, Ender)
        peer.setblocking(False)
        await loop.sock_sendall(peer, b"go")
        assert await recv_until_eof(peer) == b"ab"
        tr.close()
        await proto.done
        peer.close()
    trun(main())


def test_with_the_loop_stopped_every_write_is_sent_at_once():
    loop = treadle.new_event_loop()
    try:
        sock, peer = counting_pair()
        tr, proto = loop.run_until_complete(transport_on(sock))
        peer.settimeout(5)
        tr.write(b"a")
        tr.write(b"b")
        got = b""
        while len(got) < 2:
            got += peer.recv(2)
        assert got == b"ab"
        assert [c[0] for c in sock.calls] == ["send", "send"]
        tr.close()
        loop.run_until_complete(proto.done)
        peer.close()
    finally:
        loop.close()


def test_a_callback_that_raises_still_sends_what_it_wrote(trun):
    class Failing(RecordingProtocol):
        def data_received(self, data):
            self.transport.write(b"partial")
            raise ValueError("boom")

    async def main():
        loop = asyncio.get_running_loop()
        errors = []
        loop.set_exception_handler(lambda l, ctx: errors.append(ctx))
        sock, peer = counting_pair()
        tr, proto = await transport_on(sock, Failing)
        peer.setblocking(False)
        await loop.sock_sendall(peer, b"go")
        assert await recv_until_eof(peer) == b"partial"
        exc = await proto.done
        assert isinstance(exc, ValueError)
        assert errors[0]["message"] == "Fatal error: protocol.data_received() call failed."
        peer.close()
    trun(main())


def test_abort_right_after_held_writes_still_delivers_them(trun):
    # On asyncio the bytes would already be in the kernel when abort() runs.
    class Farewell(RecordingProtocol):
        def data_received(self, data):
            self.transport.write(b"error: ")
            self.transport.write(b"go away\n")
            self.transport.abort()

    async def main():
        loop = asyncio.get_running_loop()
        sock, peer = counting_pair()
        tr, proto = await transport_on(sock, Farewell)
        peer.setblocking(False)
        await loop.sock_sendall(peer, b"hello")
        assert await recv_until_eof(peer) == b"error: go away\n"
        await proto.done
        peer.close()
    trun(main())
