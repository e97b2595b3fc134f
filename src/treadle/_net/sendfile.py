"""Sending files: ``loop.sock_sendfile`` and ``loop.sendfile``.

Owns: zero-copy ``os.sendfile`` from a regular file to a stream socket
(raw, or the socket under a treadle transport), and the fallback that
reads the file in the executor and writes the chunks when zero-copy is
impossible (no ``os.sendfile``, not a regular file, a TLS transport).
Never: changes the file position except to leave it just after the last
byte sent (asyncio's contract, also on error), or lets a transport's own
writes interleave with the file's bytes.

Zero-copy path, rules:

1. ``os.sendfile`` never runs on the loop thread.  It reads the file,
   which blocks on the disk when the pages are not cached (asyncio calls it
   on the loop thread; tools that flag blocking calls in async code allow
   that only from asyncio's own files).  A *burst* runs in the loop's
   default executor: ``os.sendfile`` again and again until the socket is
   full, the file ends or *count* is reached (asyncio makes one call per
   loop turn).  When the socket is full the loop waits for it to become
   writable (not watching it while a burst runs, which would wake the loop
   on every turn), then starts the next burst.  With the default executor
   shut down the loop thread sends, as asyncio does.
2. The loop waits for the burst in flight before anything else touches the
   socket or the file position: a cancelled ``sock_sendfile`` asks the
   worker to stop after its current call, waits for it (one call: the
   socket is non-blocking) and only then raises ``CancelledError``.
3. A burst sends on a duplicate of the socket's descriptor, taken on the
   loop thread and closed by the worker: if the socket is closed while the
   burst runs, the worker can never write into whatever reuses its number;
   it stops at its next call with ``EBADF``.
4. For a transport, its write buffer is drained first, reading is paused,
   and ``write()`` raises until the file is sent.
"""

from __future__ import annotations

import asyncio
import errno
import io
import os
import socket
import weakref
import sys
from typing import Any

from . import base, sockio
from .sockets import SocketMixin

_SendfileMode = base.SendfileMode
_SendfileNotAvailableError = base.SendfileNotAvailableError

#: Bytes read per chunk by the fallback paths (asyncio's values).
_SOCK_FALLBACK_CHUNK = 1024 * 256
_TRANSPORT_FALLBACK_CHUNK = 16384


#: 3.14 made sendfile's file position exact: the fallbacks seek to *offset*
#: even when it is 0 (and a file without ``seek`` is read from where it is,
#: whatever the offset), and the native path leaves the position after what
#: it sent even when it sent nothing.  Up to 3.13 both only move it when
#: needed.
_SEEK_ALWAYS = sys.version_info >= (3, 14)


def _seek_to_start(file: Any, offset: int) -> None:
    if _SEEK_ALWAYS:
        if hasattr(file, "seek"):
            file.seek(offset)
    elif offset:
        file.seek(offset)


def _check_sendfile_params(sock: Any, file: Any, offset: Any, count: Any) -> None:
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if not sock.type == socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")


class SendfileMixin(SocketMixin):
    """The loop's sendfile methods."""

    # ------------------------------------------------------------------
    # raw sockets
    # ------------------------------------------------------------------

    async def sock_sendfile(self, sock: socket.socket, file: Any, offset: int = 0,
                            count: int | None = None, *,
                            fallback: bool | None = True) -> int:
        if self._debug:
            sockio.check_nonblocking(self, sock)
        sockio.check_ssl_socket(sock)
        _check_sendfile_params(sock, file, offset, count)
        try:
            return await self._sock_sendfile_native(sock, file, offset, count)
        except _SendfileNotAvailableError:
            if not fallback:
                raise
        return await self._sock_sendfile_fallback(sock, file, offset, count)

    async def _sock_sendfile_native(self, sock: socket.socket, file: Any,
                                    offset: int, count: int | None) -> int:
        if not hasattr(os, "sendfile"):
            raise _SendfileNotAvailableError("os.sendfile() is not available")
        try:
            fileno = file.fileno()
        except (AttributeError, io.UnsupportedOperation):
            raise _SendfileNotAvailableError("not a regular file") from None
        try:
            fsize = os.fstat(fileno).st_size
        except OSError:
            raise _SendfileNotAvailableError("not a regular file") from None
        blocksize = count if count else fsize
        if not blocksize:
            return 0
        job = _SendfileJob(sock, fileno, offset, count,
                           min(blocksize, sys.maxsize // 2 + 1))
        fd = sock.fileno()
        writable: asyncio.Future[None] | None = None
        try:
            while True:
                await self._sendfile_burst(job)
                if job.error is not None:
                    raise job.error
                if job.finished:
                    return job.total_sent
                # The socket is full.  A transport's socket is not ours to
                # wait on (asyncio's RuntimeError); loop.sendfile() lends
                # it explicitly.
                self._ensure_fd_no_transport(fd)
                writable = self.create_future()
                self._add_writer(fd, _wake, writable)
                await writable
                writable = None
                self._remove_writer(fd)
        finally:
            if writable is not None:
                self._remove_writer(fd)
            job.error = None            # no reference cycle through the traceback
            job.update_filepos()

    async def _sendfile_burst(self, job: _SendfileJob) -> None:
        """Run one burst of *job* in the default executor (rule in the
        module docstring); on this thread when the executor is shut down,
        as asyncio sends.  Returns only when the burst is over, even when
        cancelled: until then the worker owns the file position."""
        try:
            job.wfd = os.dup(job.sock.fileno())
        except OSError as exc:
            job.fail(exc)
            return
        try:
            burst = self.run_in_executor(None, job.burst)
        except RuntimeError:
            job.burst()
            return
        try:
            await asyncio.shield(burst)
        except asyncio.CancelledError:
            job.stop = True
            while not burst.done():
                try:
                    await asyncio.shield(burst)
                except asyncio.CancelledError:
                    pass
            raise

    async def _sock_sendfile_fallback(self, sock: socket.socket, file: Any,
                                      offset: int, count: int | None) -> int:
        _seek_to_start(file, offset)
        blocksize = min(count, _SOCK_FALLBACK_CHUNK) if count else _SOCK_FALLBACK_CHUNK
        buf = bytearray(blocksize)
        total_sent = 0
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        break
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    break
                await self.sock_sendall(sock, view[:read])
                total_sent += read
            return total_sent
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset + total_sent)

    # ------------------------------------------------------------------
    # transports
    # ------------------------------------------------------------------

    async def sendfile(self, transport: Any, file: Any, offset: int = 0,
                       count: int | None = None, *,
                       fallback: bool = True) -> int:
        if transport.is_closing():
            raise RuntimeError("Transport is closing")
        mode = getattr(transport, "_sendfile_compatible", _SendfileMode.UNSUPPORTED)
        if mode is _SendfileMode.UNSUPPORTED:
            raise RuntimeError(
                f"sendfile is not supported for transport {transport!r}")
        if mode is _SendfileMode.TRY_NATIVE:
            try:
                return await self._sendfile_native(transport, file, offset, count)
            except _SendfileNotAvailableError:
                if not fallback:
                    raise
        if not fallback:
            raise RuntimeError(
                f"fallback is disabled and native sendfile is not "
                f"supported for transport {transport!r}")
        return await self._sendfile_fallback(transport, file, offset, count)

    async def _sendfile_native(self, transp: Any, file: Any, offset: int,
                               count: int | None) -> int:
        fd = transp._sock_fd
        # The transport lends its socket to sock_sendfile for the duration.
        ref = self._transports.get(fd)
        if ref is not None and ref() is transp:
            del self._transports[fd]
        resume_reading = transp.is_reading()
        transp.pause_reading()
        await transp._make_empty_waiter()
        try:
            return await self.sock_sendfile(transp._sock, file, offset, count,
                                            fallback=False)
        finally:
            transp._reset_empty_waiter()
            if resume_reading:
                transp.resume_reading()
            self._transports[fd] = weakref.ref(transp)

    async def _sendfile_fallback(self, transp: Any, file: Any, offset: int,
                                 count: int | None) -> int:
        _seek_to_start(file, offset)
        blocksize = min(count, _TRANSPORT_FALLBACK_CHUNK) if count else _TRANSPORT_FALLBACK_CHUNK
        buf = bytearray(blocksize)
        total_sent = 0
        proto = _FallbackProtocol(transp)
        try:
            while True:
                if count:
                    blocksize = min(count - total_sent, blocksize)
                    if blocksize <= 0:
                        return total_sent
                view = memoryview(buf)[:blocksize]
                read = await self.run_in_executor(None, file.readinto, view)
                if not read:
                    return total_sent
                await proto.drain()
                # The transport may hold the chunk until the end of the
                # batch: give it bytes the next readinto cannot change.
                transp.write(bytes(view[:read]))
                total_sent += read
        finally:
            if total_sent > 0 and hasattr(file, "seek"):
                file.seek(offset + total_sent)
            await proto.restore()


def _wake(writable: asyncio.Future[None]) -> None:
    if not writable.done():
        writable.set_result(None)


class _SendfileJob:
    """One zero-copy ``sock_sendfile``: where it is in the file, and how
    its last burst ended.  Between bursts only the loop thread touches it;
    during one, only the worker (the loop waits for the burst's future)."""

    __slots__ = ("sock", "fileno", "offset", "start", "count", "blocksize",
                 "total_sent", "wfd", "stop", "finished", "error")

    def __init__(self, sock: socket.socket, fileno: int, offset: int,
                 count: int | None, blocksize: int) -> None:
        self.sock = sock
        self.fileno = fileno
        self.offset = offset
        self.start = offset
        self.count = count
        self.blocksize = blocksize
        self.total_sent = 0
        #: The burst's own descriptor of the socket (rule 3).
        self.wfd = -1
        #: Set by the loop when the awaiting task is cancelled.
        self.stop = False
        #: The file ended or *count* was reached.
        self.finished = False
        self.error: BaseException | None = None

    def update_filepos(self) -> None:
        # 3.14+: the file position ends after what was sent even when
        # nothing was (asyncio's rule of each version).
        if self.total_sent > 0 or _SEEK_ALWAYS:
            os.lseek(self.fileno, self.start + self.total_sent, os.SEEK_SET)

    def burst(self) -> None:
        """Send until the socket is full, the file ends, *count* is reached,
        the loop asks to stop or the socket is closed; then close the
        burst's descriptor.  Never raises: the outcome is left in the job."""
        try:
            self._send()
        finally:
            os.close(self.wfd)
            self.wfd = -1

    def _send(self) -> None:
        while True:
            if self.stop:
                return
            if self.sock.fileno() < 0:
                # Closed under us (the descriptor we send on is our own).
                self.fail(OSError(errno.EBADF, os.strerror(errno.EBADF)))
                return
            blocksize = self.blocksize
            if self.count:
                blocksize = self.count - self.total_sent
                if blocksize <= 0:
                    self.finished = True
                    return
                blocksize = min(blocksize, sys.maxsize // 2 + 1)
            try:
                sent = os.sendfile(self.wfd, self.fileno, self.offset, blocksize)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.fail(exc)
                return
            except BaseException as exc:
                self.error = exc
                return
            if sent == 0:
                self.finished = True        # end of file
                return
            self.offset += sent
            self.total_sent += sent

    def fail(self, exc: OSError) -> None:
        if (self.total_sent and exc.errno == errno.ENOTCONN
                and type(exc) is not ConnectionError):
            # The peer went away mid-transfer: report it the same way on
            # every platform.
            new_exc = ConnectionError("socket is not connected", errno.ENOTCONN)
            new_exc.__cause__ = exc
            exc = new_exc
        if self.total_sent == 0:
            # Typically not a regular (mmap-able) file: fall back.
            self.error = _SendfileNotAvailableError("os.sendfile call failed")
        else:
            self.error = exc


class _FallbackProtocol(asyncio.Protocol):
    """Stands in for a transport's protocol while ``sendfile`` writes the
    file through ``transport.write()``: it turns pause/resume_writing into
    something ``drain()`` can await, and gives everything back after."""

    def __init__(self, transp: Any) -> None:
        self._transport = transp
        self._proto = transp.get_protocol()
        self._should_resume_reading = transp.is_reading()
        self._should_resume_writing = bool(getattr(transp, "_protocol_paused", False))
        transp.pause_reading()
        transp.set_protocol(self)
        self._write_ready_fut: asyncio.Future[Any] | None = None
        if self._should_resume_writing:
            self._write_ready_fut = transp._loop.create_future()

    async def drain(self) -> None:
        if self._transport.is_closing():
            raise ConnectionError("Connection closed by peer")
        fut = self._write_ready_fut
        if fut is None:
            return
        await fut

    def connection_made(self, transport: Any) -> None:
        raise RuntimeError("Invalid state: "
                           "connection should have been established already.")

    def connection_lost(self, exc: BaseException | None) -> None:
        fut = self._write_ready_fut
        if fut is not None and not fut.done():
            if exc is None:
                fut.set_exception(ConnectionError("Connection is closed by peer"))
            else:
                fut.set_exception(exc)
        self._proto.connection_lost(exc)

    def pause_writing(self) -> None:
        if self._write_ready_fut is not None:
            return
        self._write_ready_fut = self._transport._loop.create_future()

    def resume_writing(self) -> None:
        fut = self._write_ready_fut
        if fut is None:
            return
        if not fut.done():
            fut.set_result(False)
        self._write_ready_fut = None

    def data_received(self, data: bytes) -> None:
        raise RuntimeError("Invalid state: reading should be paused")

    def eof_received(self) -> bool | None:
        raise RuntimeError("Invalid state: reading should be paused")

    async def restore(self) -> None:
        self._transport.set_protocol(self._proto)
        if self._should_resume_reading:
            self._transport.resume_reading()
        fut = self._write_ready_fut
        if fut is not None:
            fut.cancel()
        if self._should_resume_writing:
            self._proto.resume_writing()
