"""TLS on top of any asyncio transport: ``TLSProtocol`` and ``SSLTransport``.

Owns: the glue between one wire transport (TCP, Unix, or another TLS
transport) and one application protocol: the handshake and shutdown
timeouts, the order of the application's callbacks, the exceptions the
connection's waiter gets, and flow control in both directions between the
two layers.  The TLS itself (records, handshake, close_notify) is the pure
state machine in ``_tlsstate.py``; this module uses ``ssl`` only to build a
default context and to tell its exceptions apart.
Never: reads or writes a socket, or relies on a private method of the wire
transport (``_force_close`` is used when the transport has it, ``abort()``
otherwise), so it runs unchanged on asyncio's loop, uvloop or treadle's.

``TLSProtocol`` takes the constructor of ``asyncio.sslproto.SSLProtocol``
and behaves as it does, as seen by the loop (``._app_transport``, the
waiter), by the application (callbacks, exceptions, the transport's
methods) and by the peer, with these deliberate differences:

* Application data the peer sends after our close_notify, before its own,
  is discarded and the close completes cleanly (asyncio fails the close
  with ``APPLICATION_DATA_AFTER_CLOSE_NOTIFY``, a known source of spurious
  errors in servers).
* The alert a failed handshake produces is sent to the peer before the
  connection closes, so it learns why (asyncio drops the connection and
  the peer sees a reset or an EOF); a TLS 1.3 client whose certificate the
  server refuses gets ``connection_lost(SSLError)`` instead of an EOF.
* Data decrypted before a record turns out corrupt is delivered before the
  error; ``writelines()`` with a non-bytes item raises ``TypeError`` at the
  call (as plain transports do) instead of killing the connection, and
  sends its items as one TLS record when they are small.
* A ``BufferedProtocol`` whose ``get_buffer()`` returns a ``bytearray``
  gets every byte (asyncio's decrypts the second record of a read into a
  copy of a slice, and loses it).
* A second ``close()`` detaches the transport, as asyncio's does, but the
  detached transport answers as a closed one instead of raising
  ``AttributeError``.

Writing: small writes made while this protocol is calling the application
(``connection_made``, ``data_received``, ``buffer_updated``,
``eof_received``) are held and encrypted together, as one TLS record, when
the call returns (a record costs a fixed ~25 bytes and a cipher call, which
dominate small writes); every other write is encrypted and sent at once, as
on asyncio (the write rule of ``_writeflow``).  Held bytes count in
``get_write_buffer_size()`` but never pause the application by themselves;
a write of a record or more is never held; ``close()`` and ``abort()`` send
what is held first.

Flow control.  Reading: when the application pauses, decrypted data is not
read out of the TLS layer; the wire transport keeps reading until the
received-but-unprocessed bytes reach the read high-water mark (256 KiB,
``set_read_buffer_limits``) and is paused then, resumed below the low mark.
Writing: when the wire transport pauses us, encrypted output stays here;
the application is paused once that plus its unencrypted data reaches the
write high-water mark (512 KiB) and resumed at the low mark.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import warnings
from asyncio import constants as _asyncio_constants
from asyncio.transports import _FlowControlMixin
from typing import Any, Callable, ClassVar, Iterable

from .._kernel._compat import asyncio_logger
from .._writeflow import WriteRule, byte_view, lost_write, tell_protocol, water_marks
from ._tlsstate import (CLOSED, FLUSHING, HANDSHAKING, SHUTDOWN, WRAPPED, HandshakeComplete,
                        TLSConnection)

__all__ = ["TLSProtocol", "SSLTransport"]


# The same defaults as asyncio (asyncio.constants).
SSL_HANDSHAKE_TIMEOUT = 60.0
SSL_SHUTDOWN_TIMEOUT = 30.0
READ_HIGH_WATER_KIB = 256
WRITE_HIGH_WATER_KIB = 512

#: writelines() joins its items into one write (one run of TLS records)
#: when together they are at most this long.
WRITELINES_JOIN_LIMIT = 64 * 1024

#: Writes are held (to share a record) only while less than this is held;
#: the most plaintext a TLS record carries.
HOLD_LIMIT = 16384

# Where the application protocol is (asyncio's AppProtocolState):
# INIT -connection_made-> CON_MADE [-eof_received-> EOF] -connection_lost-> CON_LOST
_APP_INIT = 0
_APP_CON_MADE = 1
_APP_EOF = 2
_APP_CON_LOST = 3

# loop.sendfile() reads this from a transport: ours can only be fed by the
# read-and-write fallback.
_SENDFILE_FALLBACK: Any = getattr(getattr(_asyncio_constants, "_SendfileMode", None),
                                  "FALLBACK", None)
#: "Everything there is": more than a memory BIO ever holds (flow control
#: pauses the wire long before), and still a machine-sized int.
_READ_ALL = 1 << 30

_BufferedProtocol = asyncio.BufferedProtocol
_CancelledError = asyncio.CancelledError
_warn = warnings.warn


class _ReadBuffer:
    """The buffer wire transports read into, shared by the TLS connections
    of one thread.

    A wire transport fills what ``get_buffer()`` returned and calls
    ``buffer_updated()`` at once, which copies the bytes into the TLS layer:
    so one buffer serves every connection, instead of asyncio's 256 KiB per
    connection.  ``lent_to`` guards against a transport that would interleave
    two connections' reads: while one holds the buffer, the others read into
    their own."""

    __slots__ = ("view", "lent_to")

    def __init__(self, size: int) -> None:
        self.view = memoryview(bytearray(size))
        self.lent_to: object = None


_thread_state = threading.local()


def _thread_read_buffer(size: int) -> _ReadBuffer:
    buffers: dict[int, _ReadBuffer] | None = getattr(_thread_state, "read_buffers", None)
    if buffers is None:
        buffers = _thread_state.read_buffers = {}
    buffer = buffers.get(size)
    if buffer is None:
        buffer = buffers[size] = _ReadBuffer(size)
    return buffer


def _default_context(server_side: bool, server_hostname: str | None) -> ssl.SSLContext:
    # ssl=True on a client: a secure default context (asyncio's rule).
    if server_side:
        raise ValueError("Server side SSL needs a valid SSLContext")
    context = ssl.create_default_context()
    if not server_hostname:
        context.check_hostname = False
    return context


class SSLTransport(_FlowControlMixin):
    """The transport the application sees on a TLS connection.

    Named "SSL..." on purpose: programs (and asyncio's own tests) recognise a
    TLS transport by 'ssl' in its class name, as asyncio's is called
    ``_SSLProtocolTransport``.  An ``asyncio.Transport`` through asyncio's
    ``_FlowControlMixin``, which ``loop.sendfile()``'s fallback requires; the
    mixin's own state is unused (flow control lives in the protocol).

    A second ``close()`` detaches the transport from the TLS protocol, as
    asyncio's does, so an application protocol that keeps its transport does
    not keep the SSL object and context alive; a detached transport answers
    as a closed one (asyncio's raises AttributeError instead).
    """

    # Its methods are thin; the work is in TLSProtocol and TLSConnection.

    # start_tls() may upgrade this transport again (TLS inside TLS).
    _start_tls_compatible = True

    _loop: asyncio.AbstractEventLoop
    _sendfile_compatible: Any
    _ssl_protocol: TLSProtocol | None
    _closed: bool

    def __init__(self, loop: asyncio.AbstractEventLoop, ssl_protocol: TLSProtocol) -> None:
        # Not the mixin's __init__: it would set _protocol_paused, which is
        # the protocol's state here.
        self._extra: dict[str, Any] = {}
        self._loop = loop
        self._ssl_protocol = ssl_protocol
        self._closed = False
        # loop.sendfile() goes through the read-and-write fallback.
        self._sendfile_compatible = _SENDFILE_FALLBACK

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        protocol = self._ssl_protocol
        tls = "detached" if protocol is None else repr(protocol._tls)
        return f"<{type(self).__name__} {state} {tls}>"

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """TLS details (sslcontext, ssl_object, peercert, cipher,
        compression), then whatever the wire transport knows."""
        protocol = self._ssl_protocol
        if protocol is None:
            return default
        return protocol._get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        if self._ssl_protocol is not None:
            self._ssl_protocol._set_app_protocol(protocol)

    def get_protocol(self) -> Any:
        protocol = self._ssl_protocol
        return None if protocol is None else protocol._app_protocol

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Send close_notify after the buffered data; connection_lost(None)
        follows once the peer answers (or the shutdown timeout expires)."""
        protocol = self._ssl_protocol
        if not self._closed:
            self._closed = True
            if protocol is not None:
                protocol._start_shutdown()
        else:
            self._ssl_protocol = None

    def __del__(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                _warn(f"unclosed transport <{type(self).__name__} object>", ResourceWarning)
            except Exception:
                pass    # interpreter shutdown: the warnings machinery is gone

    def is_reading(self) -> bool:
        protocol = self._ssl_protocol
        return protocol is not None and not protocol._app_reading_paused

    def pause_reading(self) -> None:
        """Stop delivering data to the protocol until resume_reading()."""
        if self._ssl_protocol is not None:
            self._ssl_protocol._app_reading_paused = True

    def resume_reading(self) -> None:
        if self._ssl_protocol is not None:
            self._ssl_protocol._resume_reading()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        protocol = self._ssl_protocol
        if protocol is None:
            water_marks(high, low, WRITE_HIGH_WATER_KIB * 1024)    # still validated
            return
        protocol._set_write_buffer_limits(high, low)
        protocol._control_app_writing()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        protocol = self._ssl_protocol
        if protocol is None:
            return (0, 0)
        return (protocol._outgoing_low_water, protocol._outgoing_high_water)

    def get_write_buffer_size(self) -> int:
        """Application data not yet encrypted plus encrypted data not yet
        handed to the wire transport."""
        protocol = self._ssl_protocol
        return 0 if protocol is None else protocol._get_write_buffer_size()

    def set_read_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        protocol = self._ssl_protocol
        if protocol is None:
            water_marks(high, low, READ_HIGH_WATER_KIB * 1024)
            return
        protocol._set_read_buffer_limits(high, low)
        protocol._control_wire_reading()

    def get_read_buffer_limits(self) -> tuple[int, int]:
        protocol = self._ssl_protocol
        if protocol is None:
            return (0, 0)
        return (protocol._incoming_low_water, protocol._incoming_high_water)

    def get_read_buffer_size(self) -> int:
        """Received bytes not yet decrypted."""
        protocol = self._ssl_protocol
        return 0 if protocol is None else protocol._tls.bytes_received

    @property
    def _protocol_paused(self) -> bool:
        # Read by asyncio's sendfile fallback to know whether to wait.
        protocol = self._ssl_protocol
        return protocol is not None and protocol._app_writing_paused

    def write(self, data: Any) -> None:
        """Encrypt *data* and send it (buffered if the peer is slow)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data: expecting a bytes-like instance, "
                            f"got {type(data).__name__}")
        protocol = self._ssl_protocol
        if data and protocol is not None:
            protocol._write(data)

    def writelines(self, list_of_data: Iterable[Any]) -> None:
        pieces = list(list_of_data)
        for i, data in enumerate(pieces):
            if not isinstance(data, (bytes, bytearray, memoryview)):
                # Any other buffer (an array.array, an mmap) is taken, as
                # asyncio's TLS transport takes it.
                try:
                    data = memoryview(data)
                except TypeError:
                    raise TypeError(f"data: expecting a bytes-like instance, "
                                    f"got {type(data).__name__}") from None
            pieces[i] = byte_view(data)     # joined below: must be flat bytes
        if self._ssl_protocol is not None:
            self._ssl_protocol._write_appdata(pieces)

    def write_eof(self) -> None:
        """TLS transports cannot half-close: always raises NotImplementedError,
        as asyncio's do (``can_write_eof()`` is False).

        A close_notify is a full close to every asyncio peer, so sending
        one here would end the conversation instead of half-closing it."""
        raise NotImplementedError(
            "TLS transports cannot half-close (can_write_eof() is False); "
            "use close() to end the connection")

    def can_write_eof(self) -> bool:
        return False

    def abort(self) -> None:
        """Close at once: buffered data is lost, no close_notify is sent;
        connection_lost(None) follows."""
        self._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        # What an inner TLSProtocol calls to drop this transport with an
        # error (TLS inside TLS), as it would on a socket transport.
        self._closed = True
        if self._ssl_protocol is not None:
            self._ssl_protocol._abort(exc)

    def _test__append_write_backlog(self, data: bytes) -> None:
        # asyncio's own tests fill the unencrypted queue through this.
        if self._ssl_protocol is not None:
            self._ssl_protocol._tls.queue(data)


class TLSProtocol(_BufferedProtocol):
    """The protocol of a wire transport that carries TLS for an application
    protocol; see the module docstring.

    ``TLSProtocol(loop, app_protocol, sslcontext, waiter, server_side=False,
    server_hostname=None, call_connection_made=True,
    ssl_handshake_timeout=None, ssl_shutdown_timeout=None)``: the
    application's transport is ``._app_transport``; *waiter* (a future, or
    None) gets None once the handshake is done, or the exception that
    ended it.
    """

    #: Size of the buffer the wire transport reads into (a class attribute,
    #: as asyncio's).
    max_size: ClassVar[int] = 262144

    def __init__(self, loop: asyncio.AbstractEventLoop, app_protocol: asyncio.BaseProtocol,
                 sslcontext: ssl.SSLContext | None, waiter: asyncio.Future[Any] | None,
                 server_side: bool = False, server_hostname: str | None = None,
                 call_connection_made: bool = True,
                 ssl_handshake_timeout: float | None = None,
                 ssl_shutdown_timeout: float | None = None) -> None:
        if ssl_handshake_timeout is None:
            ssl_handshake_timeout = SSL_HANDSHAKE_TIMEOUT
        elif ssl_handshake_timeout <= 0:
            raise ValueError(f"ssl_handshake_timeout should be a positive number, "
                             f"got {ssl_handshake_timeout}")
        if ssl_shutdown_timeout is None:
            ssl_shutdown_timeout = SSL_SHUTDOWN_TIMEOUT
        elif ssl_shutdown_timeout <= 0:
            raise ValueError(f"ssl_shutdown_timeout should be a positive number, "
                             f"got {ssl_shutdown_timeout}")
        if not sslcontext:
            sslcontext = _default_context(server_side, server_hostname)
        self._server_side = server_side
        self._server_hostname = server_hostname if server_hostname and not server_side else None
        self._sslcontext = sslcontext
        # Before anything that would need cleaning up (an app transport
        # never closed warns): wrap_bio rejects a malformed host name.
        self._tls = TLSConnection(sslcontext, server_side=server_side,
                                  server_hostname=self._server_hostname)
        self._extra: dict[str, Any] = {"sslcontext": sslcontext}

        # Read buffers (see _ReadBuffer): the thread's shared one, this
        # connection's own (made only if ever needed), the one lent last.
        self._shared_buffer: _ReadBuffer | None = None
        self._own_buffer: memoryview | None = None
        self._lent_buffer: memoryview | None = None

        self._loop = loop
        self._waiter = waiter
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._handshake_start_time: float | None = None
        self._handshake_timeout_handle: asyncio.TimerHandle | None = None
        self._shutdown_timeout_handle: asyncio.TimerHandle | None = None

        self._transport: Any = None
        #: The exception to report when the wire transport (one without
        #: _force_close) reports a plain close after we aborted it.
        self._close_exc: BaseException | None = None
        self._conn_lost = 0
        self._eof_received = False
        self._app_state = _APP_INIT if call_connection_made else _APP_CON_MADE

        self._app_protocol: Any = None
        self._app_is_buffered = False
        self._app_get_buffer: Any = None
        self._app_buffer_updated: Any = None
        self._set_app_protocol(app_protocol)

        # Flow control (see the module docstring).
        self._wire_writing_paused = False
        self._wire_reading_paused = False
        self._app_reading_paused = False
        self._app_writing_paused = False
        self._incoming_high_water = 0
        self._incoming_low_water = 0
        self._set_read_buffer_limits()
        self._outgoing_high_water = 0
        self._outgoing_low_water = 0
        self._set_write_buffer_limits()

        # Write coalescing (see the module docstring).
        self._held: list[bytes] = []
        self._held_size = 0
        #: When writes leave (treadle's write rule; on another loop only
        #: "held while the application is being called").
        self._rule = WriteRule(loop)
        #: Set while the data received before close() is delivered (see
        #: _read_before_shutdown): writes are refused as after close().
        self._draining = False

        self._app_transport_created = True
        self._app_transport: SSLTransport | None = SSLTransport(loop, self)

    def __repr__(self) -> str:
        return f"<TLSProtocol {self._tls!r}>"

    # -- the application protocol ---------------------------------------------

    def _set_app_protocol(self, app_protocol: Any) -> None:
        self._app_protocol = app_protocol
        if hasattr(app_protocol, "get_buffer") and isinstance(app_protocol, _BufferedProtocol):
            self._app_is_buffered = True
            self._app_get_buffer = app_protocol.get_buffer
            self._app_buffer_updated = app_protocol.buffer_updated
        else:
            self._app_is_buffered = False
            self._app_get_buffer = None
            self._app_buffer_updated = None

    def _get_app_transport(self) -> SSLTransport:
        transport = self._app_transport
        if transport is None:
            raise RuntimeError("the TLS transport of this protocol is gone")
        return transport

    def _wakeup_waiter(self, exc: BaseException | None = None) -> None:
        waiter = self._waiter
        if waiter is None:
            return
        self._waiter = None
        if not waiter.cancelled():
            if exc is not None:
                waiter.set_exception(exc)
            else:
                waiter.set_result(None)

    def _get_extra_info(self, name: str, default: Any = None) -> Any:
        extra = self._extra
        if name in extra:
            return extra[name]
        if self._transport is not None:
            return self._transport.get_extra_info(name, default)
        return default

    # -- the wire transport's callbacks ---------------------------------------

    def connection_made(self, transport: Any) -> None:
        """The wire connection is up: start the handshake."""
        self._transport = transport
        self._start_handshake()

    def connection_lost(self, exc: BaseException | None) -> None:
        """The wire connection is gone (closed by us, by the peer, or broken)."""
        if exc is None:
            exc = self._close_exc
        self._return_buffer()
        self._own_buffer = None
        tls = self._tls
        self._conn_lost += 1
        app_transport = self._app_transport
        if app_transport is not None:
            app_transport._closed = True
        # A connection that never got through its handshake is not reported
        # to the application: it never had it (or, after start_tls(), the
        # waiter tells the caller).
        if tls.state != HANDSHAKING and (
                self._app_state == _APP_CON_MADE or self._app_state == _APP_EOF):
            self._app_state = _APP_CON_LOST
            self._loop.call_soon(self._app_protocol.connection_lost, exc)
        tls.abort()
        tls.data_to_send()
        self._held.clear()
        self._held_size = 0
        # Break the cycles (protocol <-> transports, timers) so the context
        # and the SSL object go as soon as the loop lets go of us.
        self._transport = None
        self._app_transport = None
        self._app_protocol = None
        self._app_get_buffer = None
        self._app_buffer_updated = None
        self._wakeup_waiter(exc)
        # Nor may the error outlive its report: its traceback holds the
        # frames of the call that failed, whose locals hold this protocol.
        self._close_exc = None
        tls.error = None
        exc = None
        if self._shutdown_timeout_handle is not None:
            self._shutdown_timeout_handle.cancel()
            self._shutdown_timeout_handle = None
        if self._handshake_timeout_handle is not None:
            self._handshake_timeout_handle.cancel()
            self._handshake_timeout_handle = None

    def get_buffer(self, sizehint: int) -> memoryview:
        shared = self._shared_buffer
        if shared is None:
            shared = self._shared_buffer = _thread_read_buffer(self.max_size)
        holder = shared.lent_to
        view: memoryview
        if holder is None or holder is self:
            shared.lent_to = self
            view = shared.view
        elif self._own_buffer is not None:
            view = self._own_buffer
        else:
            view = self._own_buffer = memoryview(bytearray(self.max_size))
        self._lent_buffer = view
        return view

    def buffer_updated(self, nbytes: int) -> None:
        tls = self._tls
        view = self._lent_buffer
        if view is None:
            if tls.state == CLOSED:
                return
            raise RuntimeError("buffer_updated() called without get_buffer()")
        tls.receive(view[:nbytes])
        self._lent_buffer = None
        shared = self._shared_buffer
        if shared is not None and shared.lent_to is self:
            shared.lent_to = None
        self._process_received(tls.state)

    def _return_buffer(self) -> None:
        # The wire read ended without buffer_updated() (EOF, error).
        self._lent_buffer = None
        shared = self._shared_buffer
        if shared is not None and shared.lent_to is self:
            shared.lent_to = None

    def data_received(self, data: bytes) -> None:
        """For wire transports that do not use the buffered protocol API."""
        tls = self._tls
        tls.receive(data)
        self._process_received(tls.state)

    def _process_received(self, state: int) -> None:
        if state == WRAPPED:
            self._do_read()
        elif state == HANDSHAKING:
            self._do_handshake()
        elif state == FLUSHING or state == SHUTDOWN:
            self._do_shutdown()

    def eof_received(self) -> bool | None:
        """The peer closed its side of the wire.

        Fails a handshake in progress with ConnectionResetError; otherwise
        the data already received is delivered, then eof_received() and a
        close.  Returns True (keep the wire open) only while the application
        has reading paused, so that data still reaches it on resume."""
        self._eof_received = True
        self._return_buffer()
        tls = self._tls
        try:
            if self._loop.get_debug():
                asyncio_logger().debug("%r received EOF", self)
            state = tls.state
            if state == HANDSHAKING:
                try:
                    tls.receive_eof()
                except ConnectionResetError as exc:
                    self._on_handshake_complete(exc, None)
            elif state == WRAPPED:
                tls.receive_eof()
                if self._app_reading_paused:
                    return True
                self._do_read()
            elif state == FLUSHING or state == SHUTDOWN:
                tls.receive_eof()
                self._process_outgoing()
                if tls.state == CLOSED:
                    self._call_eof_received()
                    self._on_shutdown_complete(None)
        except Exception:
            if self._transport is not None:
                self._transport.close()
            raise
        return None

    def pause_writing(self) -> None:
        """The wire transport's buffer is full: keep encrypted data here."""
        self._wire_writing_paused = True

    def resume_writing(self) -> None:
        """The wire transport drained: hand it what is waiting."""
        self._wire_writing_paused = False
        self._process_outgoing()

    # -- handshake -------------------------------------------------------------

    def _start_handshake(self) -> None:
        loop = self._loop
        if loop.get_debug():
            asyncio_logger().debug("%r starts SSL handshake", self)
            self._handshake_start_time = loop.time()
        else:
            self._handshake_start_time = None
        self._handshake_timeout_handle = loop.call_later(
            self._ssl_handshake_timeout, self._check_handshake_timeout)
        try:
            event = self._tls.start_handshake()
        except ssl.SSLError as exc:
            self._process_outgoing()
            self._on_handshake_complete(exc, None)
            return
        self._process_outgoing()
        if event is not None:
            self._on_handshake_complete(None, event)

    def _do_handshake(self) -> None:
        try:
            event = self._tls.do_handshake()
        except ssl.SSLError as exc:
            # The alert OpenSSL produced goes out before the connection
            # closes, so the peer learns why.
            self._process_outgoing()
            self._on_handshake_complete(exc, None)
            return
        self._process_outgoing()
        if event is not None:
            self._on_handshake_complete(None, event)

    def _check_handshake_timeout(self) -> None:
        self._handshake_timeout_handle = None
        if self._tls.state == HANDSHAKING:
            self._fatal_error(ConnectionAbortedError(
                f"SSL handshake is taking longer than {self._ssl_handshake_timeout} "
                f"seconds: aborting the connection"))

    def _on_handshake_complete(self, exc: BaseException | None,
                               event: HandshakeComplete | None) -> None:
        if self._handshake_timeout_handle is not None:
            self._handshake_timeout_handle.cancel()
            self._handshake_timeout_handle = None
        if exc is not None or event is None:
            assert exc is not None
            if isinstance(exc, ssl.CertificateError):
                message = "SSL handshake failed on verifying the certificate"
            else:
                message = "SSL handshake failed"
            self._fatal_error(exc, message, deliver_alert=True)
            # The alert may still be held by the wire transport (we run
            # inside its data_received), and the wire's connection_lost()
            # is scheduled when it leaves.  Wake the waiter at the end of
            # the batch, after that, in asyncio's order: by the time
            # start_tls() raises, the wire transport has let go of this
            # protocol, so nothing keeps the failed connection alive (the
            # error's traceback holds the caller's frames).
            if self._waiter is None or not self._rule.after_batch(
                    lambda: self._wakeup_waiter(exc)):
                self._wakeup_waiter(exc)
            return
        loop = self._loop
        if loop.get_debug() and self._handshake_start_time is not None:
            dt = loop.time() - self._handshake_start_time
            asyncio_logger().debug("%r: SSL handshake took %.1f ms", self, dt * 1e3)
        extra = self._extra
        extra["peercert"] = event.peercert
        extra["cipher"] = event.cipher
        extra["compression"] = event.compression
        extra["ssl_object"] = self._tls.ssl_object
        if self._app_state == _APP_INIT:
            self._app_state = _APP_CON_MADE
            rule = self._rule
            rule.enter_callback()
            try:
                self._app_protocol.connection_made(self._get_app_transport())
            finally:
                rule.leave_callback()
            if not rule.in_callback():
                self._flush_held()
        self._wakeup_waiter()
        self._do_read()

    # -- shutdown --------------------------------------------------------------

    def _start_shutdown(self) -> None:
        """The application closed (or the peer sent close_notify)."""
        tls = self._tls
        state = tls.state
        if state != WRAPPED and state != HANDSHAKING:
            return
        if self._app_transport is not None:
            self._app_transport._closed = True
        if state == HANDSHAKING:
            self._abort(None)
            return
        # What the application wrote goes before close_notify.
        self._flush_held()
        if tls.state != WRAPPED:
            return
        if not self._app_reading_paused and (tls.bytes_received
                                             or tls.ssl_object.pending()):
            self._read_before_shutdown()
            if tls.state != WRAPPED:
                return
        self._shutdown_timeout_handle = self._loop.call_later(
            self._ssl_shutdown_timeout, self._check_shutdown_timeout)
        self._shutdown_step(tls.start_shutdown)

    def _read_before_shutdown(self) -> None:
        """Deliver the application data that arrived before close().

        asyncio's SSLProtocol reads once more when it starts flushing, so a
        protocol that is reading gets the records already received (and
        OpenSSL does not meet them after our close_notify, where it fails
        the close with APPLICATION_DATA_AFTER_CLOSE_NOTIFY).  The
        application closed: what it writes from these callbacks is dropped,
        as asyncio drops it."""
        tls = self._tls
        self._rule.enter_callback()
        self._draining = True
        try:
            if self._app_is_buffered:
                self._read_buffered(tls)
            else:
                self._read_copied(tls)
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")
        finally:
            self._draining = False
            self._rule.leave_callback()
        if tls.state == WRAPPED:
            if tls.bytes_to_send:
                self._process_outgoing()
            if tls.close_notify_received:
                self._call_eof_received()

    def _do_shutdown(self) -> None:
        self._shutdown_step(self._tls.do_shutdown)

    def _shutdown_step(self, step: Callable[[], bool]) -> None:
        """One step of the closing handshake (*step* says whether it
        completed it); what it wrote goes out either way."""
        try:
            done = step()
        except ssl.SSLError as exc:
            self._process_outgoing()
            self._on_shutdown_complete(exc)
            return
        self._process_outgoing()
        if done:
            self._call_eof_received()
            self._on_shutdown_complete(None)

    def _check_shutdown_timeout(self) -> None:
        self._shutdown_timeout_handle = None
        state = self._tls.state
        if (state == FLUSHING or state == SHUTDOWN or state == CLOSED) \
                and self._transport is not None:
            self._force_close_wire(TimeoutError("SSL shutdown timed out"))

    def _on_shutdown_complete(self, exc: BaseException | None) -> None:
        if exc is not None:
            if self._shutdown_timeout_handle is not None:
                self._shutdown_timeout_handle.cancel()
                self._shutdown_timeout_handle = None
            self._fatal_error(exc)
        elif self._transport is not None:
            # The wire's close() flushes what it holds first, which a peer
            # that does not read can delay forever: the shutdown timeout
            # runs on (or starts, when the peer began the shutdown) until
            # connection_lost(), as on 3.14's asyncio.
            if self._shutdown_timeout_handle is None:
                self._shutdown_timeout_handle = self._loop.call_later(
                    self._ssl_shutdown_timeout, self._check_shutdown_timeout)
            self._loop.call_soon(self._transport.close)

    def _abort(self, exc: BaseException | None) -> None:
        # Held writes were "sent" as far as the application knows: hand them
        # to the wire as asyncio would have (its abort may still drop them).
        self._flush_held()
        self._tls.abort()
        if self._transport is not None:
            self._force_close_wire(exc)

    def _force_close_wire(self, exc: BaseException | None) -> None:
        # Drop the wire connection now, discarding what it buffered, and
        # have connection_lost() report *exc*.  asyncio's transports (and
        # ours) can do that directly; any other one gets abort().
        transport = self._transport
        force_close = getattr(transport, "_force_close", None)
        if force_close is not None:
            force_close(exc)
        else:
            if self._close_exc is None:
                self._close_exc = exc
            transport.abort()

    # -- application data out --------------------------------------------------

    def _write(self, data: Any) -> None:
        tls = self._tls
        state = tls.state
        if state != WRAPPED or self._draining:
            if state == HANDSHAKING:
                self._send_now(data)          # queued until the handshake is done
            else:
                self._write_refused()
            return
        if self._rule.in_callback():
            if len(data) < HOLD_LIMIT:
                self._hold(data)
                return
            self._flush_held()
        self._send_now(data)

    def _write_appdata(self, pieces: list[Any]) -> None:
        tls = self._tls
        state = tls.state
        if (state != WRAPPED and state != HANDSHAKING) or self._draining:
            self._write_refused()
            return
        pieces = [data for data in pieces if data]
        if not pieces:
            return
        total = sum(map(len, pieces))
        if state == WRAPPED and self._rule.in_callback() and total < HOLD_LIMIT:
            for data in pieces:
                self._hold(data)
            return
        self._flush_held()
        if len(pieces) == 1:
            self._send_now(pieces[0])
        elif total <= WRITELINES_JOIN_LIMIT:
            # One run of records instead of one (or more) per item.
            self._send_now(b"".join(pieces))
        else:
            self._send_many(pieces)

    def _send_now(self, data: Any) -> None:
        try:
            self._tls.send(data)
            self._process_outgoing()
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _send_many(self, pieces: list[Any]) -> None:
        try:
            send = self._tls.send
            for data in pieces:
                send(data)
            self._process_outgoing()
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _hold(self, data: Any) -> None:
        if type(data) is not bytes:
            data = bytes(data)        # the caller may reuse its buffer
        self._held.append(data)
        self._held_size += len(data)
        if self._held_size >= HOLD_LIMIT:
            self._flush_held()
        # (else: flushed when the application's callback returns)

    def _flush_held(self) -> None:
        held = self._held
        if not held:
            return
        data = held[0] if len(held) == 1 else b"".join(held)
        held.clear()
        self._held_size = 0
        if self._tls.state == WRAPPED:
            self._send_now(data)

    def _write_refused(self) -> None:
        # Writes after close are dropped, as on any asyncio transport; after
        # a few, each is logged.
        self._conn_lost = lost_write(self._conn_lost, "SSL connection is closed")

    def _process_outgoing(self) -> None:
        if not self._wire_writing_paused:
            tls = self._tls
            if tls.bytes_to_send:
                transport = self._transport
                if transport is not None:
                    transport.write(tls.data_to_send())
        self._control_app_writing()

    # -- application data in ---------------------------------------------------

    def _do_read(self) -> None:
        tls = self._tls
        if tls.state != WRAPPED:
            return
        try:
            if not self._app_reading_paused:
                rule = self._rule
                rule.enter_callback()
                try:
                    if self._app_is_buffered:
                        drained = self._read_buffered(tls)
                    else:
                        drained = self._read_copied(tls)
                finally:
                    rule.leave_callback()
                if self._held and not rule.in_callback():
                    self._flush_held()
                if tls.state == WRAPPED:
                    # Reading may have produced records for the peer (and let
                    # a write stalled by a renegotiation through).
                    if tls.bytes_to_send:
                        self._process_outgoing()
                    if tls.close_notify_received:
                        self._call_eof_received()
                        self._start_shutdown()
                    elif drained and self._eof_received:
                        self._finish_after_eof()
            self._control_wire_reading()
        except Exception as exc:
            self._fatal_error(exc, "Fatal error on SSL protocol")

    def _read_buffered(self, tls: TLSConnection) -> bool:
        buf = self._app_get_buffer(tls.bytes_received)
        size = len(buf)
        if not size:
            raise RuntimeError("get_buffer() returned an empty buffer")
        n = tls.read_into(buf)
        if n:
            self._app_buffer_updated(n)
        if tls.error is not None:
            tls.raise_error()
        if n == size:
            # The buffer is full and more may be waiting: let other
            # callbacks run first, then read on.
            self._loop.call_soon(self._do_read)
            return False
        return True

    def _read_copied(self, tls: TLSConnection) -> bool:
        data = tls.read(_READ_ALL)
        if data:
            self._app_protocol.data_received(data)
        if tls.error is not None:
            tls.raise_error()
        return True

    def _finish_after_eof(self) -> None:
        # The peer closed the wire and everything it sent was delivered.
        tls = self._tls
        self._call_eof_received()
        try:
            tls.start_shutdown()
        except ssl.SSLError as exc:
            self._on_shutdown_complete(exc)
            return
        self._process_outgoing()
        self._on_shutdown_complete(None)

    def _call_eof_received(self) -> None:
        try:
            if self._app_state == _APP_CON_MADE:
                self._app_state = _APP_EOF
                rule = self._rule
                rule.enter_callback()
                try:
                    keep_open = self._app_protocol.eof_received()
                finally:
                    rule.leave_callback()
                if not rule.in_callback():
                    self._flush_held()
                if keep_open:
                    asyncio_logger().warning("returning true from eof_received() "
                                   "has no effect when using ssl")
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Error calling eof_received()")

    # -- flow control ----------------------------------------------------------

    def _control_app_writing(self) -> None:
        # asyncio's rule: pause at size >= high, resume at size <= low.
        # Held writes do not count (see the module docstring).
        tls = self._tls
        size = tls.bytes_to_send + tls.queued
        if not self._app_writing_paused:
            if size < self._outgoing_high_water:
                return
            self._app_writing_paused = True
            name = "pause_writing"
        else:
            if size > self._outgoing_low_water:
                return
            self._app_writing_paused = False
            name = "resume_writing"
        tell_protocol(self._loop, self._app_transport, self._app_protocol, name,
                      report_as=self)

    def _get_write_buffer_size(self) -> int:
        tls = self._tls
        return tls.bytes_to_send + tls.queued + self._held_size

    def _set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._outgoing_high_water, self._outgoing_low_water = water_marks(
            high, low, WRITE_HIGH_WATER_KIB * 1024)

    def _resume_reading(self) -> None:
        if self._app_reading_paused:
            self._app_reading_paused = False
            self._loop.call_soon(self._resume)

    def _resume(self) -> None:
        state = self._tls.state
        if state == WRAPPED:
            self._do_read()
        elif state == FLUSHING or state == SHUTDOWN:
            self._do_shutdown()

    def _control_wire_reading(self) -> None:
        transport = self._transport
        if transport is None:
            return
        size = self._tls.bytes_received
        if size >= self._incoming_high_water and not self._wire_reading_paused:
            self._wire_reading_paused = True
            transport.pause_reading()
        elif size <= self._incoming_low_water and self._wire_reading_paused:
            self._wire_reading_paused = False
            transport.resume_reading()

    def _set_read_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._incoming_high_water, self._incoming_low_water = water_marks(
            high, low, READ_HIGH_WATER_KIB * 1024)

    # -- errors ----------------------------------------------------------------

    def _fatal_error(self, exc: Any, message: str = "Fatal error on transport",
                     deliver_alert: bool = False) -> None:
        transport = self._transport
        if transport is not None:
            if deliver_alert and not self._wire_writing_paused:
                # close(), not a forced close: the alert just written must
                # reach the peer.  connection_lost() still reports *exc*.
                self._close_exc = exc
                transport.close()
            else:
                self._force_close_wire(exc)
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                asyncio_logger().debug("%r: %s", self, message, exc_info=True)
        elif not isinstance(exc, _CancelledError):
            self._loop.call_exception_handler({
                "message": message,
                "exception": exc,
                "transport": self._transport,
                "protocol": self,
            })

