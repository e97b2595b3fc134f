"""The socket transports' core (compiled): everything a TCP, Unix or UDP
transport does, as native classes the ``asyncio.Transport`` objects users
hold delegate to (as ``Task`` delegates to ``TaskCore``).

Owns: ``TransportCore`` (what every socket transport shares: the socket,
the protocol, reading on and off, write-buffer limits and pausing the
protocol, close, abort, fatal errors, the connection_made /
connection_lost sequence), ``StreamCore`` (reading into the protocol,
writing with the write rule of ``_writeflow``, half-close, sendfile's
empty-buffer waiter) and ``DatagramCore`` (``sendto``, ``error_received``).
Never: is seen by users or protocols.  Protocol callbacks, exception
contexts, the server's client set and the loop's fd registry get the
transport (``_transport``), never the core; the core is reached only
through its transport's methods.

Why a core: the transports must be instances of asyncio's transport
classes, which are Python classes, and a compiled (native) class cannot
inherit from one.  So each transport (``stream.py``, ``datagram.py``) is a
thin interpreted subclass of asyncio's class that forwards to its core, and
the loop calls the core directly: the reader registered for the socket is
the core's ``_read_ready``, and a transport's ``write`` (``sendto``) is
the core's method itself (``base.TransportBase._bind_to_core``).  One
message then costs the interpreter only the protocol's own code.

Syscalls.  On a plain ``socket.socket`` the core calls ``os.read``,
``os.write`` and ``os.writev`` on its fd: the same syscalls as ``recv``,
``send`` and ``sendmsg`` without flags, minus the socket methods' argument
parsing (measured with callgrind, a read and a write each cost a few
hundred instructions less).  A socket subclass gets its own ``recv``,
``send`` and ``sendmsg`` called, as asyncio calls them.

Reading.  The reader stays registered while the transport reads (the
kernel's registrations are level-triggered and persistent), so reading
costs one read per readiness event and no re-registration; pausing
removes the reader, resuming adds it back.  A read asks for at most
``SMALL_READ`` (64 KiB) straight into a new bytes object: below glibc's
mmap threshold, so the allocation never costs a syscall (``recv(256
KiB)``, asyncio's, maps and unmaps 256 KiB per call in a fresh process),
and nothing is copied.  When reads keep filling that (a bulk transfer),
the transport switches to reading up to ``max_size`` (256 KiB) into the
loop's shared buffer and copying out what arrived: one syscall and one
data_received() per 256 KiB instead of four.  A guess that turns out
wrong (the big read brought no more than a small one would have) makes
the next switch wait twice as long.  A ``BufferedProtocol`` gets
``recv_into`` its own buffer.

Writing follows ``_writeflow``'s rule.  ``writelines()`` joins nothing:
its chunks go out in one ``sendmsg`` (at most ``IOV_MAX`` buffers per
call).  Buffered data that the caller could still change (a
``bytearray``, a writable ``memoryview``) is copied once, when it is
buffered; data sent at once is never copied.
"""

from __future__ import annotations

import asyncio
import contextvars
import os
import socket
import sys
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Final, Sequence

from .._kernel import _compat
from .._kernel.handles import report_as_handle
from .._writeflow import (WRITELINES_OWN, WriteBuffer, WriteRule, byte_view, frozen,
                          lost_write, refuse_writes, tell_protocol, water_marks,
                          writelines_items)

if TYPE_CHECKING:
    from .base import NetLoop

_BufferedProtocol: Final = asyncio.BufferedProtocol
_SHUT_WR: Final = socket.SHUT_WR
_HAS_SENDMSG: Final = hasattr(socket.socket, "sendmsg")
_SOCKET: Final = socket.socket
#: The socket methods whose work a plain socket's transport does with
#: os.read()/os.write() on its fd instead (see ``_is_plain``).
_SOCKET_IO: Final = ("recv", "recv_into", "send", "sendmsg")
_SOCKET_IO_ORIGINAL: Final = tuple(getattr(socket.socket, name, None) for name in _SOCKET_IO)
_os_read: Final = os.read
_os_write: Final = os.write
_os_writev: Final[Callable[[int, Sequence[Any]], int] | None] = getattr(os, "writev", None)


# Rule: what a socket call returns is ignored where asyncio ignores it, and
# the call goes through Any so that the compiled build does not check it
# either (mypyc checks a typeshed-typed result even when it is dropped; a
# library's socket wrapper or a mock may return anything).  Here for close()
# and shutdown(); the datagram transport's send()/sendto() read the socket
# as Any for the same reason.

def _close(sock: Any) -> None:
    sock.close()


def _shutdown_write(sock: Any) -> None:
    sock.shutdown(_SHUT_WR)


def _is_plain(sock: Any) -> bool:
    """Whether the transport may read and write *sock*'s fd itself (one
    layer fewer per call) rather than call its ``recv()``/``send()``, which
    asyncio calls: only for a ``socket.socket`` itself whose methods are
    the socket module's own.  A subclass may override them, and tests
    replace them on the class (network guards, fault injection): their
    versions must run, as on asyncio.  Decided when the transport is made.
    """
    if type(sock) is not _SOCKET:
        return False
    for name, original in zip(_SOCKET_IO, _SOCKET_IO_ORIGINAL):
        if getattr(_SOCKET, name, None) is not original:
            return False
    return True

#: Bytes asked for per read at most (asyncio's max_size).
READ_SIZE: Final = 256 * 1024

#: Bytes asked for per read until reads keep filling it (module docstring).
SMALL_READ: Final = 64 * 1024
#: Full small reads in a row before switching to big ones: the first guess,
#: and the most it backs off to after wrong guesses.
BULK_AFTER_FIRST: Final = 2
BULK_AFTER_MOST: Final = 64

# asyncio's message for write(<not bytes>), which 3.14 reworded.
_NOT_BYTES: Final = (
    "data argument must be a bytes, bytearray, or memoryview object, not {!r}"
    if sys.version_info >= (3, 14) else
    "data argument must be a bytes-like object, not {!r}")

#: Bytes counted per queued datagram on top of its payload (3.13's rule,
#: so that empty datagrams count).
_DGRAM_HEADER: Final = 8 if sys.version_info >= (3, 13) else 0
_PY313: Final = sys.version_info >= (3, 13)
_PY315: Final = sys.version_info >= (3, 15)
_copy_context: Final = contextvars.copy_context


def _logger() -> Any:
    return _compat.asyncio_logger()


class TransportCore(WriteRule):
    """What every socket transport shares.  ``_transport`` is the
    ``asyncio`` transport object the program holds."""

    __slots__ = ("_transport", "_loop", "_sock", "_sock_fd", "_protocol",
                 "_protocol_connected", "_buffer", "_conn_lost", "_closing",
                 "_paused", "_reading", "_writing", "_recv_view", "_raw",
                 "_server", "_empty_waiter", "_context")

    _transport: Any
    _loop: NetLoop
    _sock: socket.socket | None
    _sock_fd: int
    _protocol: Any
    _protocol_connected: bool
    _buffer: WriteBuffer
    _conn_lost: int
    _closing: bool
    _paused: bool
    _reading: bool
    _writing: bool
    _recv_view: memoryview | None
    #: A plain socket.socket: the core calls os.read/os.write on its fd.
    _raw: bool
    _server: Any
    _empty_waiter: asyncio.Future[Any] | None
    #: The context every callback of the transport runs in (3.15: the
    #: connection's, see StreamCore); None, a copy of the registering
    #: caller's, as on earlier Pythons.
    _context: contextvars.Context | None

    def __init__(self, transport: Any, loop: NetLoop, sock: socket.socket,
                 protocol: Any) -> None:
        super().__init__(loop)
        self._transport = transport
        self._loop = loop
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._protocol = protocol
        self._protocol_connected = True
        self._buffer = WriteBuffer()
        self._conn_lost = 0
        self._closing = False
        self._paused = False
        self._reading = False
        self._writing = False
        self._server = None
        self._empty_waiter = None
        self._context = None
        self._raw = _is_plain(sock)
        self._recv_view = loop._recv_view if self._raw else None

    # ------------------------------------------------------------------
    # protocol and state
    # ------------------------------------------------------------------

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._protocol_connected = True

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        if self._reading:
            self._reading = False
            self._loop._remove_reader(self._sock_fd)
        if self._loop._debug:
            _logger().debug("%r pauses reading", self._transport)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if not self._reading:
            self._reading = True
            self._loop._add_reader(self._sock_fd, self._read_ready, context=self._context)
        if self._loop._debug:
            _logger().debug("%r resumes reading", self._transport)

    def _read_ready(self) -> None:
        raise NotImplementedError  # each transport reads its own way

    def _start(self, waiter: asyncio.Future[Any] | None) -> None:
        """connection_made, then start reading, then wake the creator: one
        callback instead of asyncio's three, in asyncio's order."""
        protocol = self._protocol
        self._callback_depth += 1
        try:
            protocol.connection_made(self._transport)
        except (SystemExit, KeyboardInterrupt):
            self._callback_depth -= 1
            raise
        except BaseException as exc:
            report_as_handle(protocol.connection_made, (self._transport,), self._loop, exc)
        self._callback_depth -= 1
        if self._buffer.size:
            self._flush_held()
        if not self._closing and not self._paused and not self._reading:
            try:
                self._loop._add_reader(self._sock_fd, self._read_ready, context=self._context)
                self._reading = True
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                # asyncio registers the reader in a callback of its own, so
                # a failure (epoll refuses a regular file's fd) is reported
                # and the creator still gets its transport; a failure here
                # must not leave the creator waiting forever.
                report_as_handle(
                    self._loop._add_reader, (self._sock_fd, self._read_ready), self._loop, exc)
        if waiter is not None and not waiter.cancelled():
            waiter.set_result(None)

    # ------------------------------------------------------------------
    # flow control
    # ------------------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return self._buffer.size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._buffer.limits()

    def set_write_buffer_limits(self, high: int | None = None,
                                low: int | None = None) -> None:
        self._buffer.high, self._buffer.low = water_marks(high, low)
        self._maybe_pause_protocol()

    def protocol_paused(self) -> bool:
        return self._buffer.paused

    def _maybe_pause_protocol(self) -> None:
        if self._buffer.pause_due():
            tell_protocol(self._loop, self._transport, self._protocol, "pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._buffer.resume_due():
            tell_protocol(self._loop, self._transport, self._protocol, "resume_writing")

    def _flush_held(self) -> None:
        """Send what the write rule held back (stream transports)."""

    # ------------------------------------------------------------------
    # closing
    # ------------------------------------------------------------------

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        if self._reading:
            self._reading = False
            self._loop._remove_reader(self._sock_fd)
        if not self._buffer.size:
            self._conn_lost += 1
            if self._writing:
                self._writing = False
                self._loop._remove_writer(self._sock_fd)
            self._loop.call_soon(self._call_connection_lost, None, context=self._context)

    def abort(self) -> None:
        self._force_close(None)

    def _drop_write(self) -> None:
        """A write after the connection was lost: dropped, and logged once
        there have been a few (asyncio's rule, ``lost_write``)."""
        self._conn_lost = lost_write(self._conn_lost, "socket.send() raised exception.")

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            if self._loop._debug:
                _logger().debug("%r: %s", self._transport, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                "message": message,
                "exception": exc,
                "transport": self._transport,
                "protocol": self._protocol,
            })
        self._force_close(exc)

    def _send_held_once(self) -> None:
        """Before an abort: hand what the write rule held back to the
        kernel (stream transports)."""

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        loop = self._loop
        buffer = self._buffer
        if buffer.size:
            if not self._writing:
                # Held back by the write rule: on asyncio's loop these
                # bytes would already be in the kernel (abort() after a
                # final write still delivers them), so hand them over.
                self._send_held_once()
            buffer.clear()
        if self._writing:
            self._writing = False
            loop._remove_writer(self._sock_fd)
        self._closing = True
        if self._reading:
            self._reading = False
            loop._remove_reader(self._sock_fd)
        self._conn_lost += 1
        loop.call_soon(self._call_connection_lost, exc, context=self._context)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            sock = self._sock
            if sock is not None:
                _close(sock)
            self._sock = None
            self._protocol = None
            # As asyncio's transports: a closed one lets go of its loop.
            self._loop = None  # type: ignore[assignment]
            server = self._server
            if server is not None:
                self._server = None
                server._detach(self._transport)
            waiter = self._empty_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("Connection is closed by peer"))
            # The transport keeps its core; the core lets go of the
            # transport, so a closed one is freed without the cycle collector.
            self._transport = None

    def release_unclosed(self) -> None:
        """The transport is being destroyed unclosed: close the socket (the
        caller has warned)."""
        sock = self._sock
        if sock is None:
            return
        _close(sock)
        self._sock = None
        server = self._server
        if server is not None:
            self._server = None
            server._detach(self._transport)

    def describe(self) -> list[str]:
        """The state words of the transport's repr."""
        info: list[str] = []
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            info.append("read=polling" if self._reading else "read=idle")
            state = "polling" if self._writing else "idle"
            info.append(f"write=<{state}, bufsize={self._buffer.size}>")
        return info


class StreamCore(TransportCore):
    """A connected stream socket (TCP or Unix)."""

    __slots__ = ("_buffered", "_eof", "_max_size", "_small_read", "_bulk",
                 "_full_reads", "_bulk_after")

    _buffered: bool
    _eof: bool
    _max_size: int
    #: Bytes per small read (SMALL_READ, or max_size if that is smaller).
    _small_read: int
    #: Reading big (see the module docstring), full small reads in a row,
    #: and how many it takes to switch.
    _bulk: bool
    _full_reads: int
    _bulk_after: int

    def __init__(self, transport: Any, loop: NetLoop, sock: socket.socket,
                 protocol: Any, max_size: int) -> None:
        super().__init__(transport, loop, sock, protocol)
        if _PY315:
            # 3.15: a stream transport's callbacks all run in one context,
            # the connection's (for an accepted one, a copy of the
            # server's), whoever registers them: resume_reading() from a
            # task must not hand the task's context to data_received().
            self._context = _copy_context()
        self._buffered = isinstance(protocol, _BufferedProtocol)
        self._eof = False
        self._max_size = max_size
        self._small_read = SMALL_READ if max_size > SMALL_READ else max_size
        self._bulk = False
        self._full_reads = 0
        self._bulk_after = BULK_AFTER_FIRST

    def set_protocol(self, protocol: Any) -> None:
        self._buffered = isinstance(protocol, _BufferedProtocol)
        self._protocol = protocol
        self._protocol_connected = True

    # ------------------------------------------------------------------
    # reading
    # ------------------------------------------------------------------

    def _read_ready(self) -> None:
        if self._buffered:
            self._read_ready_buffered()
            return
        if self._conn_lost:
            return
        sock = self._sock
        assert sock is not None
        try:
            if not self._raw:
                data = sock.recv(self._max_size)
            elif not self._bulk:
                data = _os_read(self._sock_fd, self._small_read)
                if len(data) == self._small_read:
                    self._full_reads += 1
                    if self._full_reads >= self._bulk_after:
                        self._bulk = True
                else:
                    self._full_reads = 0
            else:
                data = self._read_big()
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not data:
            self._on_eof()
            return
        self._callback_depth += 1
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            self._callback_interrupted()
            raise
        except BaseException as exc:
            self._callback_failed(
                exc, "Fatal error: protocol.data_received() call failed.")
            return
        self._callback_depth -= 1
        buffer = self._buffer
        if buffer.size:
            chunks = buffer.chunks
            if len(chunks) == 1 and not self._writing and not self._conn_lost:
                # The common reply: one chunk, usually taken whole.
                chunk = chunks[0]
                try:
                    n = _os_write(self._sock_fd, chunk) if self._raw else sock.send(chunk)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    # Reported as it is (a second attempt would report what
                    # the socket says the second time: EPIPE after a reset).
                    self._send_failed(exc)
                    return
                if n == buffer.size:        # (the one chunk's length)
                    buffer.clear()
                    if (self._closing or self._eof
                            or self._empty_waiter is not None):
                        self._buffer_drained(False)
                    return
                if n > 0:
                    buffer.advance(n)
            self._flush_held()

    def _read_big(self) -> bytes:
        """One read of up to max_size during a bulk transfer (see the
        module docstring), and whether to keep reading big."""
        view = self._recv_view
        assert view is not None
        n = self._sock.recv_into(view, self._max_size)  # type: ignore[union-attr]
        if n <= self._small_read:
            # A small read would have done: back to small reads, and wait
            # longer before the next switch.
            self._bulk = False
            self._full_reads = 0
            if self._bulk_after < BULK_AFTER_MOST:
                self._bulk_after *= 2
        else:
            self._bulk_after = BULK_AFTER_FIRST
        return view[:n].tobytes() if n else b""

    def _read_ready_buffered(self) -> None:
        if self._conn_lost:
            return
        try:
            buf = self._protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return
        sock = self._sock
        assert sock is not None
        try:
            nbytes = sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not nbytes:
            self._on_eof()
            return
        self._callback_depth += 1
        try:
            self._protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            self._callback_interrupted()
            raise
        except BaseException as exc:
            self._callback_failed(
                exc, "Fatal error: protocol.buffer_updated() call failed.")
            return
        self._callback_depth -= 1
        if self._buffer.size:
            self._flush_held()

    def _on_eof(self) -> None:
        if self._loop._debug:
            _logger().debug("%r received EOF", self._transport)
        self._callback_depth += 1
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            self._callback_interrupted()
            raise
        except BaseException as exc:
            self._callback_failed(
                exc, "Fatal error: protocol.eof_received() call failed.")
            return
        self._callback_depth -= 1
        if self._buffer.size:
            self._flush_held()
        if keep_open:
            # The protocol may still write, but there is nothing more to
            # read (asyncio leaves is_reading() true here, and so do we).
            if self._reading:
                self._reading = False
                self._loop._remove_reader(self._sock_fd)
        else:
            self.close()

    def _callback_failed(self, exc: BaseException, message: str) -> None:
        # What the callback wrote before failing would already be on the
        # wire on asyncio's loop: send it before tearing down.
        self._callback_depth -= 1
        if self._buffer.size:
            self._flush_held()
        self._fatal_error(exc, message)

    def _callback_interrupted(self) -> None:
        # SystemExit/KeyboardInterrupt unwinds the loop: keep what was
        # written reachable by the writer instead of stranding it.
        self._callback_depth -= 1
        if self._buffer.size and not self._writing and not self._conn_lost:
            self._writing = True
            self._loop._add_writer(self._sock_fd, self._write_ready, context=self._context)

    # ------------------------------------------------------------------
    # writing
    # ------------------------------------------------------------------

    def write(self, data: Any) -> None:
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(_NOT_BYTES.format(type(data).__name__))
            data = byte_view(data)
        if self._eof or self._empty_waiter is not None:
            self._refuse_writes("write")
        if not data:
            return
        if self._conn_lost:
            self._drop_write()
            return
        buffer = self._buffer
        # Queued behind earlier data, or held by the write rule (rule 1).
        # A reply written from data_received() (the usual write) gets here
        # with no call but push(): frozen() returns bytes as they are, and
        # the case where _after_push() has nothing to do is recognised
        # below.  Interpreted, each call saved is a few hundred
        # instructions.
        if buffer.size or self._callback_depth:
            buffer.push(data if type(data) is bytes else frozen(data))
            if (self._callback_depth and not self._writing
                    and buffer.size <= buffer.high):
                return      # rule 1: sent when the protocol callback returns
            self._after_push()
            return
        # Nothing pending: the write goes out now (rule 2).
        try:
            if self._raw:
                n = _os_write(self._sock_fd, data)
            else:
                sock = self._sock
                assert sock is not None
                n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on socket transport")
            return
        if n == len(data):
            return
        buffer.push(frozen(memoryview(data)[n:]))
        self._writing = True
        self._loop._add_writer(self._sock_fd, self._write_ready, context=self._context)
        self._maybe_pause_protocol()

    def _refuse_writes(self, method: str) -> None:
        refuse_writes(self._eof, self._empty_waiter is not None, method)

    def writelines(self, list_of_data: Any) -> None:
        # asyncio's checks, in its order: 3.12+ refuses, then ignores a lost
        # connection's writes before it looks at the items (as 3.14 does;
        # 3.12.1 and 3.13.0 buffered them and crashed on the closed loop);
        # 3.11 joins the items and calls write().
        if WRITELINES_OWN:
            self._refuse_writes("writelines")
            if not list_of_data:
                return
            if self._conn_lost:
                self._drop_write()
                return
            chunks = writelines_items(list_of_data)
        else:
            chunks = writelines_items(list_of_data)
            self._refuse_writes("write")
        if not chunks:
            return
        if self._conn_lost:
            self._drop_write()
            return
        buffer = self._buffer
        if not buffer.size and not self._callback_depth:
            # Nothing pending: one sendmsg now; copy only what the socket
            # leaves behind.
            for chunk in chunks:
                buffer.push(chunk)
            if not self._send_buffer():
                return
            if buffer.size:
                buffer.freeze()
                self._writing = True
                self._loop._add_writer(self._sock_fd, self._write_ready, context=self._context)
                self._maybe_pause_protocol()
            else:
                self._buffer_drained(False)
            return
        for chunk in chunks:
            buffer.push(frozen(chunk))
        self._after_push()

    def _after_push(self) -> None:
        """Data was queued behind other data or held back."""
        if self._writing:
            self._maybe_pause_protocol()
        elif not self._callback_depth or self._buffer.size > self._buffer.high:
            # Outside a protocol callback a write goes now; inside one,
            # held-back bytes never pause the protocol by themselves: give
            # the socket what it takes now, pause for the rest.
            self._flush_held()
        # (else: rule 1, flushed when the protocol callback returns)

    def _flush_held(self) -> None:
        """Send what the write rule held back (no writer is registered)."""
        if self._writing or self._conn_lost or not self._buffer.size:
            return
        if not self._send_buffer():
            return
        if self._buffer.size:
            self._writing = True
            self._loop._add_writer(self._sock_fd, self._write_ready, context=self._context)
            self._maybe_pause_protocol()
        else:
            self._buffer_drained(False)

    def _send_buffer(self) -> bool:
        """One send/sendmsg of the buffered chunks; False after a fatal
        error (the transport is then closing)."""
        buffer = self._buffer
        try:
            n = self._send_chunks()
        except (BlockingIOError, InterruptedError):
            return True
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._send_failed(exc)
            return False
        buffer.advance(n)
        return True

    def _send_failed(self, exc: BaseException) -> None:
        """A send of the buffer raised *exc*: the transport is lost."""
        if self._writing:
            self._writing = False
            self._loop._remove_writer(self._sock_fd)
        self._buffer.clear()
        self._fatal_error(exc, "Fatal write error on socket transport")
        waiter = self._empty_waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    def _send_chunks(self) -> int:
        """One write of as many buffered chunks as a syscall takes; the
        bytes the socket took."""
        chunks = self._buffer.chunks
        if self._raw:
            if len(chunks) == 1 or _os_writev is None:
                return _os_write(self._sock_fd, chunks[0])
            return _os_writev(self._sock_fd, self._buffer.head())
        sock = self._sock
        assert sock is not None
        if len(chunks) == 1 or not _HAS_SENDMSG:
            return sock.send(chunks[0])
        return sock.sendmsg(self._buffer.head())

    def _send_held_once(self) -> None:
        """One best-effort send of the buffer; errors are for whoever
        closes the transport to report, not this."""
        if self._sock is None:
            return
        try:
            self._send_chunks()
        except OSError:
            pass

    def _write_ready(self) -> None:
        """The writer: the socket can take more of the buffer."""
        if self._conn_lost:
            return
        if self._buffer.size:
            if not self._send_buffer():
                return
            self._maybe_resume_protocol()  # may write more
        if not self._buffer.size:
            self._buffer_drained(True)

    def _buffer_drained(self, from_writer: bool) -> None:
        if self._writing:
            self._writing = False
            self._loop._remove_writer(self._sock_fd)
        waiter = self._empty_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if self._closing:
            if from_writer:
                self._call_connection_lost(None)
            else:
                # close() ran while the bytes were held back; on asyncio
                # they had already gone and close() scheduled this.
                self._conn_lost += 1
                self._loop.call_soon(self._call_connection_lost, None, context=self._context)
        elif self._eof:
            sock = self._sock
            assert sock is not None
            _shutdown_write(sock)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer.size:
            sock = self._sock
            assert sock is not None
            _shutdown_write(sock)

    # ------------------------------------------------------------------
    # sendfile support (see sendfile.py)
    # ------------------------------------------------------------------

    def make_empty_waiter(self) -> asyncio.Future[Any]:
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._empty_waiter = waiter
        if not self._buffer.size:
            waiter.set_result(None)
        return waiter

    def reset_empty_waiter(self) -> None:
        self._empty_waiter = None


class DatagramCore(TransportCore):
    """A datagram socket: each ``sendto`` is one datagram and one syscall,
    sent at once when nothing is queued (an immutable copy of it, with its
    address, is queued otherwise); socket errors go to
    ``protocol.error_received`` and do not close the transport; flow
    control counts queued datagrams."""

    __slots__ = ("_address", "_connected", "_max_size", "_queue")

    _address: Any
    _connected: bool
    _max_size: int
    _queue: deque[tuple[bytes, Any]]

    def __init__(self, transport: Any, loop: NetLoop, sock: socket.socket,
                 protocol: Any, address: Any, connected: bool,
                 max_size: int) -> None:
        super().__init__(transport, loop, sock, protocol)
        self._address = address
        self._connected = connected
        self._max_size = max_size
        self._queue = deque()

    def _read_ready(self) -> None:
        if self._conn_lost:
            return
        sock = self._sock
        assert sock is not None
        view = self._recv_view
        try:
            if view is not None:
                n, addr = sock.recvfrom_into(view, self._max_size)
                data = view[:n].tobytes()
            else:
                data, addr = sock.recvfrom(self._max_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on datagram transport")
        else:
            self._protocol.datagram_received(data, addr)

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if not _PY313 and not len(data):
            return      # before 3.13 asyncio drops empty datagrams
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(
                    f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost and self._address:
            self._drop_write()
            return
        # Any: what send()/sendto() return is ignored (see _close; tests
        # replace sendto with wrappers that return None to drop datagrams).
        sock: Any = self._sock
        if sock is None:        # after connection_lost(); asyncio fails here too
            raise AttributeError("sendto() on a closed datagram transport")
        if not self._queue:
            try:
                if self._connected:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                self._writing = True
                self._loop._add_writer(self._sock_fd, self._sendto_ready, context=self._context)
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        # Queue an immutable copy: the caller may reuse its buffer.
        payload = bytes(data)
        self._queue.append((payload, addr))
        self._buffer.size += len(payload) + _DGRAM_HEADER
        self._maybe_pause_protocol()

    def _sendto_ready(self) -> None:
        queue = self._queue
        sock: Any = self._sock      # results ignored (see _close)
        assert sock is not None
        while queue:
            data, addr = queue.popleft()
            self._buffer.size -= len(data) + _DGRAM_HEADER
            try:
                if self._connected:
                    sock.send(data)
                else:
                    sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                queue.appendleft((data, addr))
                self._buffer.size += len(data) + _DGRAM_HEADER
                break
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        self._maybe_resume_protocol()
        if not queue:
            if self._writing:
                self._writing = False
                self._loop._remove_writer(self._sock_fd)
            if self._closing:
                self._call_connection_lost(None)

    def _force_close(self, exc: BaseException | None) -> None:
        if not self._conn_lost:
            self._queue.clear()
            self._buffer.size = 0
        super()._force_close(exc)
