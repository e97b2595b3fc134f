"""TLSProtocol on an event loop: handshake, data, close, errors, timeouts
and flow control, as the application and the loop see them.

Every behavioural test runs on asyncio's loop and treadle's (``loop_factory``)
and with asyncio's own ``SSLProtocol`` as well as treadle's ``TLSProtocol``
(``proto``): what passes with asyncio's class is asyncio's behaviour, and
treadle's must match it.  The wire is TCP on 127.0.0.1 or an in-memory
transport pair (which needs no sockets and makes timing deterministic).
Tests of treadle-only behaviour (deliberate differences, details of the
implementation) say so and use TLSProtocol alone.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import ssl
import weakref
from typing import Any

import pytest

from treadle._net.tls import SSLTransport, TLSProtocol

from .test_tls_support import (APPLICATION_DATA, PROTOCOL_CLASSES, VERSIONS, BufferedRecorder, Echo,
                               MemoryTransport, Recorder, client_context, get_certs,
                               protocol_class, record_exceptions, server_context, tls_link,
                               tls_records)

pytestmark = pytest.mark.timeout(30)

WIRES = [pytest.param("tcp", id="tcp"), pytest.param("memory", id="mem")]


@pytest.fixture(params=PROTOCOL_CLASSES)
def proto(request: pytest.FixtureRequest) -> Any:
    return protocol_class(request.param)


def is_treadle(cls: Any) -> bool:
    return cls is TLSProtocol


async def settle(n: int = 10) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


# -- the connection --------------------------------------------------------------

@pytest.mark.parametrize("over", WIRES)
@pytest.mark.parametrize("version", VERSIONS)
def test_echo_and_orderly_close(run: Any, proto: Any, over: str, version: ssl.TLSVersion) -> None:
    payload = bytes(range(256)) * 4096            # 1 MiB

    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts = record_exceptions(loop)
        client, server = Recorder(loop), Recorder(loop)
        server.on_data = lambda data: server.transport.write(data)
        link = await tls_link(loop, proto, client, server, over=over,
                              cctx=client_context(version=version),
                              sctx=server_context(version=version))
        transport = await client.made
        # connection_made comes before the waiter is woken
        assert client.events == ["made"] and server.events == ["made"]
        assert transport is link.client._app_transport
        assert isinstance(transport, asyncio.Transport)
        assert "ssl" in type(transport).__name__.lower()
        assert transport.get_protocol() is client
        transport.write(payload[:1000])
        transport.writelines([payload[1000:5000], bytearray(payload[5000:9000]),
                              memoryview(payload)[9000:]])
        await client.expect(len(payload))
        assert client.data == payload and server.data == payload
        transport.close()
        assert transport.is_closing()
        assert await client.lost is None
        assert await server.lost is None
        # After our close_notify, the peer's answer is an eof_received too.
        assert client.events == ["made", "data", "eof", ("lost", None)]
        assert server.events == ["made", "data", "eof", ("lost", None)]
        assert contexts == []
        await link.close()

    run(main())


@pytest.mark.parametrize("over", WIRES)
def test_buffered_application_protocols(run: Any, proto: Any, over: str) -> None:
    payload = b"0123456789" * 3000   # 30 kB: several TLS records, byte by byte

    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = BufferedRecorder(loop, size=777), BufferedRecorder(loop, size=1)
        server.on_data = lambda data: server.transport.write(data)
        link = await tls_link(loop, proto, client, server, over=over)
        link.app_client.write(payload)
        await client.expect(len(payload))
        assert client.data == payload and server.data == payload
        assert all(hint >= 0 for hint in client.hints)
        link.app_client.close()
        await client.lost
        await server.lost
        await link.close()

    run(main())


@pytest.mark.parametrize("over", WIRES)
def test_extra_info(run: Any, proto: Any, over: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        cctx = client_context()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over=over, cctx=cctx)
        tr = link.app_client
        sslobj = tr.get_extra_info("ssl_object")
        assert isinstance(sslobj, ssl.SSLObject)
        assert tr.get_extra_info("sslcontext") is cctx
        assert tr.get_extra_info("cipher") == sslobj.cipher()
        assert tr.get_extra_info("compression") == sslobj.compression()
        assert tr.get_extra_info("peercert") == sslobj.getpeercert()
        assert dict(x[0] for x in tr.get_extra_info("peercert")["subject"])[
            "commonName"] == "localhost"
        # The wire transport answers the rest.
        assert tr.get_extra_info("peername") == link.wire.get_extra_info("peername")
        assert tr.get_extra_info("sockname") == link.wire.get_extra_info("sockname")
        if over == "tcp":
            assert tr.get_extra_info("socket") is not None
        marker = object()
        assert tr.get_extra_info("no such thing", marker) is marker
        assert server.transport.get_extra_info("peercert") is None
        tr.close()
        await client.lost
        # TLS details survive the close, the wire's do not.
        assert tr.get_extra_info("sslcontext") is cctx
        assert tr.get_extra_info("peername") is None
        await server.lost
        await link.close()

    run(main())


def test_bytearray_buffers_of_buffered_protocols(run: Any) -> None:
    # treadle-only: get_buffer() may return a bytearray; data spanning
    # several TLS records lands in it intact (asyncio's SSLProtocol writes
    # the second record into a copy of a slice and loses it).
    payload = bytes(range(256)) * 200

    async def main() -> None:
        loop = asyncio.get_running_loop()
        client = BufferedRecorder(loop, size=100_000, as_bytearray=True)
        server = Recorder(loop)
        link = await tls_link(loop, TLSProtocol, client, server, over="memory")
        server.transport.write(payload[:20000])
        server.transport.write(payload[20000:])      # several records, one read
        await client.expect(len(payload))
        assert client.data == payload
        link.app_client.close()
        await client.lost
        await link.close()

    run(main())


def test_set_protocol_switches_between_protocol_kinds(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        first, second, server = Recorder(loop), BufferedRecorder(loop, size=5), Recorder(loop)
        link = await tls_link(loop, proto, first, server, over="memory")
        tr = link.app_client
        server.transport.write(b"to the first")
        await first.expect(12)
        tr.set_protocol(second)
        assert tr.get_protocol() is second
        server.transport.write(b"to the second")
        await second.expect(13)
        assert first.data == b"to the first" and second.data == b"to the second"
        tr.close()
        await second.lost
        assert second.events[-1] == ("lost", None)
        await link.close()

    run(main())


def test_write_argument_errors_and_no_half_close(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory")
        tr = link.app_client
        with pytest.raises(TypeError, match="data: expecting a bytes-like instance, got str"):
            tr.write("text")
        tr.write(b"")                               # nothing at all
        assert tr.can_write_eof() is False
        with pytest.raises(NotImplementedError):
            tr.write_eof()
        tr.write(b"still fine")
        await server.expect(10)
        tr.close()
        await client.lost
        await link.close()

    run(main())


def test_writelines_rejects_non_bytes_before_sending(run: Any) -> None:
    # treadle raises at the call, as plain transports do (asyncio's TLS
    # transport kills the connection through its exception handler).
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, TLSProtocol, client, server, over="memory")
        with pytest.raises(TypeError, match="got int"):
            link.app_client.writelines([b"a", 1])
        link.app_client.writelines([b"b", b"c"])
        await server.expect(2)
        assert server.data == b"bc"
        link.app_client.close()
        await client.lost
        await link.close()

    run(main())


def test_writelines_takes_any_buffer(run: Any, proto: Any) -> None:
    # An object with the buffer protocol that is not bytes, bytearray or
    # memoryview (an array.array, of one-byte or wider items) is written.
    async def main() -> None:
        import array
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory")
        wide = array.array("H", [0x6261])
        link.app_client.writelines([array.array("B", b"xy"), b"z", wide])
        await server.expect(5)
        assert server.data == b"xyz" + wide.tobytes()
        link.app_client.close()
        await client.lost
        await link.close()

    run(main())


def test_strided_memoryview_write(run: Any) -> None:
    # treadle-only: asyncio's TLS transport kills the connection with a
    # BufferError on a non-contiguous memoryview.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, TLSProtocol, client, server, over="memory")
        link.app_client.write(memoryview(b"s-t-r-i-d-e-d-")[::2])
        link.app_client.writelines([memoryview(b"x.y.")[::2]])
        link.app_client.writelines([memoryview(b"z.")[::2], b"!"])
        await server.expect(11)
        assert server.data == b"stridedxyz!"
        link.app_client.close()
        await client.lost
        await link.close()

    run(main())


def test_writes_after_close_are_dropped_and_logged(run: Any, proto: Any,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory")
        tr = link.app_client
        tr.close()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(7):
                tr.write(b"dropped")
        await client.lost
        await server.lost
        assert server.data == b""
        warnings = [r for r in caplog.records if "SSL connection is closed" in r.getMessage()]
        assert len(warnings) == 2                   # the 6th and 7th write
        await link.close()

    run(main())


@pytest.mark.parametrize("keep_open", [None, True])
def test_peer_close_notify(run: Any, proto: Any, keep_open: Any,
                           caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop, keep_open=keep_open), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory")
        server.transport.write(b"last words")
        server.transport.close()
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            assert await client.lost is None
        assert client.events == ["made", "data", "eof", ("lost", None)]
        assert client.data == b"last words"
        assert client.transport.is_closing()
        assert await server.lost is None
        warned = any("has no effect when using ssl" in r.getMessage() for r in caplog.records)
        assert warned == bool(keep_open)
        await link.close()

    run(main())


def test_abort(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory")
        link.app_client.write(b"maybe lost")
        link.app_client.abort()
        assert link.app_client.is_closing()
        assert await client.lost is None
        assert client.events == ["made", ("lost", None)]
        # The server sees the wire's EOF without close_notify: a plain EOF.
        assert await server.lost is None
        assert server.events[-2:] == ["eof", ("lost", None)]
        await link.close()

    run(main())


def test_truncated_stream_is_an_eof(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory")
        server.transport.write(b"before the cut")
        await client.expect(14)
        link.server_wire.close()                    # TCP FIN, no close_notify
        assert await client.lost is None
        assert client.events == ["made", "data", "eof", ("lost", None)]
        await link.close()

    run(main())


def test_corrupted_stream_fails_the_connection(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts = record_exceptions(loop)
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory")
        link.server_wire.write(b"\x17\x03\x03\x00\x20" + b"\xaa" * 32)  # a bogus record
        exc = await client.lost
        assert isinstance(exc, ssl.SSLError)
        assert contexts == []                       # an OSError: not reported
        await link.close()

    run(main())


def test_protocol_error_in_data_received(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts = record_exceptions(loop)
        client, server = Recorder(loop), Recorder(loop)

        def boom(data: bytes) -> None:
            raise ZeroDivisionError("in data_received")
        client.on_data = boom
        link = await tls_link(loop, proto, client, server, over="memory")
        server.transport.write(b"x")
        exc = await client.lost
        assert isinstance(exc, ZeroDivisionError)
        (context,) = contexts
        assert context["message"] == "Fatal error on SSL protocol"
        assert context["exception"] is exc
        assert context["protocol"] is link.client
        assert context["transport"] is link.wire
        await link.close()

    run(main())


def test_protocol_error_in_eof_received(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts = record_exceptions(loop)
        client, server = Recorder(loop), Recorder(loop)

        class Bad(Recorder):
            def eof_received(self) -> Any:
                super().eof_received()
                raise KeyError("in eof_received")
        client = Bad(loop)
        link = await tls_link(loop, proto, client, server, over="memory")
        server.transport.close()
        exc = await client.lost
        assert isinstance(exc, KeyError)
        assert contexts[0]["message"] == "Error calling eof_received()"
        await link.close()

    run(main())


# -- handshake failures and timeouts -----------------------------------------------

@pytest.mark.parametrize("over", WIRES)
def test_untrusted_certificate(run: Any, proto: Any, over: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts = record_exceptions(loop)
        client, server = Recorder(loop), Recorder(loop)
        certs = get_certs()
        link = await tls_link(loop, proto, client, server, over=over, wait=False,
                              sctx=server_context(certs.selfsigned))
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            await link.client_waiter
        assert info.value.reason == "CERTIFICATE_VERIFY_FAILED"
        with pytest.raises((ssl.SSLError, ConnectionError)) as server_info:
            await link.server_waiter
        if is_treadle(proto):
            # The client's alert reached the server: it knows why.
            assert isinstance(server_info.value, ssl.SSLError)
            assert "alert" in str(server_info.value).lower()
        else:
            assert isinstance(server_info.value, ConnectionResetError)
        await settle()
        assert client.events == [] and server.events == []
        assert contexts == []
        await link.close()

    run(main())


def test_wrong_host_name(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory", wait=False,
                              server_hostname="example.org")
        with pytest.raises(ssl.CertificateError, match="(?i)hostname mismatch"):
            await link.client_waiter
        await settle()
        assert client.events == []
        await link.close()

    run(main())


@pytest.mark.parametrize("over", WIRES)
def test_handshake_timeout(run: Any, proto: Any, over: str) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts = record_exceptions(loop)
        client = Recorder(loop)
        link = await tls_link(loop, proto, client, None, over=over, wait=False,
                              raw_server=asyncio.Protocol(),     # accepts, never answers
                              client_kwargs={"ssl_handshake_timeout": 0.2})
        with pytest.raises(ConnectionAbortedError,
                           match=r"^SSL handshake is taking longer than 0.2 seconds: "
                                 r"aborting the connection$"):
            await link.client_waiter
        await settle()
        assert client.events == [] and contexts == []
        await link.close()

    run(main())


def test_handshake_timeout_on_a_transport_without_force_close(run: Any) -> None:
    # treadle: works on any transport, not only ones with asyncio's private
    # _force_close (the exception still reaches the waiter).
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client = Recorder(loop)
        link = await tls_link(loop, TLSProtocol, client, None, over="memory",
                              wait=False, force_close=False, raw_server=asyncio.Protocol(),
                              client_kwargs={"ssl_handshake_timeout": 0.1})
        with pytest.raises(ConnectionAbortedError, match="taking longer"):
            await link.client_waiter
        await link.close()

    run(main())


def test_eof_during_handshake(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client = Recorder(loop)
        class Closer(asyncio.Protocol):
            def connection_made(self, transport: Any) -> None:
                transport.close()
        link = await tls_link(loop, proto, client, None, over="memory", wait=False,
                              raw_server=Closer())
        with pytest.raises(ConnectionResetError):
            await link.client_waiter
        await settle()
        assert client.events == []
        await link.close()

    run(main())


def test_close_during_handshake_aborts(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client = Recorder(loop)
        link = await tls_link(loop, proto, client, None, over="memory", wait=False,
                              raw_server=asyncio.Protocol())
        await settle()
        link.client._app_transport.close()
        await settle()
        assert link.wire.is_closing()
        # asyncio's rule: the waiter of a connection closed this way is
        # woken with the (None) exception of connection_lost.
        assert link.client_waiter.done() and link.client_waiter.result() is None
        assert client.events == []
        await link.close()

    run(main())


def test_constructor_validation(proto: Any) -> None:
    loop = asyncio.new_event_loop()
    try:
        ctx = client_context()
        for bad in (0, -1):
            with pytest.raises(ValueError, match="ssl_handshake_timeout should be a "
                                                 "positive number"):
                proto(loop, asyncio.Protocol(), ctx, None, ssl_handshake_timeout=bad)
            with pytest.raises(ValueError, match="ssl_shutdown_timeout should be a "
                                                 "positive number"):
                proto(loop, asyncio.Protocol(), ctx, None, ssl_shutdown_timeout=bad)
        with pytest.raises(ValueError, match="Server side SSL needs a valid SSLContext"):
            proto(loop, asyncio.Protocol(), None, None, server_side=True)
        # ssl=True on a client: a default context that verifies, checking
        # the host name only when one is given.
        p = proto(loop, asyncio.Protocol(), None, None, server_hostname="example.org")
        ctx = p._app_transport.get_extra_info("sslcontext")
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
        p._app_transport.close()
        p = proto(loop, asyncio.Protocol(), None, None)
        assert not p._app_transport.get_extra_info("sslcontext").check_hostname
        p._app_transport.close()
        with pytest.raises(UnicodeError):
            proto(loop, asyncio.Protocol(), client_context(), None, server_hostname=".bad")
        assert proto.max_size == 256 * 1024
    finally:
        loop.close()


# -- shutdown ---------------------------------------------------------------------------

class Mute(asyncio.Protocol):
    """A wire-level protocol that completes a TLS handshake as a server and
    then ignores everything, close_notify included."""

    def __init__(self) -> None:
        from treadle._net._tlsstate import TLSConnection
        self.tls = TLSConnection(server_context(), server_side=True)
        self.started = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        from treadle._net._tlsstate import HANDSHAKING, UNWRAPPED
        self.tls.receive(data)
        if self.tls.state == UNWRAPPED:
            self.tls.start_handshake()
        elif self.tls.state == HANDSHAKING:
            self.tls.do_handshake()
        self.transport.write(self.tls.data_to_send())

    def eof_received(self) -> bool:
        return True


def test_shutdown_timeout(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts = record_exceptions(loop)
        client = Recorder(loop)
        link = await tls_link(loop, proto, client, None, over="memory", wait=False,
                              raw_server=Mute(), client_kwargs={"ssl_shutdown_timeout": 0.2})
        await link.client_waiter
        client.transport.close()
        exc = await client.lost
        assert isinstance(exc, TimeoutError) and str(exc) == "SSL shutdown timed out"
        assert client.events == ["made", ("lost", "TimeoutError")]
        assert contexts == []
        await link.close()

    run(main())


def test_paused_reader_gets_data_and_eof_after_resume(run: Any, proto: Any) -> None:
    # The peer sends, then half-closes TCP while the application has reading
    # paused: the data must still reach it, then the EOF, and no shutdown
    # timer may fire.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory",
                              client_kwargs={"ssl_shutdown_timeout": 0.1})
        client.transport.pause_reading()
        assert not client.transport.is_reading()
        server.transport.write(b"while paused")
        await settle()
        link.server_wire.write_eof()
        await settle()
        assert client.events == ["made"]
        await asyncio.sleep(0.2)                     # past the shutdown timeout
        client.transport.resume_reading()
        assert client.transport.is_reading()
        assert await client.lost is None
        assert client.events == ["made", "data", "eof", ("lost", None)]
        assert client.data == b"while paused"
        await link.close()

    run(main())


def test_data_from_the_peer_after_our_close(run: Any, proto: Any) -> None:
    # We write and close at once; the peer answers the write before it sees
    # our close_notify.  asyncio fails the close with
    # APPLICATION_DATA_AFTER_CLOSE_NOTIFY; treadle discards the late data
    # and closes cleanly (a deliberate difference).
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        server.on_data = lambda data: server.transport.write(b"late answer")
        link = await tls_link(loop, proto, client, server, over="memory")
        client.transport.write(b"question")
        client.transport.close()
        exc = await client.lost
        if is_treadle(proto):
            assert exc is None
            assert client.events == ["made", "eof", ("lost", None)]
        else:
            assert isinstance(exc, ssl.SSLError)
            assert "APPLICATION_DATA_AFTER_CLOSE_NOTIFY" in str(exc)
        assert client.data == b""                    # nothing after close()
        await server.lost
        await link.close()

    run(main())


@pytest.mark.parametrize("buffered", [False, True], ids=["copied", "buffered"])
def test_data_received_before_our_close_is_delivered(run: Any, proto: Any,
                                                     buffered: bool) -> None:
    # Records that arrived before close() (held back here by paused
    # reading, resumed just before the close) reach a reading protocol
    # first, as asyncio's flushing does; writes it makes then are dropped.
    # treadle used to send close_notify with them unread, and OpenSSL failed
    # the close with APPLICATION_DATA_AFTER_CLOSE_NOTIFY (uvloop's
    # test_create_ssl_server_manual_connection_lost).
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client: Recorder = BufferedRecorder(loop) if buffered else Recorder(loop)
        server = Recorder(loop)
        client.on_data = lambda data: client.transport.write(b"too late")
        link = await tls_link(loop, proto, client, server, over="memory")
        client.transport.pause_reading()
        server.transport.write(b"sent before the close")
        await settle()
        assert client.events == ["made"]
        client.transport.resume_reading()
        client.transport.close()
        assert await client.lost is None
        assert client.events == ["made", "data", "eof", ("lost", None)]
        assert client.data == b"sent before the close"
        assert await server.lost is None
        assert server.data == b""
        await link.close()

    run(main())


# -- flow control -----------------------------------------------------------------------

def test_write_flow_control(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory", high=10000)
        tr = link.app_client
        assert tr.get_write_buffer_limits() == (128 * 1024, 512 * 1024)
        with pytest.raises(ValueError, match=r"high \(1\) must be >= low \(2\) must be >= 0"):
            tr.set_write_buffer_limits(high=1, low=2)
        tr.set_write_buffer_limits(high=40000)
        assert tr.get_write_buffer_limits() == (10000, 40000)
        tr.set_write_buffer_limits(low=1000)
        assert tr.get_write_buffer_limits() == (1000, 4000)
        tr.set_write_buffer_limits(high=40000, low=10000)
        server.transport.pause_reading()            # the peer stops reading...
        chunk = b"w" * 5000
        sent = 0
        while "pause" not in client.events:
            tr.write(chunk)                          # ...its wire fills, then ours
            sent += len(chunk)
            await asyncio.sleep(0)
            assert sent < 10_000_000
        assert tr.get_write_buffer_size() >= 40000
        assert tr._protocol_paused
        server.transport.resume_reading()
        await server.expect(sent)
        await settle()
        assert client.events[-2:] == ["pause", "resume"]
        assert tr.get_write_buffer_size() == 0
        assert server.data == b"w" * sent
        tr.close()
        await client.lost
        await link.close()

    run(main())


def test_read_flow_control_pauses_the_wire(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory", chunk=4096)
        tr = link.app_client
        assert tr.get_read_buffer_limits() == (64 * 1024, 256 * 1024)
        tr.set_read_buffer_limits(high=20000, low=5000)
        assert tr.get_read_buffer_limits() == (5000, 20000)
        tr.pause_reading()
        server.transport.write(b"r" * 200_000)
        await settle(200)
        assert client.data == b""
        assert not link.wire.is_reading()            # the TLS layer held ~20 KB
        assert 20000 <= tr.get_read_buffer_size() < 30000
        tr.resume_reading()
        await client.expect(200_000)
        assert link.wire.is_reading()
        assert tr.get_read_buffer_size() == 0
        tr.close()
        await client.lost
        await link.close()

    run(main())


def test_wire_pause_holds_encrypted_data(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory")
        tls = link.client
        tls.pause_writing()                          # what a full wire does
        written = link.wire.bytes_written
        client.transport.write(b"held")
        assert link.wire.bytes_written == written
        assert client.transport.get_write_buffer_size() > 0
        tls.resume_writing()
        assert link.wire.bytes_written > written
        await server.expect(4)
        client.transport.close()
        await client.lost
        await link.close()

    run(main())


def test_pause_writing_failure_is_reported(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        contexts = record_exceptions(loop)

        class Fragile(Recorder):
            def pause_writing(self) -> None:
                raise RuntimeError("pause failed")
        client, server = Fragile(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory")
        client.transport.set_write_buffer_limits(high=0)
        link.client.pause_writing()
        client.transport.write(b"x")
        assert contexts[0]["message"] == "protocol.pause_writing() failed"
        assert isinstance(contexts[0]["exception"], RuntimeError)
        assert contexts[0]["transport"] is client.transport
        link.client.resume_writing()
        client.transport.close()
        await client.lost
        await link.close()

    run(main())


# -- TLS inside TLS, start_tls ----------------------------------------------------------

def test_tls_inside_tls(run: Any, proto: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        outer_client_app, outer_server_app = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, outer_client_app, outer_server_app, over="memory")
        inner_client, inner_server = Recorder(loop), Recorder(loop)
        inner_server.on_data = lambda data: inner_server.transport.write(data[::-1])
        cw, sw = loop.create_future(), loop.create_future()
        inner_c = proto(loop, inner_client, client_context(), cw, server_hostname="localhost")
        inner_s = proto(loop, inner_server, server_context(), sw, server_side=True)
        outer_c, outer_s = link.app_client, outer_server_app.transport
        outer_c.set_protocol(inner_c)
        outer_s.set_protocol(inner_s)
        inner_c.connection_made(outer_c)
        inner_s.connection_made(outer_s)
        await cw
        await sw
        inner_client.transport.write(b"nested")
        await inner_client.expect(6)
        assert inner_client.data == b"detsen"
        inner_client.transport.close()
        assert await inner_client.lost is None
        await inner_server.lost
        await link.close()

    run(main())


def test_start_tls_through_the_loop(run: Any, loop_factory: Any) -> None:
    # loop.start_tls() on a plain connection (asyncio's own SSLProtocol on
    # asyncio's loop; whatever the networking layer uses on treadle's).
    async def main() -> None:
        loop = asyncio.get_running_loop()
        from .test_tls_support import require_sockets
        require_sockets(loop)
        upgraded: asyncio.Future[Any] = loop.create_future()

        class Server(Recorder):
            def data_received(self, data: bytes) -> None:
                super().data_received(data)
                if data == b"STARTTLS":
                    task = loop.create_task(loop.start_tls(
                        self.transport, self, server_context(), server_side=True))
                    task.add_done_callback(lambda t: upgraded.set_result(t.result()))
        server = Server(loop)
        listener = await loop.create_server(lambda: server, "127.0.0.1", 0)
        client = Recorder(loop)
        tr, _ = await loop.create_connection(
            lambda: client, "127.0.0.1", listener.sockets[0].getsockname()[1])
        tr.write(b"STARTTLS")
        await asyncio.sleep(0.05)
        tls_tr = await loop.start_tls(tr, client, client_context(), server_hostname="localhost")
        server_tr = await upgraded
        tls_tr.write(b"secret")
        await server.expect(len(b"STARTTLS") + 6)
        assert server_tr.get_extra_info("cipher") is not None
        assert client.events == ["made"]            # start_tls: no second connection_made
        tls_tr.close()
        await client.lost
        await server.lost
        listener.close()
        await listener.wait_closed()

    run(main())


# -- memory and references --------------------------------------------------------------

def test_second_close_releases_the_tls_state(run: Any, proto: Any) -> None:
    # An application protocol that keeps its transport must not keep the SSL
    # object and context alive (asyncio's second close() drops the link).
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        cctx = client_context()
        link = await tls_link(loop, proto, client, server, over="memory", cctx=cctx)
        ref = weakref.ref(cctx)
        del cctx
        server.transport.close()
        await client.lost
        client.transport.close()                     # already closed: detaches
        await link.close()
        link.client = None
        # Released, not necessarily at once: a reference held for a moment
        # elsewhere (seen once in CI, under load, not reproduced since) may
        # outlive the close by a few turns.  A leak outlives this wait.
        for _ in range(100):
            gc.collect()
            if ref() is None:
                break
            await asyncio.sleep(0.01)
        assert ref() is None
        assert client.transport.is_closing()
        if is_treadle(proto):
            # A detached transport answers as a closed one (asyncio's raises
            # AttributeError from most methods).
            assert client.transport.get_extra_info("sslcontext") is None
            assert client.transport.get_write_buffer_size() == 0
            client.transport.write(b"ignored")

    run(main())


def test_unclosed_transport_warns(proto: Any) -> None:
    loop = asyncio.new_event_loop()
    try:
        p = proto(loop, asyncio.Protocol(), client_context(), None, server_hostname="localhost")
        with pytest.warns(ResourceWarning, match="unclosed transport"):
            p._app_transport = None
            del p
            gc.collect()
    finally:
        loop.close()


def test_read_buffer_is_shared_but_never_by_two_reads_at_once(run: Any) -> None:
    # treadle-only: one read buffer per thread serves every connection;
    # a transport that interleaves two reads gets two buffers.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        a = TLSProtocol(loop, asyncio.Protocol(), client_context(), None, server_hostname="x")
        b = TLSProtocol(loop, asyncio.Protocol(), client_context(), None, server_hostname="x")
        buf_a = a.get_buffer(-1)
        buf_b = b.get_buffer(-1)
        assert buf_a.obj is not buf_b.obj
        a.buffer_updated(0)
        b.buffer_updated(0)
        shared = a.get_buffer(-1).obj
        a.buffer_updated(0)
        assert b.get_buffer(-1).obj is shared is buf_a.obj
        b.buffer_updated(0)
        assert len(buf_a) == TLSProtocol.max_size
        for p in (a, b):
            p._app_transport.close()

    run(main())


def test_data_received_path_for_plain_transports(run: Any) -> None:
    # A wire transport that knows nothing of BufferedProtocol calls
    # data_received(): TLSProtocol takes bytes that way too.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, TLSProtocol, client, server, over="memory", buffered=False)
        link.app_client.write(b"via data_received")
        await server.expect(17)
        link.app_client.close()
        await client.lost
        await link.close()

    run(main())


def test_transport_repr_and_class(run: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Echo()
        link = await tls_link(loop, TLSProtocol, client, server, over="memory")
        tr = link.app_client
        assert isinstance(tr, SSLTransport)
        assert "open" in repr(tr) and "WRAPPED" in repr(tr)
        assert "TLSProtocol" in repr(link.client)
        tr.close()
        await client.lost
        assert "closed" in repr(tr)
        await link.close()

    run(main())


# -- write coalescing (treadle-only: asyncio sends one record per write) ---------------

def app_records(wire: MemoryTransport) -> list[int]:
    assert wire.log is not None
    records = [length for kind, length in tls_records(bytes(wire.log)) if kind == APPLICATION_DATA]
    wire.log.clear()
    return records


def test_writes_inside_a_callback_share_one_record(run: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        sizes: list[int] = []

        def respond(data: bytes) -> None:
            for piece in (b"HTTP/1.1 200 OK\r\n", b"Content-Length: 2\r\n", b"\r\n"):
                server.transport.write(piece)
            server.transport.writelines([b"o", bytearray(b"k")])
            sizes.append(server.transport.get_write_buffer_size())
        server.on_data = respond
        link = await tls_link(loop, TLSProtocol, client, server, over="memory")
        link.server_wire.log = bytearray()
        client.transport.write(b"GET / HTTP/1.1\r\n\r\n")
        await client.expect(40)
        assert client.data == b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
        (record,) = app_records(link.server_wire)         # one record, not five
        assert sizes == [40]                               # held bytes are counted
        assert server.transport.get_write_buffer_size() == 0
        client.transport.close()
        await client.lost
        await link.close()

    run(main())


def test_writes_held_in_a_callback_go_before_close_notify(run: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)

        def answer_and_close(data: bytes) -> None:
            server.transport.write(b"answer ")
            server.transport.write(b"then close")
            server.transport.close()
        server.on_data = answer_and_close
        link = await tls_link(loop, TLSProtocol, client, server, over="memory")
        client.transport.write(b"q")
        assert await client.lost is None
        assert client.data == b"answer then close"
        assert client.events == ["made", "data", "eof", ("lost", None)]
        await link.close()

    run(main())


def test_writes_held_in_a_callback_reach_the_wire_before_abort(run: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)

        def answer_and_abort(data: bytes) -> None:
            server.transport.write(b"400 bad request")
            server.transport.abort()
        server.on_data = answer_and_abort
        link = await tls_link(loop, TLSProtocol, client, server, over="memory")
        link.server_wire.log = bytearray()
        client.transport.write(b"q")
        await server.lost
        assert app_records(link.server_wire)              # handed to the wire
        await link.close()

    run(main())


def test_a_large_write_in_a_callback_keeps_the_order(run: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        big = b"B" * 100_000

        def respond(data: bytes) -> None:
            server.transport.write(b"small-1 ")
            server.transport.write(big)
            server.transport.write(b" small-2")
        server.on_data = respond
        link = await tls_link(loop, TLSProtocol, client, server, over="memory")
        client.transport.write(b"q")
        await client.expect(100_016)
        assert client.data == b"small-1 " + big + b" small-2"
        client.transport.close()
        await client.lost
        await link.close()

    run(main())


def test_writes_from_connection_made_and_eof_received_are_sent(run: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()

        class Greeter(Recorder):
            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                transport.write(b"hello ")
                transport.write(b"there")

            def eof_received(self) -> Any:
                self.transport.write(b"bye")
                return super().eof_received()
        client, server = Recorder(loop), Greeter(loop)
        link = await tls_link(loop, TLSProtocol, client, server, over="memory")
        await client.expect(11)
        assert client.data == b"hello there"
        client.transport.close()
        await client.lost
        # Written during eof_received, after the client's close_notify:
        # the client discards it (it closed), but the server sent it first.
        await server.lost
        await link.close()

    run(main())


def test_writes_outside_callbacks_each_go_out_at_once(run: Any, loop_factory: Any) -> None:
    # asyncio's rule: a record per write, sent before write() returns.
    # (treadle held the later writes of a loop turn for its end until
    # December 2026; only writes inside the application's callbacks share
    # a record now.)
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, TLSProtocol, client, server, over="memory")
        link.wire.log = bytearray()
        for piece in (b"one ", b"two ", b"three ", b"four"):
            client.transport.write(piece)
        assert len(app_records(link.wire)) == 4
        assert client.transport.get_write_buffer_size() == 0
        await server.expect(18)
        assert server.data == b"one two three four"
        client.transport.close()
        await client.lost
        await link.close()

    run(main())


# -- more of asyncio's behaviour ------------------------------------------------------

def test_tls13_client_certificate_rejected_after_the_client_is_connected(run: Any,
                                                                          proto: Any) -> None:
    # In TLS 1.3 the client finishes its handshake before the server has
    # judged its (missing) certificate: the client's application is
    # connected, then loses the connection.  treadle's server sends the
    # alert that says why; asyncio's drops the connection (an EOF).
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory", wait=False,
                              cctx=client_context(version=ssl.TLSVersion.TLSv1_3),
                              sctx=server_context(verify_clients=True))
        await link.client_waiter
        with pytest.raises(ssl.SSLError, match="(?i)certificate"):
            await link.server_waiter
        exc = await client.lost
        if is_treadle(proto):
            assert isinstance(exc, ssl.SSLError) and "certificate" in str(exc).lower()
            assert client.events == ["made", ("lost", "SSLError")]
        else:
            assert exc is None
            assert client.events == ["made", "eof", ("lost", None)]
        assert server.events == []
        await link.close()

    run(main())


def test_debug_mode_logs_the_handshake(run: Any, proto: Any,
                                       caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        client, server = Recorder(loop), Recorder(loop)
        link = await tls_link(loop, proto, client, server, over="memory")
        server.transport.close()
        await client.lost
        await link.close()

    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        run(main(), debug=True)
    messages = [r.getMessage() for r in caplog.records]
    assert any("starts SSL handshake" in m for m in messages)
    assert any("SSL handshake took" in m and m.endswith(" ms") for m in messages)


@pytest.mark.parametrize("version", VERSIONS)
def test_many_connections_random_chunks(run: Any, proto: Any, version: ssl.TLSVersion) -> None:
    # 20 connections at once, each echoing 200 KB written in random-sized
    # chunks; every byte checked.
    import random

    async def one(loop: asyncio.AbstractEventLoop, port: int, seed: int) -> None:
        rng = random.Random(seed)
        payload = rng.randbytes(200_000)
        client = Recorder(loop)
        waiter = loop.create_future()
        await loop.create_connection(
            lambda: proto(loop, client, client_context(version=version), waiter,
                          server_hostname="localhost"), "127.0.0.1", port)
        await waiter
        i = 0
        while i < len(payload):
            n = rng.randint(1, 40_000)
            client.transport.write(payload[i:i + n])
            i += n
            if rng.random() < 0.3:
                await asyncio.sleep(0)
        await client.expect(len(payload))
        assert client.data == payload
        client.transport.close()
        assert await client.lost is None

    async def main() -> None:
        loop = asyncio.get_running_loop()
        from .test_tls_support import require_sockets
        require_sockets(loop)
        sctx = server_context(version=version)
        servers: list[Recorder] = []

        def make() -> Any:
            app = Recorder(loop)
            app.on_data = lambda data: app.transport.write(data)
            servers.append(app)
            return proto(loop, app, sctx, None, server_side=True)
        listener = await loop.create_server(make, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        await asyncio.gather(*(one(loop, port, seed) for seed in range(20)))
        for app in servers:
            await app.lost
        listener.close()
        await listener.wait_closed()

    run(main())


def test_unix_socket_wire(run: Any, proto: Any, tmp_path: Any) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        from .test_tls_support import require_sockets
        require_sockets(loop)
        path = str(tmp_path / "tls.sock")
        server = Recorder(loop)
        server.on_data = lambda data: server.transport.write(data.upper())
        sctx = server_context()
        listener = await loop.create_unix_server(
            lambda: proto(loop, server, sctx, None, server_side=True), path)
        client = Recorder(loop)
        waiter = loop.create_future()
        await loop.create_unix_connection(
            lambda: proto(loop, client, client_context(), waiter, server_hostname="localhost"),
            path)
        await waiter
        client.transport.write(b"over a unix socket")
        await client.expect(18)
        assert client.data == b"OVER A UNIX SOCKET"
        client.transport.close()
        assert await client.lost is None
        await server.lost
        listener.close()
        await listener.wait_closed()

    run(main())


def test_connection_made_raising(run: Any, proto: Any) -> None:
    # The exception leaves through the wire transport, which reports it and
    # drops the connection: the waiter gets it, and the application (which
    # did get connection_made) gets connection_lost with it.
    async def main() -> None:
        loop = asyncio.get_running_loop()
        from .test_tls_support import require_sockets
        require_sockets(loop)
        contexts = record_exceptions(loop)

        class Broken(Recorder):
            def connection_made(self, transport: Any) -> None:
                super().connection_made(transport)
                raise ZeroDivisionError("in connection_made")
        client = Broken(loop)
        link = await tls_link(loop, proto, client, Recorder(loop), over="tcp", wait=False)
        with pytest.raises(ZeroDivisionError):
            await link.client_waiter
        exc = await client.lost
        assert isinstance(exc, ZeroDivisionError)
        assert client.events == ["made", ("lost", "ZeroDivisionError")]
        assert [c["exception"] for c in contexts] == [exc]
        await link.close()

    run(main())
