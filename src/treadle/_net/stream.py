"""The stream transport: one connected TCP or Unix stream socket.

Owns: reading into the protocol (``data_received``, or ``get_buffer`` +
``recv_into`` + ``buffer_updated`` for an ``asyncio.BufferedProtocol``),
the write buffer and its flow control, half-close, close and abort, and
the connection_made / connection_lost sequence, all with asyncio's
semantics, messages and exception types.
Never: resolves names, accepts connections or knows TLS (a TLS protocol is
just a buffered protocol to it); never calls its protocol from inside a
loop method other than its own I/O callbacks.

Reading.  The reader stays registered while the transport reads (the
kernel's registrations are level-triggered and persistent), so reading
costs one ``recv`` per readiness event and no re-registration; pausing
removes the reader, resuming adds it back.

Writing: asyncio's "write sends at once", with one vectored syscall per
loop turn.  The rule, in order:

1. While the transport is calling its own protocol (``data_received``,
   ``buffer_updated``, ``eof_received``), ``write()`` only buffers.  As
   soon as that call returns, everything it wrote goes out in one
   ``sendmsg``.  A request handler that writes a header and a body sends
   one packet, not two.
2. Otherwise, when nothing is buffered and this transport has not sent
   anything yet in the current batch of callbacks, ``write()`` calls
   ``send`` at once (so a peer doing a blocking ``recv`` right after
   ``writer.write(b"x")`` in the same thread sees the byte, see uvloop
   issue #631).  Later writes in the same batch are buffered and sent
   together with one ``sendmsg`` at the end of the batch
   (``loop._call_at_batch_end``), before the loop can block.  With the
   loop not running there are no batches: every write is case 2's first.
3. Whatever the socket does not accept stays buffered, the writer is
   registered, and above the high-water mark the protocol is paused, as in
   asyncio.  Bytes held back by rules 1-2 never pause the protocol by
   themselves: when they cross the high-water mark they are sent at once,
   and only what the socket refuses counts.

``writelines()`` joins nothing: its chunks are queued as they are and go
out in one ``sendmsg`` (at most ``IOV_MAX`` buffers per call).  Buffered
data that the caller could still change (a ``bytearray``, a writable
``memoryview``) is copied once, when it is buffered; data sent at once is
never copied.

Hot paths (``_read_ready``, ``write``) allocate nothing of their own beyond
the received bytes: the reader and the end-of-batch callback are bound
methods created once per transport, and data is received into the loop's
shared buffer and copied out at its real size (``sock.recv(256 KiB)``
would allocate and map 256 KiB per call).
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import sys
import warnings
from asyncio import trsock
from typing import Any, Callable

from .._kernel import _compat
from .._writeflow import DEFAULT_HIGH_WATER
from . import base

_BufferedProtocol = asyncio.BufferedProtocol
_TransportSocket = trsock.TransportSocket
_SHUT_WR = socket.SHUT_WR

# asyncio's message for write(<not bytes>), which 3.14 reworded.
_NOT_BYTES = ("data argument must be a bytes, bytearray, or memoryview object, not {!r}"
              if sys.version_info >= (3, 14) else
              "data argument must be a bytes-like object, not {!r}")


def _byte_view(data: Any) -> Any:
    """*data* as something whose ``len()`` is its size in bytes."""
    if type(data) is memoryview and (data.itemsize != 1 or data.ndim != 1):
        if data.c_contiguous:
            return data.cast("B")
        return data.tobytes()
    return data


def _stable(data: Any) -> Any:
    """*data*, or a copy of it if the caller could still change it."""
    t = type(data)
    if t is bytes:
        return data
    if t is memoryview and data.readonly:
        return data
    return bytes(data)


class SocketTransport(base.TransportCommon, asyncio.Transport):
    """A connected stream socket (TCP or Unix) as an ``asyncio.Transport``."""

    __slots__ = (
        "_loop", "_sock", "_sock_fd", "_protocol", "_protocol_connected",
        "_buffered", "_server", "_buffer", "_buffer_size", "_conn_lost",
        "_closing", "_paused", "_reading", "_writing", "_eof",
        "_empty_waiter", "_protocol_paused", "_high_water", "_low_water",
        "_in_callback", "_sent_serial", "_flush_queued", "_batch_end_cb",
        "_sendfile_compatible", "_context",
        "_recv_view", "__weakref__",
        # A __dict__ besides the slots: asyncio's transports have one, and
        # programs and tests set attributes on them or patch their methods
        # per instance (mock.patch.object(transport, "write", ...)).
        "__dict__",
    )

    #: Bytes asked for per recv() (asyncio's value).
    max_size = base.READ_SIZE
    _start_tls_compatible = True

    _extra: dict[str, Any]
    _loop: Any
    _sock: socket.socket | None
    _sock_fd: int
    _protocol: Any
    _protocol_connected: bool
    _buffered: bool
    _server: Any
    _buffer: list[Any]
    _buffer_size: int
    _conn_lost: int
    _closing: bool
    _paused: bool
    _reading: bool
    _writing: bool
    _eof: bool
    _empty_waiter: asyncio.Future[Any] | None
    _protocol_paused: bool
    _high_water: int
    _low_water: int
    _in_callback: bool
    _sent_serial: int
    _flush_queued: bool
    _batch_end_cb: Callable[[], None] | None
    _sendfile_compatible: Any
    _recv_view: memoryview | None
    _context: contextvars.Context | None

    def __init__(self, loop: Any, sock: socket.socket, protocol: Any,
                 waiter: asyncio.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None,
                 server: Any = None) -> None:
        super().__init__(extra)
        self._sock = None
        self._server = None
        extra_map = self._extra
        extra_map["socket"] = _TransportSocket(sock)
        try:
            extra_map["sockname"] = sock.getsockname()
        except OSError:
            extra_map["sockname"] = None
        if "peername" not in extra_map:
            try:
                extra_map["peername"] = sock.getpeername()
            except OSError:
                extra_map["peername"] = None
        self._loop = loop
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._protocol_connected = False
        self.set_protocol(protocol)
        self._buffer = []
        self._buffer_size = 0
        self._conn_lost = 0
        self._closing = False
        self._paused = False
        self._reading = False
        self._writing = False
        self._eof = False
        self._empty_waiter = None
        self._protocol_paused = False
        self._high_water, self._low_water = DEFAULT_HIGH_WATER, DEFAULT_HIGH_WATER // 4
        self._in_callback = False
        self._sent_serial = -1
        self._flush_queued = False
        self._batch_end_cb = None
        self._sendfile_compatible = base.SendfileMode.TRY_NATIVE
        # A socket subclass may override recv(): call it, as asyncio does.
        self._recv_view = loop._recv_view if type(sock) is socket.socket else None
        self._server = server
        # 3.15 (gh-140947): every callback of a connection a server accepted
        # runs in one context, the one it was accepted in, so a protocol
        # reads the same context variables in connection_lost() as in
        # connection_made(), whoever resumed reading.  Elsewhere (and
        # before 3.15) each callback runs in a copy of the context it was
        # scheduled from.
        self._context: contextvars.Context | None = (
            contextvars.copy_context() if server is not None and _compat.PY315 else None)
        if server is not None:
            server._attach(self)
        loop._transports[self._sock_fd] = self
        base.set_nodelay(sock)
        # connection_made, then start reading, then wake the creator: one
        # callback instead of asyncio's three, in asyncio's order.
        loop.call_soon(self._start, waiter, context=self._context)

    def __del__(self) -> None:
        # (no default-argument binding of warnings.warn: mypyc mis-compiles
        # __del__ with extra parameters)
        try:
            sock = self._sock
        except AttributeError:
            return
        if sock is not None:
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock.close()
            self._sock = None
            server = self._server
            if server is not None:
                self._server = None
                server._detach(self)

    # ------------------------------------------------------------------
    # protocol and state
    # ------------------------------------------------------------------

    def set_protocol(self, protocol: Any) -> None:
        self._buffered = isinstance(protocol, _BufferedProtocol)
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self) -> Any:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

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
            base.logger().debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if not self._reading:
            self._reading = True
            self._loop._add_reader(self._sock_fd, self._read_ready, context=self._context)
        if self._loop._debug:
            base.logger().debug("%r resumes reading", self)

    def can_write_eof(self) -> bool:
        return True

    # ------------------------------------------------------------------
    # reading
    # ------------------------------------------------------------------

    def _read_ready(self) -> None:
        if self._buffered:
            self._read_ready_buffered()
            return
        if self._conn_lost:
            return
        # Into the loop's buffer, then out as bytes of the right size
        # (see SocketMixin._recv_view for why).
        view = self._recv_view
        try:
            if view is not None:
                n = self._sock.recv_into(view, self.max_size)  # type: ignore[union-attr]
                data = view[:n].tobytes() if n else b""
            else:
                data = self._sock.recv(self.max_size)  # type: ignore[union-attr]
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
        self._in_callback = True
        try:
            self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            self._callback_interrupted()
            raise
        except BaseException as exc:
            self._callback_failed(
                exc, "Fatal error: protocol.data_received() call failed.")
            return
        self._in_callback = False
        buffer = self._buffer
        if buffer:
            if len(buffer) == 1 and not self._writing and not self._conn_lost:
                # The common reply: one chunk, usually taken whole.
                chunk = buffer[0]
                try:
                    n = self._sock.send(chunk)  # type: ignore[union-attr]
                except (BlockingIOError, InterruptedError):
                    n = 0
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException:
                    n = -1
                if n == len(chunk):
                    buffer.clear()
                    self._buffer_size = 0
                    self._sent_serial = self._loop._batch_serial
                    if (self._closing or self._eof
                            or self._empty_waiter is not None):
                        self._buffer_drained(False)
                    return
                if n > 0:
                    self._consume(n)
            self._flush_held(True)

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
        try:
            nbytes = self._sock.recv_into(buf)  # type: ignore[union-attr]
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
        self._in_callback = True
        try:
            self._protocol.buffer_updated(nbytes)
        except (SystemExit, KeyboardInterrupt):
            self._callback_interrupted()
            raise
        except BaseException as exc:
            self._callback_failed(
                exc, "Fatal error: protocol.buffer_updated() call failed.")
            return
        self._in_callback = False
        if self._buffer:
            self._flush_held(True)

    def _on_eof(self) -> None:
        if self._loop._debug:
            base.logger().debug("%r received EOF", self)
        self._in_callback = True
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            self._callback_interrupted()
            raise
        except BaseException as exc:
            self._callback_failed(
                exc, "Fatal error: protocol.eof_received() call failed.")
            return
        self._in_callback = False
        if self._buffer:
            self._flush_held(True)
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
        self._in_callback = False
        if self._buffer:
            self._flush_held(True)
        self._fatal_error(exc, message)

    def _callback_interrupted(self) -> None:
        # SystemExit/KeyboardInterrupt unwinds the loop: keep what was
        # written reachable by the writer instead of stranding it.
        self._in_callback = False
        if self._buffer and not self._writing and not self._conn_lost:
            self._writing = True
            self._loop._add_writer(self._sock_fd, self._write_ready, context=self._context)

    # ------------------------------------------------------------------
    # writing
    # ------------------------------------------------------------------

    def write(self, data: Any) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(_NOT_BYTES.format(type(data).__name__))
        if self._eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to write; sendfile is in progress")
        if not data:
            return
        if self._conn_lost:
            if self._conn_lost >= base.CONNLOST_WRITES_LOG_THRESHOLD:
                base.logger().warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if type(data) is not bytes:
            data = _byte_view(data)
        if self._in_callback and not self._writing:
            # Rule 1: held until the protocol callback returns.
            self._buffer.append(_stable(data))
            self._buffer_size += len(data)
            if self._buffer_size > self._high_water:
                self._after_append()
            return
        loop = self._loop
        if not self._buffer and not self._in_callback and not (
                self._sent_serial == loop._batch_serial
                and loop._thread_id is not None):
            # Rule 2: the first write of the batch goes out now.
            try:
                n = self._sock.send(data)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on socket transport")
                return
            self._mark_sent()
            if n == len(data):
                return
            data = memoryview(data)[n:]
            self._buffer.append(_stable(data))
            self._buffer_size += len(data)
            self._writing = True
            self._loop._add_writer(self._sock_fd, self._write_ready, context=self._context)
            self._maybe_pause_protocol()
            return
        self._buffer.append(_stable(data))
        self._buffer_size += len(data)
        self._after_append()

    def writelines(self, list_of_data: Any) -> None:
        if self._eof:
            raise RuntimeError("Cannot call writelines() after write_eof()")
        if self._empty_waiter is not None:
            raise RuntimeError("unable to writelines; sendfile is in progress")
        chunks = []
        for data in list_of_data:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(_NOT_BYTES.format(type(data).__name__))
            data = _byte_view(data)
            if len(data):
                chunks.append(data)
        if not chunks:
            return
        if self._conn_lost:
            if self._conn_lost >= base.CONNLOST_WRITES_LOG_THRESHOLD:
                base.logger().warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        buffer = self._buffer
        loop = self._loop
        if not buffer and not self._in_callback and not (
                self._sent_serial == loop._batch_serial
                and loop._thread_id is not None):
            # Rule 2 for several chunks: one sendmsg now; copy only what
            # the socket leaves behind.
            buffer.extend(chunks)
            self._buffer_size += sum(map(len, chunks))
            if not self._send_buffer():
                return
            self._mark_sent()
            if buffer:
                for i, chunk in enumerate(buffer):
                    buffer[i] = _stable(chunk)
                self._writing = True
                self._loop._add_writer(self._sock_fd, self._write_ready, context=self._context)
                self._maybe_pause_protocol()
            else:
                self._buffer_drained(False)
            return
        for chunk in chunks:
            buffer.append(_stable(chunk))
            self._buffer_size += len(chunk)
        self._after_append()

    def _after_append(self) -> None:
        """Data was queued behind other data or held back (rules 1-2)."""
        if self._writing:
            self._maybe_pause_protocol()
        elif self._buffer_size > self._high_water:
            # Held-back bytes never pause the protocol by themselves:
            # give the socket what it takes now, pause for the rest.
            self._flush_held(True)
        elif self._in_callback:
            pass        # flushed when the protocol callback returns
        else:
            loop = self._loop
            if loop._thread_id is not None and self._sent_serial == loop._batch_serial:
                # Rule 2: sent earlier in this batch; the rest goes out
                # together at its end.
                if not self._flush_queued:
                    self._flush_queued = True
                    cb = self._batch_end_cb
                    if cb is None:      # made on first use: idle connections
                        cb = self._batch_end_cb = self._on_batch_end   # stay small
                    loop._call_at_batch_end(cb)
            else:
                # Nothing else would flush it (no batch is running).
                self._flush_held(True)

    def _mark_sent(self) -> None:
        """Remember that this transport sent in the current batch, so that
        later writes in it are coalesced (rule 2): the loop numbers its
        batches, so this costs one store and no registration."""
        self._sent_serial = self._loop._batch_serial

    def _on_batch_end(self) -> None:
        self._flush_queued = False
        if self._buffer and not self._writing and not self._in_callback:
            self._flush_held(False)

    def _flush_held(self, mark: bool) -> None:
        """Send what rules 1-2 held back (no writer is registered)."""
        if self._writing or self._conn_lost or not self._buffer:
            return
        if not self._send_buffer():
            return
        if mark:
            self._mark_sent()
        if self._buffer:
            self._writing = True
            self._loop._add_writer(self._sock_fd, self._write_ready, context=self._context)
            self._maybe_pause_protocol()
        else:
            self._buffer_drained(False)

    def _send_buffer(self) -> bool:
        """One send/sendmsg of the buffered chunks; False after a fatal
        error (the transport is then closing)."""
        buffer = self._buffer
        sock = self._sock
        assert sock is not None
        try:
            count = len(buffer)
            if count == 1 or not base.HAS_SENDMSG:
                n = sock.send(buffer[0])
            elif count <= base.IOV_MAX:
                n = sock.sendmsg(buffer)
            else:
                n = sock.sendmsg(buffer[:base.IOV_MAX])
        except (BlockingIOError, InterruptedError):
            return True
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if self._writing:
                self._writing = False
                self._loop._remove_writer(self._sock_fd)
            buffer.clear()
            self._buffer_size = 0
            self._fatal_error(exc, "Fatal write error on socket transport")
            waiter = self._empty_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(exc)
            return False
        if n:
            self._consume(n)
        return True

    def _send_held_once(self) -> None:
        """One best-effort send of the buffer; errors are for whoever
        closes the transport to report, not this."""
        buffer = self._buffer
        sock = self._sock
        if sock is None:
            return
        try:
            if len(buffer) == 1 or not base.HAS_SENDMSG:
                sock.send(buffer[0])
            else:
                sock.sendmsg(buffer[:base.IOV_MAX])
        except OSError:
            pass

    def _consume(self, n: int) -> None:
        buffer = self._buffer
        self._buffer_size -= n
        if not self._buffer_size:
            buffer.clear()
            return
        i = 0
        while n:
            chunk = buffer[i]
            size = len(chunk)
            if size <= n:
                n -= size
                i += 1
            else:
                buffer[i] = memoryview(chunk)[n:]
                break
        if i:
            del buffer[:i]

    def _write_ready(self) -> None:
        """The writer: the socket can take more of the buffer."""
        if self._conn_lost:
            return
        if self._buffer:
            if not self._send_buffer():
                return
            self._maybe_resume_protocol()  # may write more
        if not self._buffer:
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
            self._sock.shutdown(_SHUT_WR)  # type: ignore[union-attr]

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            self._sock.shutdown(_SHUT_WR)  # type: ignore[union-attr]

    # ------------------------------------------------------------------
    # closing (flow control, close(), abort(): base.TransportCommon)
    # ------------------------------------------------------------------

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        loop = self._loop
        if self._buffer:
            if not self._writing:
                # Held back by rules 1-2: on asyncio's loop these bytes
                # would already be in the kernel (abort() after a final
                # write still delivers it), so hand them over first.
                self._send_held_once()
            self._buffer.clear()
            self._buffer_size = 0
        if self._writing:
            self._writing = False
            loop._remove_writer(self._sock_fd)
        if not self._closing:
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
                sock.close()
            self._sock = None
            self._protocol = None
            self._loop = None
            server = self._server
            if server is not None:
                self._server = None
                server._detach(self)
            waiter = self._empty_waiter
            if waiter is not None and not waiter.done():
                waiter.set_exception(ConnectionError("Connection is closed by peer"))

    # ------------------------------------------------------------------
    # sendfile support (see sendfile.py)
    # ------------------------------------------------------------------

    def _make_empty_waiter(self) -> asyncio.Future[Any]:
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        waiter: asyncio.Future[Any] = self._loop.create_future()
        self._empty_waiter = waiter
        if not self._buffer:
            waiter.set_result(None)
        return waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None
