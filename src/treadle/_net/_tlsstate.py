"""One TLS connection as a pure state machine.

Owns: the ``ssl.SSLObject`` of one connection, its two ``ssl.MemoryBIO``s
(bytes received from the peer, bytes to send to it), the application data
waiting to be encrypted, and the connection's state.
Never: touches a socket, a transport, an event loop, a clock or a callback.
Every input is a method call and every output a return value, an exception
or an attribute, so the whole of TLS can be driven and tested in memory
(two of these wired back to back), the way h11 does HTTP.
``treadle._net.tls.TLSProtocol`` puts it on a transport and adds asyncio's
semantics: timeouts, flow control, the application protocol's callbacks.

States and the rules that move between them::

    UNWRAPPED --start_handshake()--> HANDSHAKING --(done)--> WRAPPED
    WRAPPED --start_shutdown()--> FLUSHING --(queue empty)--> SHUTDOWN
    SHUTDOWN --(peer's close_notify, or EOF)--> CLOSED
    any state --abort(), an error, or EOF while handshaking--> CLOSED

1. UNWRAPPED: nothing sent yet.  Application data given to ``send()`` and
   bytes given to ``receive()`` wait (a server may get the ClientHello before
   it starts).
2. HANDSHAKING: ``do_handshake()`` after each ``receive()``.  It returns a
   ``HandshakeComplete`` when done, and then everything queued by ``send()``
   is encrypted at once.  An EOF from the peer fails the handshake with
   ``ConnectionResetError``; an ``ssl.SSLError`` (bad certificate, wrong
   host name, alert from the peer) fails it with that error.
3. WRAPPED: ``send()`` encrypts, ``read_into()``/``read()`` decrypt.  A
   close_notify from the peer sets ``close_notify_received`` and ends the
   data it sends; we may still send (TLS half-close).  An EOF from the
   peer (``receive_eof()``) lets the records already received be read; a
   stream cut inside a record, or without close_notify, sets ``truncated``.
4. FLUSHING: ``start_shutdown()`` was called.  ``send()`` is refused; what
   is still queued is encrypted as soon as the peer lets us (a write can
   only stall while the peer renegotiates), then our close_notify is
   queued and the state moves on by itself.  Received data can be read.
5. SHUTDOWN: our close_notify is queued.  ``do_shutdown()`` after each
   ``receive()`` discards the peer's data until its close_notify (the peer
   may legitimately send data it wrote before it saw ours: dropping it is
   correct, failing on it is what gives asyncio its spurious
   ``APPLICATION_DATA_AFTER_CLOSE_NOTIFY``); ``read_into()`` may be used
   instead to keep that data.  The peer's close_notify or an EOF ends it.
   When the peer closed first (close_notify received or EOF) the shutdown
   ends at once; after an EOF no close_notify is sent at all, as asyncio.
6. CLOSED: final.  Received bytes are ignored; ``error`` holds the
   exception that closed it, if any.

Inputs: ``receive(bytes)``, ``receive_eof()`` (the peer closed the
stream), ``start_handshake()``/``do_handshake()``, ``send(data)``,
``start_shutdown()``/``do_shutdown()``, ``abort()``.
Outputs: ``data_to_send()`` (bytes for the peer), ``read()``/``read_into()``
(application data), the ``HandshakeComplete`` event (version, cipher,
peer certificate, ALPN) returned by the call that finished the handshake,
True from the call that finished a shutdown, the flags
``close_notify_received``/``close_notify_sent``/``eof_received``/
``truncated``, and exceptions.

After every input, whatever the state, ``data_to_send()`` may hold bytes
for the peer (handshake messages, alerts, session tickets, records): the
owner sends them.  ``ssl.SSLWantReadError`` never escapes: it means "more
bytes from the peer are needed".  ``SSLWantWriteError`` and OpenSSL's
spurious ``SSLSyscallError`` are treated the same way (a memory BIO never
fills up; the retry happens on the next input).  Any other exception moves
the connection to CLOSED, is stored in ``error`` and is raised unchanged
(a read that decrypted data before meeting it returns that data, and the
next read, or ``raise_error()``, raises it).  Calling an input in a state
that forbids it raises ``TLSStateError``.
"""

from __future__ import annotations

import ssl
from collections import deque
from typing import Any, Final, Union

from .._kernel._compat import mypyc_attr

# States, as small ints: they are compared on every received chunk.
UNWRAPPED: Final = 0
HANDSHAKING: Final = 1
WRAPPED: Final = 2
FLUSHING: Final = 3
SHUTDOWN: Final = 4
CLOSED: Final = 5

STATE_NAMES: Final = ("UNWRAPPED", "HANDSHAKING", "WRAPPED", "FLUSHING", "SHUTDOWN", "CLOSED")

#: The most plaintext one TLS record carries; ``read()`` asks for one record
#: at a time, which keeps each allocation small.
RECORD_SIZE: Final = 16384

# "Call again once more bytes have arrived."  SSLSyscallError is here
# because OpenSSL reports an empty memory BIO that way in some versions
# (asyncio and uvloop treat it the same).
_AGAIN: Final = (ssl.SSLWantReadError, ssl.SSLWantWriteError, ssl.SSLSyscallError)
_WantRead: Final = ssl.SSLWantReadError
_ZeroReturn: Final = ssl.SSLZeroReturnError
_SyscallError: Final = ssl.SSLSyscallError

Buffer = Union[bytes, bytearray, memoryview]


@mypyc_attr(native_class=False)
class TLSStateError(Exception):
    """An input was given in a state that does not accept it (a bug in the
    caller, never a peer's doing).  A plain Python class in both builds:
    mypyc's native exception classes take weak references on 3.11 only,
    a Python one on every version."""


class HandshakeComplete:
    """Returned by the call that completed the handshake."""

    __slots__ = ("version", "cipher", "peercert", "compression", "alpn_protocol")

    version: str | None
    cipher: tuple[str, str, int] | None
    #: The decoded dict: {} when the certificate was not verified, None
    #: when the peer sent none (what get_extra_info('peercert') returns).
    peercert: Any
    compression: str | None
    alpn_protocol: str | None

    def __init__(self, sslobj: ssl.SSLObject) -> None:
        self.version = sslobj.version()
        self.cipher = sslobj.cipher()
        self.peercert = sslobj.getpeercert()
        self.compression = sslobj.compression()
        self.alpn_protocol = sslobj.selected_alpn_protocol()

    def __repr__(self) -> str:
        return (f"<HandshakeComplete {self.version} {self.cipher[0] if self.cipher else None}"
                f" alpn={self.alpn_protocol!r}>")


class TLSConnection:
    """The TLS state of one connection; see the module docstring for rules."""

    __slots__ = ("state", "server_side", "ssl_object", "_sslobj", "_incoming", "_outgoing",
                 "_backlog", "_backlog_size", "close_notify_received",
                 "close_notify_sent", "eof_received", "truncated", "error")

    state: int
    server_side: bool
    ssl_object: ssl.SSLObject
    _sslobj: Any
    _incoming: ssl.MemoryBIO
    _outgoing: ssl.MemoryBIO
    _backlog: deque[Buffer]
    _backlog_size: int
    close_notify_received: bool
    close_notify_sent: bool
    eof_received: bool
    truncated: bool
    error: BaseException | None

    # server_side and server_hostname come from the loop's callers as they
    # were given (Any: compiled, a typed parameter would refuse a wrong one
    # with the compiler's message); wrap_bio checks them as asyncio's does.
    def __init__(self, context: ssl.SSLContext, *, server_side: Any = False,
                 server_hostname: Any = None) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        # wrap_bio raises ValueError for a client context that checks host
        # names when none is given: let it reach the caller unchanged.
        self.ssl_object = context.wrap_bio(
            self._incoming, self._outgoing, server_side=server_side,
            server_hostname=server_hostname or None)
        # The C object behind ssl.SSLObject (same read/write/pending), called
        # directly on the data path to skip a Python-level wrapper per call.
        self._sslobj = getattr(self.ssl_object, "_sslobj", self.ssl_object)
        self.server_side = bool(server_side)
        self.state = UNWRAPPED
        self._backlog = deque()
        self._backlog_size = 0
        self.close_notify_received = False
        self.close_notify_sent = False
        self.eof_received = False
        self.truncated = False
        self.error = None

    def __repr__(self) -> str:
        side = "server" if self.server_side else "client"
        return (f"<TLSConnection {side} {STATE_NAMES[self.state]}"
                f" queued={self._backlog_size} to_send={self._outgoing.pending}>")

    # -- outputs -------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """All bytes waiting to go to the peer (b'' if none)."""
        return self._outgoing.read()

    @property
    def bytes_to_send(self) -> int:
        """How many bytes ``data_to_send()`` would return."""
        return self._outgoing.pending

    @property
    def bytes_received(self) -> int:
        """Bytes received from the peer and not processed yet."""
        return self._incoming.pending

    @property
    def queued(self) -> int:
        """Bytes of application data given to ``send()`` and not encrypted yet."""
        return self._backlog_size

    # -- inputs: bytes from the peer ----------------------------------------

    def receive(self, data: Buffer) -> None:
        """Bytes received from the peer.  Processed by the next
        ``do_handshake()``, ``read*()`` or ``do_shutdown()``."""
        if self.state == CLOSED:
            return
        if self.eof_received:
            raise TLSStateError("bytes received after the peer's EOF")
        self._incoming.write(data)

    def receive_eof(self) -> None:
        """The peer closed its end of the stream (no more bytes will come).

        Fails a handshake in progress with ``ConnectionResetError``; ends a
        shutdown in progress (state CLOSED).  In WRAPPED and FLUSHING the
        complete records already received can still be read."""
        if self.eof_received or self.state == CLOSED:
            return
        self.eof_received = True
        # Not MemoryBIO.write_eof(): OpenSSL would answer the EOF with an
        # alert record, which asyncio never sends.  The end of the data is
        # found instead when a read wants more than there is.
        state = self.state
        if state == UNWRAPPED or state == HANDSHAKING:
            self._fail(ConnectionResetError(
                "Connection lost during the TLS handshake"))
        elif state == SHUTDOWN:
            if not self.close_notify_received:
                self.truncated = True
            self.state = CLOSED
        elif state == FLUSHING:
            self._advance_shutdown()

    # -- inputs: handshake ---------------------------------------------------

    def start_handshake(self) -> HandshakeComplete | None:
        """UNWRAPPED -> HANDSHAKING; produces the first flight (client) or
        processes bytes already received (server)."""
        if self.state != UNWRAPPED:
            raise TLSStateError(
                f"cannot start a handshake in state {STATE_NAMES[self.state]}")
        if self.eof_received:
            self._fail(ConnectionResetError(
                "Connection lost during the TLS handshake"))
        self.state = HANDSHAKING
        return self.do_handshake()

    def do_handshake(self) -> HandshakeComplete | None:
        """Advance the handshake with the bytes received so far.

        Returns ``HandshakeComplete`` once done (state WRAPPED), else None;
        raises the error that failed it (state CLOSED)."""
        if self.state != HANDSHAKING:
            raise TLSStateError(
                f"no handshake in progress (state {STATE_NAMES[self.state]})")
        try:
            self.ssl_object.do_handshake()
        except _AGAIN:
            return None
        except BaseException as exc:
            self._fail_quietly(exc)
            raise
        self.state = WRAPPED
        event = HandshakeComplete(self.ssl_object)
        if self._backlog:
            self._encrypt_backlog()
        return event

    # -- inputs: application data --------------------------------------------

    def send(self, data: Buffer) -> None:
        """Application data for the peer.

        Encrypted at once in WRAPPED (``data_to_send()`` then holds it);
        queued before the handshake completes and while a renegotiation
        stalls writing."""
        if type(data) is memoryview and not data.c_contiguous:
            data = data.tobytes()        # SSL_write takes one flat buffer
        state = self.state
        if state == WRAPPED:
            if self._backlog:
                self._queue(data)
                self._encrypt_backlog()
                return
            try:
                self._sslobj.write(data)
            except _AGAIN:
                # OpenSSL wants the very same bytes again on retry: queue
                # them whole (a copy, so a mutable buffer may be reused).
                self._queue(data)
            except BaseException as exc:
                self._fail_quietly(exc)
                raise
        elif state == HANDSHAKING or state == UNWRAPPED:
            self._queue(data)
        else:
            raise TLSStateError(
                f"cannot send application data in state {STATE_NAMES[state]}")

    def queue(self, data: Buffer) -> None:
        """Queue application data without trying to encrypt it now (it goes
        out with the next ``send()`` or shutdown)."""
        if self.state >= FLUSHING:
            raise TLSStateError(
                f"cannot send application data in state {STATE_NAMES[self.state]}")
        self._queue(data)

    def _queue(self, data: Buffer) -> None:
        if type(data) is not bytes:
            data = bytes(data)
        self._backlog.append(data)
        self._backlog_size += len(data)

    def _encrypt_backlog(self) -> bool:
        """Encrypt queued application data, oldest first; True once empty."""
        backlog = self._backlog
        write = self._sslobj.write
        try:
            while backlog:
                data = backlog[0]
                # Without SSL_MODE_ENABLE_PARTIAL_WRITE (CPython never sets
                # it) a write takes all of its bytes or raises.
                write(data)
                backlog.popleft()
                self._backlog_size -= len(data)
        except _AGAIN:
            return False
        except BaseException as exc:
            self._fail_quietly(exc)
            raise
        return True

    def read_into(self, buffer: Any) -> int:
        """Decrypt into *buffer* (bytearray or writable memoryview) as much
        as has arrived, up to its length.

        Returns the number of bytes written; 0 when nothing more can be read
        now.  After a 0, ``close_notify_received`` or ``eof_received`` says
        whether more may ever come."""
        state = self.state
        if state < WRAPPED or state == CLOSED:
            if state == CLOSED:
                return 0
            raise TLSStateError(
                f"cannot read application data in state {STATE_NAMES[state]}")
        if self.close_notify_received:
            return 0
        if self.error is not None:
            self.raise_error()
        if self._backlog:
            # A renegotiation that stalled a write may have moved on.
            self._encrypt_backlog()
        size = len(buffer)
        if size <= 0:
            return 0
        sslobj = self._sslobj
        incoming = self._incoming
        if not incoming.pending and not sslobj.pending():
            # Nothing to decrypt: skip the read that would raise WantRead.
            if self.eof_received:
                self._at_end()
            return 0
        read = sslobj.read
        n: int
        try:
            n = read(size, buffer)
            if n == 0:
                self._got_close_notify()
                return 0
            if n == size or (not incoming.pending and not sslobj.pending()):
                return n
            view = memoryview(buffer)
            try:
                while n < size:
                    got = read(size - n, view[n:])
                    if got == 0:
                        self._got_close_notify()
                        break
                    n += got
                    if not incoming.pending and not sslobj.pending():
                        break
            except _WantRead:
                if self.eof_received:
                    self._at_end()
            except Exception as exc:
                # Deliver what was decrypted first; the error is raised by
                # the next read.
                if not self._benign_read_error(exc):
                    self.error = exc
            finally:
                view.release()
            return n
        except _WantRead:
            if self.eof_received:
                self._at_end()
            return 0
        except Exception as exc:
            if self._benign_read_error(exc):
                return 0
            self._fail_quietly(exc)
            raise

    def read(self, max_bytes: int = 256 * 1024) -> bytes:
        """Decrypt up to *max_bytes* of what has arrived, as bytes.

        Returns b'' when nothing more can be read now (see ``read_into``)."""
        state = self.state
        if state < WRAPPED or state == CLOSED:
            if state == CLOSED:
                return b""
            raise TLSStateError(
                f"cannot read application data in state {STATE_NAMES[state]}")
        if self.close_notify_received:
            return b""
        if self.error is not None:
            self.raise_error()
        if self._backlog:
            self._encrypt_backlog()
        sslobj = self._sslobj
        incoming = self._incoming
        read = sslobj.read
        first = b""
        chunks: list[bytes] | None = None
        total = 0
        try:
            while total < max_bytes:
                if not incoming.pending and not sslobj.pending():
                    # Nothing left to decrypt: skip the read that would
                    # raise WantRead (the common way out of this loop).
                    if self.eof_received:
                        self._at_end()
                    break
                chunk = read(min(RECORD_SIZE, max_bytes - total))
                if not chunk:
                    self._got_close_notify()
                    break
                total += len(chunk)
                if not first:
                    first = chunk
                elif chunks is None:
                    chunks = [first, chunk]
                else:
                    chunks.append(chunk)
        except _WantRead:
            if self.eof_received:
                self._at_end()
        except Exception as exc:
            if not self._benign_read_error(exc):
                if not total:
                    self._fail_quietly(exc)
                    raise
                self.error = exc
        if chunks is not None:
            return b"".join(chunks)
        return first

    def raise_error(self) -> None:
        """Raise the error a read met after it had decrypted some data (that
        read returned the data; ``error`` holds the exception).  Reads raise
        it too; this lets the owner surface it without another read."""
        exc = self.error
        if exc is not None:
            self._fail(exc)

    def _got_close_notify(self) -> None:
        self.close_notify_received = True
        if self.state == SHUTDOWN:
            self._finish_shutdown()

    def _at_end(self) -> None:
        # The peer closed the stream and every complete record is read: any
        # bytes left are a cut record; no close_notify means truncation.
        if not self.close_notify_received:
            self.truncated = True

    def _benign_read_error(self, exc: BaseException) -> bool:
        """Whether a read error only means "no more data": close_notify seen
        after our own (SSLZeroReturnError), or OpenSSL's spurious
        SSLSyscallError for an empty memory BIO."""
        if isinstance(exc, _ZeroReturn):
            self._got_close_notify()
            return True
        if isinstance(exc, _SyscallError):
            if self.eof_received:
                self._at_end()
            return True
        return False

    # -- inputs: shutdown ----------------------------------------------------

    def start_shutdown(self) -> bool:
        """Begin closing: WRAPPED -> FLUSHING -> SHUTDOWN (our close_notify
        queued after everything queued before it).

        Returns True when the shutdown is already complete (state CLOSED):
        the peer had closed first, or the handshake was not done (then it is
        an abort and nothing is sent)."""
        state = self.state
        if state == WRAPPED:
            self.state = FLUSHING
            return self._advance_shutdown()
        if state == UNWRAPPED or state == HANDSHAKING:
            self.abort()
            return True
        return state == CLOSED

    def do_shutdown(self) -> bool:
        """Advance a shutdown with the bytes received so far; True once
        complete (state CLOSED).  Application data the peer sends meanwhile
        is discarded."""
        state = self.state
        if state == FLUSHING:
            return self._advance_shutdown()
        if state == SHUTDOWN:
            read = self.ssl_object.read
            try:
                while not self.close_notify_received:
                    if not read(RECORD_SIZE):
                        self._got_close_notify()
            except _WantRead:
                return False
            except BaseException as exc:
                if not self._benign_read_error(exc):
                    self._fail_quietly(exc)
                    raise
                if self.state == CLOSED:
                    return True
                if not self.close_notify_received:
                    return False
            return self.state == CLOSED or self._finish_shutdown()
        if state == CLOSED:
            return True
        raise TLSStateError(
            f"no shutdown in progress (state {STATE_NAMES[state]})")

    def _advance_shutdown(self) -> bool:
        # FLUSHING: first what the application queued, then close_notify.
        if self._backlog and not self._encrypt_backlog():
            if not self.eof_received:
                return False
            # Stalled by a renegotiation that can no longer finish.
            self._backlog.clear()
            self._backlog_size = 0
        if self.eof_received:
            # The peer is gone: asyncio sends no close_notify then.
            if not self.close_notify_received:
                self.truncated = True
            self.state = CLOSED
            return True
        self.state = SHUTDOWN
        try:
            self.ssl_object.unwrap()
        except _AGAIN:
            # close_notify is queued; the peer's has not arrived yet.
            self.close_notify_sent = True
            return False
        except BaseException as exc:
            self._fail_quietly(exc)
            raise
        self.close_notify_sent = True
        self.state = CLOSED
        return True

    def _finish_shutdown(self) -> bool:
        # SHUTDOWN and the peer's close_notify is in: let OpenSSL record it.
        try:
            self.ssl_object.unwrap()
        except _AGAIN:
            pass
        except ssl.SSLError:
            pass    # both close_notifys are through; nothing left to check
        self.state = CLOSED
        return True

    def abort(self) -> None:
        """Drop the connection: state CLOSED, queued data discarded."""
        self.state = CLOSED
        self._backlog.clear()
        self._backlog_size = 0

    def _fail(self, exc: BaseException) -> None:
        self._fail_quietly(exc)
        raise exc

    def _fail_quietly(self, exc: BaseException) -> None:
        self.state = CLOSED
        self.error = exc
        self._backlog.clear()
        self._backlog_size = 0
