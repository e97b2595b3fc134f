"""Helpers for the TLS tests (no tests here).

Owns: the test certificates (CPython's own test certificates, or ones made
with the ``openssl`` binary; tests that need them skip when neither
exists), contexts built from them, an in-memory transport pair that runs on
any event loop, and ``AsyncioLoopWithTLSProtocol``: asyncio's own loop with
``ssl=``/``start_tls`` served by treadle's ``TLSProtocol``, so CPython's
asyncio test suite can check ``TLSProtocol`` before treadle's sockets land::

    python /work/shared/conformance/run.py \\
        --loop tests.net.test_tls_support:new_asyncio_loop_with_tls \\
        --modules test_ssl,test_sslproto
Never: patches asyncio, or leaves a file, thread or process behind.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
from asyncio import selector_events
from typing import Any, Callable

import pytest

from treadle._net.tls import TLSProtocol

# -- certificates -------------------------------------------------------------


class Certs:
    """Paths of the certificates the tests use.

    ca: the CA (PEM) that signed ``localhost`` and ``fakehost``;
    localhost: cert+key for DNS:localhost, signed by ca;
    fakehost: cert+key for DNS:fakehostname, signed by ca;
    selfsigned: cert+key for DNS:localhost, self-signed.
    """

    def __init__(self, ca: str, localhost: str, fakehost: str, selfsigned: str) -> None:
        self.ca = ca
        self.localhost = localhost
        self.fakehost = fakehost
        self.selfsigned = selfsigned


def _cpython_certs() -> Certs | None:
    try:
        import test
    except ImportError:
        return None
    base = os.path.dirname(test.__file__)
    for folder in (os.path.join(base, "certdata"), base):
        names = ("pycacert.pem", "keycert3.pem", "keycert4.pem", "keycert.pem")
        paths = [os.path.join(folder, name) for name in names]
        if all(os.path.exists(p) for p in paths):
            return Certs(*paths)
    return None


_OPENSSL_CONF = """\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = {cn}
[ext]
subjectAltName = DNS:{cn}
basicConstraints = CA:FALSE
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
"""


def _openssl_certs(folder: str) -> Certs | None:
    """Make the same set with the openssl binary, if there is one."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return None

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True, timeout=60)

    def conf(cn: str) -> str:
        path = os.path.join(folder, f"{cn}.cnf")
        with open(path, "w") as f:
            f.write(_OPENSSL_CONF.format(cn=cn))
        return path

    def pem(*parts: str) -> str:
        out = os.path.join(folder, parts[0] + ".pem")
        with open(out, "w") as f:
            for part in parts:
                with open(os.path.join(folder, part)) as src:
                    f.write(src.read())
        return out

    try:
        ca_key = os.path.join(folder, "ca.key")
        ca_crt = os.path.join(folder, "ca.crt")
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            "-keyout", ca_key, "-out", ca_crt, "-config", conf("treadle-test-ca"),
            "-extensions", "ca_ext")
        for cn, name in (("localhost", "localhost"), ("fakehostname", "fakehost")):
            key = os.path.join(folder, name + ".key")
            csr = os.path.join(folder, name + ".csr")
            run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
                "-config", conf(cn))
            run("x509", "-req", "-in", csr, "-CA", ca_crt, "-CAkey", ca_key,
                "-CAcreateserial", "-days", "3650", "-out", os.path.join(folder, name + ".crt"),
                "-extfile", conf(cn), "-extensions", "ext")
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
            "-keyout", os.path.join(folder, "self.key"), "-out", os.path.join(folder, "self.crt"),
            "-config", conf("localhost"), "-extensions", "ext")
    except (OSError, subprocess.SubprocessError):
        return None
    return Certs(ca_crt, pem("localhost.crt", "localhost.key"),
                 pem("fakehost.crt", "fakehost.key"), pem("self.crt", "self.key"))


_certs_cache: list[Certs | None] = []


def get_certs() -> Certs:
    """The certificates, or skip the test when none can be had."""
    if not _certs_cache:
        certs = _cpython_certs()
        if certs is None:
            folder = os.path.join(tempfile.gettempdir(), f"treadle-tls-certs-{os.getpid()}")
            os.makedirs(folder, exist_ok=True)
            certs = _openssl_certs(folder)
        _certs_cache.append(certs)
    certs = _certs_cache[0]
    if certs is None:
        pytest.skip("no test certificates: CPython's test package and the "
                    "openssl binary are both missing")
    return certs


def server_context(cert: str | None = None, *, version: ssl.TLSVersion | None = None,
                   verify_clients: bool = False) -> ssl.SSLContext:
    certs = get_certs()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert or certs.localhost)
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if verify_clients:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.load_verify_locations(certs.ca)
    return ctx


def client_context(*, verify: bool = True, version: ssl.TLSVersion | None = None,
                   cert: str | None = None) -> ssl.SSLContext:
    certs = get_certs()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify:
        ctx.load_verify_locations(certs.ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if version is not None:
        ctx.minimum_version = ctx.maximum_version = version
    if cert is not None:
        ctx.load_cert_chain(cert)
    return ctx


VERSIONS = [pytest.param(ssl.TLSVersion.TLSv1_2, id="tls12"),
            pytest.param(ssl.TLSVersion.TLSv1_3, id="tls13")]


# -- the TLS protocol classes under test --------------------------------------

def asyncio_ssl_protocol_class() -> Any:
    from asyncio import sslproto
    return sslproto.SSLProtocol


#: Behavioural tests run with asyncio's SSLProtocol too: what passes with it
#: is asyncio's behaviour, and TLSProtocol must match it.
PROTOCOL_CLASSES = [pytest.param("asyncio", id="sslproto"),
                    pytest.param("treadle", id="tlsproto")]


def protocol_class(name: str) -> Any:
    return asyncio_ssl_protocol_class() if name == "asyncio" else TLSProtocol


# -- an in-memory transport pair ----------------------------------------------


class _Gone(asyncio.BufferedProtocol):
    """Stands in for the protocol of a transport whose connection is lost."""

    def get_buffer(self, sizehint: int) -> bytearray:
        return bytearray(65536)

    def buffer_updated(self, nbytes: int) -> None:
        pass


class MemoryTransport(asyncio.Transport):
    """One end of an in-memory byte stream between two protocols.

    Behaves as a socket transport does, on any loop: writes are delivered to
    the peer's protocol on a later loop iteration in chunks of at most
    *chunk* bytes (buffered protocols get get_buffer/buffer_updated), the
    writer is paused above *high* bytes in flight, pause_reading() on the
    receiving side holds the bytes back (and so fills the sender), close()
    flushes and then the peer sees EOF.  *force_close* decides whether it
    has asyncio's private ``_force_close(exc)``; *buffered* False makes it
    call data_received() even on buffered protocols, as a transport that
    does not know the buffered API would.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, chunk: int = 65536,
                 high: int = 65536, name: str = "mem", force_close: bool = True,
                 buffered: bool = True) -> None:
        super().__init__({"peername": (name + "-peer", 0), "sockname": (name, 0),
                          "socket": None})
        self._loop = loop
        self._protocol: Any = None
        self.peer: MemoryTransport | None = None
        self._chunk = chunk
        self._high = high
        self._low = high // 4
        self._buffer = bytearray()           # written here, not delivered yet
        self._closing = False
        self._eof_pending = False            # peer gets EOF once _buffer drains
        self._eof_sent = False
        self._lost = False
        self._reading = True
        self._writing_paused = False
        self._delivery_scheduled = False
        self.eof_received = False
        self.bytes_written = 0
        self.log: bytearray | None = None         # set to a bytearray to keep a copy
        self._buffered = buffered                # False: data_received() only
        if not force_close:
            # Like a third-party transport: no asyncio-private _force_close.
            self._force_close = None         # type: ignore[assignment,method-assign]

    @staticmethod
    def pair(loop: asyncio.AbstractEventLoop, proto_a: asyncio.BaseProtocol,
             proto_b: asyncio.BaseProtocol, **kwargs: Any) -> tuple[MemoryTransport, MemoryTransport]:
        a = MemoryTransport(loop, name="a", **kwargs)
        b = MemoryTransport(loop, name="b", **kwargs)
        a.peer, b.peer = b, a
        a._protocol, b._protocol = proto_a, proto_b
        loop.call_soon(proto_a.connection_made, a)
        loop.call_soon(proto_b.connection_made, b)
        return a, b

    def get_protocol(self) -> Any:
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        self._reading = False

    def resume_reading(self) -> None:
        if not self._reading:
            self._reading = True
            if self.peer is not None:
                self.peer._schedule()

    def get_write_buffer_size(self) -> int:
        return len(self._buffer)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low, self._high)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._high = 65536 if high is None else high
        self._low = self._high // 4 if low is None else low

    def write(self, data: Any) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expecting a bytes-like instance, got {type(data).__name__}")
        if self._closing or self._eof_pending or not data:
            return
        self._buffer += data
        self.bytes_written += len(data)
        if self.log is not None:
            self.log += data
        self._schedule()
        if len(self._buffer) > self._high and not self._writing_paused:
            self._writing_paused = True
            self._protocol.pause_writing()

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._eof_pending:
            return
        self._eof_pending = True
        self._schedule()

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._eof_pending = True
        self._schedule()

    def abort(self) -> None:
        self._drop(None)

    def _force_close(self, exc: BaseException | None) -> None:
        self._drop(exc)

    def _drop(self, exc: BaseException | None) -> None:
        # Close now, losing what is buffered; the peer still sees EOF.
        if self._lost:
            return
        self._buffer.clear()
        self._closing = True
        self._eof_pending = True
        self._connection_lost(exc)
        self._schedule()

    def _connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        # As socket transports do: the protocol is dropped after this.
        protocol, self._protocol = self._protocol, _Gone()
        protocol.connection_lost(exc)

    def _schedule(self) -> None:
        if not self._delivery_scheduled:
            self._delivery_scheduled = True
            self._loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        # Move written bytes to the peer's protocol, one chunk per call, as
        # far as the peer reads; then EOF; then our own connection_lost.
        self._delivery_scheduled = False
        peer = self.peer
        assert peer is not None
        if peer._lost or peer._closing:
            # Nobody reads on the other side any more.
            self._buffer.clear()
            if self._closing:
                self._connection_lost(None)
            return
        if self._buffer and peer._reading:
            data = bytes(self._buffer[:self._chunk])
            del self._buffer[:len(data)]
            protocol = peer._protocol
            if peer._buffered and isinstance(protocol, asyncio.BufferedProtocol):
                view = data
                while view:
                    buf = protocol.get_buffer(len(view))
                    n = min(len(buf), len(view))
                    buf[:n] = view[:n]
                    view = view[n:]
                    protocol.buffer_updated(n)
            else:
                protocol.data_received(data)
            if self._writing_paused and len(self._buffer) <= self._low and not self._lost:
                self._writing_paused = False
                self._protocol.resume_writing()
            if self._buffer:
                self._schedule()
                return
        if not self._buffer and self._eof_pending and not self._eof_sent and peer._reading:
            self._eof_sent = True
            peer.eof_received = True
            keep_open = peer._protocol.eof_received()
            if not keep_open:
                peer.close()
        if self._closing and not self._buffer and self._eof_sent:
            self._connection_lost(None)


# -- asyncio's loop with TLSProtocol ------------------------------------------


class AsyncioLoopWithTLSProtocol(asyncio.SelectorEventLoop):  # type: ignore[misc,valid-type]
    """asyncio's selector loop whose ``ssl=`` and ``start_tls`` use
    treadle's TLSProtocol: what the networking layer does on treadle's loop,
    on a loop whose sockets are known good."""

    def _make_ssl_transport(self, rawsock: Any, protocol: Any, sslcontext: Any,
                            waiter: Any = None, *, server_side: bool = False,
                            server_hostname: Any = None, extra: Any = None, server: Any = None,
                            ssl_handshake_timeout: Any = None,
                            ssl_shutdown_timeout: Any = None,
                            call_connection_made: bool = True) -> Any:
        self._ensure_fd_no_transport(rawsock)
        tls = TLSProtocol(self, protocol, sslcontext, waiter, server_side, server_hostname,
                          ssl_handshake_timeout=ssl_handshake_timeout,
                          ssl_shutdown_timeout=ssl_shutdown_timeout)
        selector_events._SelectorSocketTransport(self, rawsock, tls, extra=extra, server=server)
        return tls._app_transport

    async def start_tls(self, transport: Any, protocol: Any, sslcontext: Any, *,
                        server_side: bool = False, server_hostname: Any = None,
                        ssl_handshake_timeout: Any = None,
                        ssl_shutdown_timeout: Any = None) -> Any:
        if not isinstance(sslcontext, ssl.SSLContext):
            raise TypeError(f"sslcontext is expected to be an instance of ssl.SSLContext, "
                            f"got {sslcontext!r}")
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        tls = TLSProtocol(self, protocol, sslcontext, waiter, server_side, server_hostname,
                          ssl_handshake_timeout=ssl_handshake_timeout,
                          ssl_shutdown_timeout=ssl_shutdown_timeout,
                          call_connection_made=False)
        # No data may reach the new protocol before its connection_made().
        transport.pause_reading()
        transport.set_protocol(tls)
        made = self.call_soon(tls.connection_made, transport)
        resumed = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            made.cancel()
            resumed.cancel()
            raise
        return tls._app_transport


def new_asyncio_loop_with_tls() -> asyncio.AbstractEventLoop:
    return AsyncioLoopWithTLSProtocol()


def loop_has_sockets(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether *loop* implements create_connection yet (treadle's sockets
    are built in parallel with this layer)."""
    method = type(loop).create_connection
    return method is not asyncio.AbstractEventLoop.create_connection


def require_sockets(loop: asyncio.AbstractEventLoop) -> None:
    if not loop_has_sockets(loop):
        pytest.skip("this loop has no socket transports yet")


def tcp_pair() -> tuple[socket.socket, socket.socket]:
    """Two connected TCP sockets on 127.0.0.1 (blocking)."""
    with socket.socket() as lsock:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(1)
        client = socket.create_connection(lsock.getsockname())
        server, _ = lsock.accept()
    return client, server


def run_with_timeout(run: Callable[[Any], Any], coro: Any, timeout: float = 20.0) -> Any:
    async def bounded() -> Any:
        return await asyncio.wait_for(coro, timeout)
    return run(bounded())


# -- application protocols that record what happens ---------------------------


class Recorder(asyncio.Protocol):
    """An application protocol that records its callbacks in order
    (consecutive data_received calls are recorded once)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, keep_open: Any = None) -> None:
        self.loop = loop
        self.events: list[Any] = []
        self.data = bytearray()
        self.transport: Any = None
        self.keep_open = keep_open
        self.made: asyncio.Future[Any] = loop.create_future()
        self.eof: asyncio.Future[None] = loop.create_future()
        self.lost: asyncio.Future[BaseException | None] = loop.create_future()
        self.want = 0
        self.got_enough: asyncio.Future[None] = loop.create_future()
        self.on_data: Callable[[bytes], None] | None = None

    def expect(self, n: int) -> asyncio.Future[None]:
        """A future done once *n* bytes in all have arrived."""
        self.want = n
        self._check()
        return self.got_enough

    def _check(self) -> None:
        if self.want and len(self.data) >= self.want and not self.got_enough.done():
            self.got_enough.set_result(None)

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")
        self.made.set_result(transport)

    def data_received(self, data: bytes) -> None:
        assert isinstance(data, bytes)
        self._data(data)
        if self.on_data is not None:
            self.on_data(data)

    def _data(self, data: Any) -> None:
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        self.data += data
        self._check()

    def eof_received(self) -> Any:
        self.events.append("eof")
        if not self.eof.done():
            self.eof.set_result(None)
        return self.keep_open

    def pause_writing(self) -> None:
        self.events.append("pause")

    def resume_writing(self) -> None:
        self.events.append("resume")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append(("lost", type(exc).__name__ if exc is not None else None))
        if not self.lost.done():
            self.lost.set_result(exc)


class BufferedRecorder(Recorder, asyncio.BufferedProtocol):
    """The same, as a BufferedProtocol with a small buffer (so a large
    message takes several get_buffer/buffer_updated rounds)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, *, size: int = 1000,
                 keep_open: Any = None, as_bytearray: bool = False) -> None:
        super().__init__(loop, keep_open=keep_open)
        self.buffer = bytearray(size)
        self.view = memoryview(self.buffer)
        self.as_bytearray = as_bytearray
        self.hints: list[int] = []

    def get_buffer(self, sizehint: int) -> Any:
        self.hints.append(sizehint)
        # A memoryview by default: asyncio's SSLProtocol loses data when a
        # bytearray buffer takes more than one TLS record (it slices it).
        return self.buffer if self.as_bytearray else self.view

    def buffer_updated(self, nbytes: int) -> None:
        self._data(self.buffer[:nbytes])
        if self.on_data is not None:
            self.on_data(bytes(self.buffer[:nbytes]))


class Echo(asyncio.Protocol):
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


# -- a TLS connection between two app protocols, over TCP or memory ---------------


class Link:
    """Both ends of one TLS connection made with protocol class *cls*:
    ``client``/``server`` are the TLS protocols, ``client_waiter``/
    ``server_waiter`` their waiters, ``wire`` the client's wire transport."""

    client: Any
    server: Any
    wire: Any
    server_wire: Any
    listener: Any

    def __init__(self, loop: asyncio.AbstractEventLoop, cls: Any) -> None:
        self.loop = loop
        self.cls = cls
        self.client_waiter: asyncio.Future[Any] = loop.create_future()
        self.server_waiter: asyncio.Future[Any] = loop.create_future()
        self.listener = None
        self.server = None
        self.server_wire = None

    @property
    def app_client(self) -> Any:
        return self.client._app_transport

    async def close(self) -> None:
        if self.listener is not None:
            self.listener.close()
            await self.listener.wait_closed()
        for wire in (self.wire, self.server_wire):
            if wire is not None and not wire.is_closing():
                wire.abort()
        await asyncio.sleep(0)
        await asyncio.sleep(0)


async def tls_link(loop: asyncio.AbstractEventLoop, cls: Any, client_app: Any, server_app: Any,
                   *, over: str = "tcp", cctx: ssl.SSLContext | None = None,
                   sctx: ssl.SSLContext | None = None, server_hostname: str | None = "localhost",
                   client_kwargs: dict[str, Any] | None = None,
                   server_kwargs: dict[str, Any] | None = None,
                   raw_server: Any = None,
                   wait: bool = True, **memory_kwargs: Any) -> Link:
    """Connect *client_app* to *server_app* through TLS protocols of class
    *cls*, over TCP on 127.0.0.1 or over a MemoryTransport pair.  With
    *raw_server*, that protocol is the server's wire protocol (no TLS)."""
    link = Link(loop, cls)
    cctx = cctx or client_context()
    sctx = sctx or server_context()

    def make_server() -> Any:
        if raw_server is not None:
            link.server = raw_server
        else:
            link.server = cls(loop, server_app, sctx, link.server_waiter, server_side=True,
                              **(server_kwargs or {}))
        return link.server

    def make_client() -> Any:
        link.client = cls(loop, client_app, cctx, link.client_waiter,
                          server_hostname=server_hostname, **(client_kwargs or {}))
        return link.client

    if over == "tcp":
        require_sockets(loop)
        link.listener = await loop.create_server(make_server, "127.0.0.1", 0)
        port = link.listener.sockets[0].getsockname()[1]
        link.wire, _ = await loop.create_connection(make_client, "127.0.0.1", port)
    else:
        link.wire, link.server_wire = MemoryTransport.pair(
            loop, make_client(), make_server(), **memory_kwargs)
    if wait:
        await link.client_waiter
        if raw_server is None:
            await link.server_waiter
    return link


def record_exceptions(loop: asyncio.AbstractEventLoop) -> list[dict[str, Any]]:
    contexts: list[dict[str, Any]] = []
    loop.set_exception_handler(lambda _loop, context: contexts.append(context))
    return contexts


def tls_records(wire: bytes) -> list[tuple[int, int]]:
    """(content type, length) of each TLS record in *wire* bytes."""
    records = []
    i = 0
    while i + 5 <= len(wire):
        length = int.from_bytes(wire[i + 3:i + 5], "big")
        records.append((wire[i], length))
        i += 5 + length
    assert i == len(wire), "cut record"
    return records


APPLICATION_DATA = 23
