"""Pipe transports: ``connect_read_pipe`` and ``connect_write_pipe``.

Owns: one non-blocking fd each (a pipe, FIFO, pty, socket or character
device) wrapped in asyncio's ``ReadTransport``/``WriteTransport`` API, with
the behaviour of asyncio's Unix pipe transports: ``connection_made`` and
the connect waiter one loop turn after creation, EOF as ``eof_received``
then ``connection_lost(None)``, a write end that notices its reader going
away (``connection_lost(BrokenPipeError())`` if data was still pending),
``pause_reading``/``resume_reading``, write flow control at the high/low
water marks, ``write_eof``, ``abort``.
Never: blocks, or lets an exception from the fd escape into the loop; an
I/O error ends the transport through ``connection_lost(exc)``.

Writes follow treadle's write rule (``_writeflow.py``: a write goes out
at once, as on asyncio, except that writes made inside the transport's own
protocol callbacks, ``connection_made`` and ``resume_writing``, leave
together in one ``os.writev`` when the callback returns), with
``_writeflow``'s ``WriteBuffer`` and its flow control.

Transports keep an instance ``__dict__`` (no ``__slots__``): asyncio's own
tests, and real programs, set attributes on pipe transports.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import sys
import warnings
from typing import Any, Callable

from .._kernel import _compat
from .._kernel.contract import KernelServices
from .._kernel.loop import set_result_unless_cancelled
from .._writeflow import (WriteBuffer, WriteRule, byte_view, frozen,
                          lost_write, require_protocol, tell_protocol, writelines_items)


def _flat(data: Any) -> Any:
    """*data*, checked to be bytes-like, as ``_writeflow.byte_view`` (its
    ``len()`` counts bytes; ``os.write`` takes it)."""
    if type(data) is bytes:
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        return byte_view(data)
    raise TypeError(f"data argument must be a bytes-like object, "
                    f"not {type(data).__name__!r}")


class _PipeCommon:
    """What both pipe transports share (put first in their bases)."""

    _loop: KernelServices | None
    _pipe: Any
    _protocol: Any
    _closing: bool
    _fileno: int
    #: What the transport is doing, for the repr of an open one on a loop
    #: that is not closed (each transport's own words, as asyncio's).
    _activity: Callable[[], list[str]]

    def __del__(self) -> None:
        # Warn about, and close, a pipe the program never closed (asyncio's
        # ResourceWarning).
        if getattr(self, "_pipe", None) is not None:
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._pipe.close()

    def _open_loop(self) -> KernelServices:
        """The loop, while the transport has not let go of it."""
        loop = self._loop
        assert loop is not None, "the pipe transport has been released"
        return loop

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        if self._pipe is None:
            return   # already released (a write pipe's abort() after its last flush)
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._release()

    def _release(self) -> None:
        """Let go of the pipe (closed), the protocol and the loop."""
        pipe = self._pipe
        self._pipe = None
        self._protocol = None
        self._loop = None
        if pipe is not None:
            pipe.close()

    def __repr__(self) -> str:
        # asyncio's format: "<Class [closing] fd=N open|polling|idle ...>".
        info = [type(self).__name__]
        if self._pipe is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._fileno}")
        if self._pipe is None:
            info.append("closed")
        elif self._loop is None or self._loop.is_closed():
            info.append("open")
        else:
            info += self._activity()
        return f"<{' '.join(info)}>"


class ReadPipeTransport(_PipeCommon, asyncio.ReadTransport):
    """The read end of a pipe (asyncio's ``_UnixReadPipeTransport``)."""

    #: The most bytes read from the fd per readiness event (asyncio's value).
    max_size = 256 * 1024

    _extra: dict[str, Any]    # asyncio.BaseTransport's (typeshed omits it)

    def __init__(self, loop: KernelServices, pipe: Any, protocol: Any,
                 waiter: asyncio.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self._extra["pipe"] = pipe
        self._loop: KernelServices | None = loop
        # fileno() first: for an object without one there is nothing to close.
        self._fileno: int = pipe.fileno()
        self._pipe: Any = pipe
        self._protocol: Any = protocol
        self._closing = False
        self._paused = False
        self._polling = False
        mode = os.fstat(self._fileno).st_mode
        try:
            if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
                raise ValueError("Pipe transport is for pipes/sockets only.")
            require_protocol(protocol)
        except BaseException:
            self._pipe = None       # still the caller's: nothing to close
            self._protocol = None
            raise
        os.set_blocking(self._fileno, False)
        loop.call_soon(protocol.connection_made, self)
        # Reading starts only after connection_made (asyncio's order).
        loop.call_soon(self._start_reading)
        if waiter is not None:
            loop.call_soon(set_result_unless_cancelled, waiter, None)

    def _activity(self) -> list[str]:
        return ["polling" if self._polling else "idle"]

    # -- reading ---------------------------------------------------------

    def _start_reading(self) -> None:
        if self._paused or self._closing:
            return
        self._open_loop()._add_reader(self._fileno, self._read_ready)
        self._polling = True

    def _stop_reading(self) -> None:
        if self._polling:
            self._polling = False
            self._open_loop()._remove_reader(self._fileno)

    def _read_ready(self) -> None:
        try:
            data = os.read(self._fileno, self.max_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc, "Fatal read error on pipe transport")
            return
        if data:
            self._protocol.data_received(data)
            return
        if self._open_loop().get_debug():
            _compat.asyncio_logger().info("%r was closed by peer", self)
        self._closing = True
        self._stop_reading()
        self._open_loop().call_soon(self._protocol.eof_received)
        self._open_loop().call_soon(self._call_connection_lost, None)

    def is_reading(self) -> bool:
        return not self._paused and not self._closing

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._stop_reading()
        if self._open_loop().get_debug():
            _compat.asyncio_logger().debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._open_loop()._add_reader(self._fileno, self._read_ready)
        self._polling = True
        if self._open_loop().get_debug():
            _compat.asyncio_logger().debug("%r resumes reading", self)

    # -- the rest of the API -------------------------------------------------

    def close(self) -> None:
        if not self._closing:
            self._close(None)

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on pipe transport") -> None:
        # EIO is how a pty master reports that its slave side is gone: an
        # ordinary end of the stream, not worth the exception handler.
        if isinstance(exc, OSError) and exc.errno == errno.EIO:
            if self._open_loop().get_debug():
                _compat.asyncio_logger().debug("%r: %s", self, message, exc_info=True)
        else:
            self._open_loop().call_exception_handler({
                "message": message,
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            })
        self._close(exc)

    def _close(self, exc: BaseException | None) -> None:
        self._closing = True
        loop = self._loop
        if loop is None:
            return
        if loop.is_closed():
            # No loop turn will ever run connection_lost: release the fd
            # now instead of failing in call_soon (asyncio raises here,
            # which loses the fd until garbage collection).
            self._polling = False
            self._release()
            return
        self._stop_reading()
        loop.call_soon(self._call_connection_lost, exc)



class WritePipeTransport(_PipeCommon, asyncio.Transport):
    """The write end of a pipe (asyncio's ``_UnixWritePipeTransport``), with
    treadle's write rule (module docstring).

    Based on ``asyncio.Transport``, not just ``WriteTransport``: asyncio's
    write pipe transport is a full ``Transport`` too, so it passes
    ``isinstance(t, asyncio.ReadTransport)`` checks and its
    ``pause_reading()``/``resume_reading()``/``is_reading()`` raise
    ``NotImplementedError`` rather than ``AttributeError``.
    """

    _extra: dict[str, Any]

    def __init__(self, loop: KernelServices, pipe: Any, protocol: Any,
                 waiter: asyncio.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self._extra["pipe"] = pipe
        self._loop: KernelServices | None = loop
        # fileno() first: for an object without one there is nothing to close.
        self._fileno: int = pipe.fileno()
        self._pipe: Any = pipe
        self._protocol: Any = protocol
        self._buffer = WriteBuffer()
        self._rule = WriteRule(loop)
        self._conn_lost = 0
        self._closing = False       # close(), write_eof(), abort() or an error
        self._writing = False       # the loop watches the fd for writability
        self._watching_peer = False  # ... and for the reader going away
        self._flushing = False
        self._lost = False          # connection_lost is scheduled or done
        mode = os.fstat(self._fileno).st_mode
        is_char = stat.S_ISCHR(mode)
        is_fifo = stat.S_ISFIFO(mode)
        is_socket = stat.S_ISSOCK(mode)
        try:
            if not (is_char or is_fifo or is_socket):
                raise ValueError("Pipe transport is only for "
                                 "pipes, sockets and character devices")
            require_protocol(protocol)
        except BaseException:
            self._pipe = None       # still the caller's: nothing to close
            self._protocol = None
            raise
        os.set_blocking(self._fileno, False)
        loop.call_soon(self._connection_made)
        # A pipe's write end polls readable (EPOLLERR/POLLHUP) when its
        # reader closes; that is how a transport that is not writing learns
        # its peer is gone.  Not on AIX, where only sockets report it.
        if is_socket or (is_fifo and not sys.platform.startswith("aix")):
            loop.call_soon(self._watch_peer)
        if waiter is not None:
            loop.call_soon(set_result_unless_cancelled, waiter, None)

    def _activity(self) -> list[str]:
        return ["polling" if self._writing else "idle", f"bufsize={self._buffer.size}"]

    # -- protocol callbacks (the write rule holds their writes) --------------

    def _connection_made(self) -> None:
        protocol = self._protocol
        if protocol is None:
            return
        self._rule.enter_callback()
        try:
            protocol.connection_made(self)
        finally:
            self._callback_done()

    def _callback_done(self) -> None:
        rule = self._rule
        rule.leave_callback()
        if (not rule.in_callback() and self._buffer.size and not self._writing
                and not self._flushing and not self._conn_lost):
            self._flush(False)

    def _watch_peer(self) -> None:
        if self._closing or self._pipe is None:
            return
        self._open_loop()._add_reader(self._fileno, self._peer_closed)
        self._watching_peer = True

    def _peer_closed(self) -> None:
        if self._open_loop().get_debug():
            _compat.asyncio_logger().info("%r was closed by peer", self)
        if self._buffer.size:
            self._close(BrokenPipeError())
        else:
            self._close(None)

    # -- writing -------------------------------------------------------------

    def write(self, data: Any) -> None:
        data = _flat(data)
        n = len(data)
        if not n:
            return
        if self._conn_lost or self._closing:
            self._write_after_close()
            return
        buffer = self._buffer
        if buffer.size or self._writing or self._rule.in_callback():
            # Someone flushes this later (the end of our callback, or the
            # writer once the fd takes more).
            buffer.push(frozen(data))
            self._after_push()
            return
        # Nothing pending: the write goes now.
        try:
            sent = os.write(self._fileno, data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._conn_lost += 1
            self._fatal_error(exc, "Fatal write error on pipe transport")
            return
        if sent == n:
            return
        buffer.push(frozen(memoryview(data)[sent:]))
        self._start_writing()
        self._maybe_pause()

    def writelines(self, list_of_data: Any) -> None:
        # asyncio's pipes join the items and write() them (any buffer is
        # taken); here each goes to the buffer as it is, for one writev.
        chunks = writelines_items(list_of_data, joined=True)
        if not chunks:
            return
        if self._conn_lost or self._closing:
            self._write_after_close()
            return
        idle = not (self._buffer.size or self._writing or self._rule.in_callback())
        for item in chunks:
            self._buffer.push(frozen(item))
        if idle:
            # Nothing pending: the whole list in one writev, now.
            self._flush(False)
        else:
            self._after_push()

    def _after_push(self) -> None:
        """Data was queued behind other data or held back."""
        if self._writing:
            self._maybe_pause()     # only what the fd refused counts
        elif self._flushing:
            pass                    # the flush further up the stack sends it
        elif not self._rule.in_callback() or self._buffer.size > self._buffer.high:
            # Outside a callback a write goes now; inside one, held-back
            # bytes never pause the protocol by themselves (on asyncio they
            # would have gone out at once): send them now, and pause only
            # for what the fd does not take.
            self._flush(False)
        # (else: flushed when the callback returns)

    def _write_after_close(self) -> None:
        # asyncio drops such writes, and says so once they pile up.
        self._conn_lost = lost_write(
            self._conn_lost, "pipe closed by peer or os.write(pipe, data) raised exception.")

    def _start_writing(self) -> None:
        if not self._writing:
            self._writing = True
            self._open_loop()._add_writer(self._fileno, self._write_ready)

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            self._open_loop()._remove_writer(self._fileno)

    def _write_ready(self) -> None:
        if self._buffer.size:
            self._flush(True)
        else:
            self._stop_writing()

    def _flush(self, from_writer: bool) -> None:
        """Send as much of the buffer as the fd takes; then watch the fd for
        the rest, or, drained, resume the protocol / finish closing."""
        if self._flushing:
            return   # the flush further up the stack sends what was added
        self._flushing = True
        try:
            self._flush_loop(from_writer)
        finally:
            self._flushing = False

    def _flush_loop(self, from_writer: bool) -> None:
        buffer = self._buffer
        fd = self._fileno
        drained = False
        while buffer.size:
            chunks = buffer.head()
            try:
                if len(chunks) == 1:
                    sent = os.write(fd, chunks[0])
                else:
                    sent = os.writev(fd, chunks)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                buffer.clear()
                self._conn_lost += 1
                self._stop_writing()
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            buffer.advance(sent)
            if buffer.size:
                # The fd is full: the loop tells us when it takes more.
                self._start_writing()
                self._maybe_pause()
                if sent:
                    self._maybe_resume()
                return
            drained = True
            self._stop_writing()
            # The protocol may write more from resume_writing(): it lands in
            # the buffer and this loop sends it.
            self._maybe_resume()
        if drained and self._closing and self._pipe is not None and not self._lost:
            # write_eof()/close() was waiting for the buffer to drain.
            self._stop_watching_peer()
            if from_writer:
                self._lost = True
                self._call_connection_lost(None)
            else:
                # The bytes were held back by the write rule; on asyncio
                # they had gone out already and write_eof() scheduled this.
                self._schedule_connection_lost(None)

    def _maybe_pause(self) -> None:
        if self._buffer.pause_due():
            tell_protocol(self._loop, self, self._protocol, "pause_writing")

    def _maybe_resume(self) -> None:
        if self._buffer.resume_due():
            self._rule.enter_callback()
            try:
                tell_protocol(self._loop, self, self._protocol, "resume_writing")
            finally:
                self._rule.leave_callback()

    # -- flow control --------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return self._buffer.size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._buffer.limits()

    def set_write_buffer_limits(self, high: int | None = None,
                                low: int | None = None) -> None:
        self._buffer.set_limits(high, low)
        self._maybe_pause()

    # -- closing -------------------------------------------------------------

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing:
            return
        assert self._pipe is not None
        self._closing = True
        if self._buffer.size and not self._writing and not self._flushing:
            # Held back by the write rule: on asyncio it had gone out.
            self._flush(False)
            if self._lost:
                return
        if not self._buffer.size:
            self._stop_watching_peer()
            self._schedule_connection_lost(None)
        # else: the flush that drains the buffer calls connection_lost.

    def close(self) -> None:
        if self._pipe is not None and not self._closing:
            # For a write end, closing is write_eof: drain, then let go.
            self.write_eof()

    def abort(self) -> None:
        self._close(None)

    def _stop_watching_peer(self) -> None:
        if self._watching_peer:
            self._watching_peer = False
            self._open_loop()._remove_reader(self._fileno)

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on pipe transport") -> None:
        # OSErrors (a reader gone away, mostly) are the peer's doing and
        # reach the protocol through connection_lost(exc); anything else is
        # a bug worth the exception handler.
        if isinstance(exc, OSError):
            if self._open_loop().get_debug():
                _compat.asyncio_logger().debug("%r: %s", self, message, exc_info=True)
        else:
            self._open_loop().call_exception_handler({
                "message": message,
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            })
        self._close(exc)

    def _close(self, exc: BaseException | None = None) -> None:
        self._closing = True
        self._buffer.clear()
        if self._loop is None or self._lost:
            return
        self._stop_writing()
        self._stop_watching_peer()
        self._schedule_connection_lost(exc)

    def _schedule_connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        loop = self._open_loop()
        if loop.is_closed():
            self._writing = self._watching_peer = False
            self._release()
            return
        loop.call_soon(self._call_connection_lost, exc)

