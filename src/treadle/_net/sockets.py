"""Low-level socket operations on the loop: ``sock_recv`` and friends.

Owns: ``sock_recv``, ``sock_recv_into``, ``sock_recvfrom``,
``sock_recvfrom_into``, ``sock_sendall``, ``sock_sendto``,
``sock_connect``, ``sock_accept``; the fd -> transport registry
(``_transports``) and the check that keeps raw fd callbacks and socket
operations off a socket a transport owns (asyncio's ``RuntimeError``).
Never: creates transports or resolves names itself (``sock_connect`` asks
``_ensure_resolved`` of ``dns.py``, the layer below this one).

Each operation first tries the syscall directly; only when it would block
does it create a future and register a reader or writer for the socket,
removed again as soon as the operation is over (done, failed or cancelled).
Where asyncio adds a done-callback (a ``functools.partial`` and one more
Handle per operation) to remove the registration, treadle removes it in
the awaiting coroutine's ``finally``, which runs at the same point of the
loop turn.
"""

from __future__ import annotations

import asyncio
import socket
import weakref
from typing import Any, Callable

from . import base
from .dns import DNSMixin

_check_ssl_socket = base.check_ssl_socket

#: Up to this, ``sock_recv`` is ``sock.recv`` (its allocation stays below
#: glibc's mmap threshold); above it, on a plain socket, it reads into the
#: loop's buffer and copies out what arrived.
_DIRECT_RECV = 64 * 1024
_SOCKET = socket.socket


class SocketMixin(DNSMixin):
    """The loop's ``sock_*`` methods and the transport registry."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: fd -> the transport using it (weakly: an abandoned transport
        #: must still be collected and warn).
        self._transports: weakref.WeakValueDictionary[int, Any] = (
            weakref.WeakValueDictionary())
        self._recv_buffer: memoryview | None = None

    @property
    def _recv_view(self) -> memoryview:
        """One receive buffer per loop, shared by its transports and large
        sock_recv calls.  ``sock.recv(256 KiB)`` allocates (and maps)
        256 KiB for every call and shrinks it after; receiving into this
        buffer and copying out the bytes that arrived costs a tenth of that
        for typical messages.  Each read copies out before anything else
        can run, so sharing is safe; it is per loop because the GIL is
        released during the syscall.  Made on first use: a loop that never
        touches a socket (most loops of a test suite) does not pay for
        zeroing 256 KiB."""
        view = self._recv_buffer
        if view is None:
            view = self._recv_buffer = memoryview(bytearray(base.READ_SIZE))
        return view

    # ------------------------------------------------------------------
    # fd ownership
    # ------------------------------------------------------------------

    def _ensure_fd_no_transport(self, fd: Any) -> None:
        fileno = fd
        if not isinstance(fileno, int):
            try:
                fileno = int(fileno.fileno())
            except (AttributeError, TypeError, ValueError):
                raise ValueError(f"Invalid file object: {fd!r}") from None
        transport = self._transports.get(fileno)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(
                f"File descriptor {fd!r} is used by transport {transport!r}")

    def add_reader(self, fd: Any, callback: Callable[..., object],  # type: ignore[override]
                   *args: Any) -> None:
        self._ensure_fd_no_transport(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd: Any) -> bool:
        self._ensure_fd_no_transport(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd: Any, callback: Callable[..., object],  # type: ignore[override]
                   *args: Any) -> None:
        self._ensure_fd_no_transport(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd: Any) -> bool:
        self._ensure_fd_no_transport(fd)
        return self._remove_writer(fd)

    # ------------------------------------------------------------------
    # receiving
    # ------------------------------------------------------------------

    # Each receive tries the syscall at once; only if the socket has nothing
    # does it wait, through _read_when_ready, for the fd to become readable.

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        _check_ssl_socket(sock)
        if self._debug:
            base.check_nonblocking(self, sock)
        try:
            return self._recv(sock, n)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._read_when_ready(sock, self._recv, sock, n)  # type: ignore[no-any-return]

    def _recv(self, sock: socket.socket, n: int) -> bytes:
        """``sock.recv(n)``; for large *n*, on a plain non-blocking socket,
        into the loop's buffer (see ``_recv_view``): ``recv`` would allocate
        *n* bytes with ``mmap`` and shrink them.  (This module runs
        interpreted: reading ``sock.timeout`` or calling ``os.read`` on the
        fd to skip ``recv``'s argument parsing costs more than it saves.)"""
        if (type(n) is int and _DIRECT_RECV < n <= base.READ_SIZE
                and type(sock) is _SOCKET and sock.timeout == 0.0):
            # (a subclass may override recv(); a socket with a timeout
            # waits in recv() as it does on asyncio)
            view = self._recv_view
            got = sock.recv_into(view, n)
            return view[:got].tobytes()
        return sock.recv(n)

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        _check_ssl_socket(sock)
        if self._debug:
            base.check_nonblocking(self, sock)
        try:
            return sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._read_when_ready(sock, sock.recv_into, buf)  # type: ignore[no-any-return]

    async def sock_recvfrom(self, sock: socket.socket,
                            bufsize: int) -> tuple[bytes, Any]:
        _check_ssl_socket(sock)
        if self._debug:
            base.check_nonblocking(self, sock)
        try:
            return sock.recvfrom(bufsize)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._read_when_ready(sock, sock.recvfrom, bufsize)  # type: ignore[no-any-return]

    async def sock_recvfrom_into(self, sock: socket.socket, buf: Any,
                                 nbytes: int = 0) -> tuple[int, Any]:
        _check_ssl_socket(sock)
        if self._debug:
            base.check_nonblocking(self, sock)
        if not nbytes:
            nbytes = len(buf)
        try:
            return sock.recvfrom_into(buf, nbytes)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._read_when_ready(sock, sock.recvfrom_into, buf, nbytes)  # type: ignore[no-any-return]

    async def _read_when_ready(self, sock: socket.socket, op: Any, *args: Any) -> Any:
        """Wait until *sock* is readable and ``op(*args)`` succeeds."""
        fut = self.create_future()
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_reader(fd, self._retry_read, fut, op, args)
        try:
            return await fut
        finally:
            if not handle._cancelled:
                self._remove_reader(fd)
            del fut, handle   # (the handle holds the future too)

    def _retry_read(self, fut: asyncio.Future[Any], op: Any,
                    args: tuple[Any, ...]) -> None:
        if fut.done():
            return
        try:
            result = op(*args)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(result)

    # ------------------------------------------------------------------
    # sending
    # ------------------------------------------------------------------

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        _check_ssl_socket(sock)
        if self._debug:
            base.check_nonblocking(self, sock)
        try:
            n = sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        if type(data) is bytes and n == len(data):
            return
        view = memoryview(data)
        if view.itemsize != 1 or view.ndim != 1:
            view = view.cast("B")
        if n == len(view):
            return
        fut = self.create_future()
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        progress = _SendAll(view, n)
        handle = self._add_writer(fd, self._sock_sendall, fut, sock, progress)
        try:
            await fut
        finally:
            if not handle._cancelled:
                self._remove_writer(fd)
            del fut, handle

    def _sock_sendall(self, fut: asyncio.Future[Any], sock: socket.socket,
                      progress: _SendAll) -> None:
        if fut.done():
            return
        view = progress.view
        try:
            n = sock.send(view[progress.pos:])
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
            return
        progress.pos += n
        if progress.pos == len(view):
            fut.set_result(None)

    async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
        _check_ssl_socket(sock)
        if self._debug:
            base.check_nonblocking(self, sock)
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        fd = sock.fileno()
        self._ensure_fd_no_transport(fd)
        handle = self._add_writer(fd, self._sock_sendto, fut, sock, data, address)
        try:
            return await fut  # type: ignore[no-any-return]
        finally:
            if not handle._cancelled:
                self._remove_writer(fd)
            del fut, handle

    def _sock_sendto(self, fut: asyncio.Future[Any], sock: socket.socket,
                     data: Any, address: Any) -> None:
        if fut.done():
            return
        try:
            n = sock.sendto(data, 0, address)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(n)

    # ------------------------------------------------------------------
    # connecting and accepting
    # ------------------------------------------------------------------

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        _check_ssl_socket(sock)
        if self._debug:
            base.check_nonblocking(self, sock)
        if sock.family == socket.AF_INET or (
                base.HAS_IPV6 and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto)
            address = resolved[0][4]
        fd = sock.fileno()
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            pass
        else:
            return
        # In progress (EINPROGRESS, or EINTR, after which the connection
        # also completes in the background): wait until writable.
        fut = self.create_future()
        self._ensure_fd_no_transport(fd)
        handle = self._add_writer(fd, self._sock_connect_cb, fut, sock, address)
        try:
            await fut
        finally:
            if not handle._cancelled:
                self._remove_writer(fd)
            # The exception's traceback holds this frame: break the cycle.
            del fut, handle

    def _sock_connect_cb(self, fut: asyncio.Future[Any], sock: socket.socket,
                         address: Any) -> None:
        if fut.done():
            return
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err != 0:
                raise OSError(err, f"Connect call failed {address}")
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result(None)
        finally:
            # The exception's traceback holds this frame, and the frame the
            # future that holds the exception: without this the error stays
            # alive until the cycle collector runs (asyncio breaks it too).
            del fut

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        _check_ssl_socket(sock)
        if self._debug:
            base.check_nonblocking(self, sock)
        fd = sock.fileno()      # (first, as asyncio: what fails for a non-socket)
        try:
            conn, address = sock.accept()
            conn.setblocking(False)
            return conn, address
        except (BlockingIOError, InterruptedError):
            pass
        fut = self.create_future()
        self._ensure_fd_no_transport(fd)
        handle = self._add_reader(fd, self._sock_accept, fut, sock)
        try:
            return await fut  # type: ignore[no-any-return]
        finally:
            if not handle._cancelled:
                self._remove_reader(fd)
            del fut, handle

    def _sock_accept(self, fut: asyncio.Future[Any], sock: socket.socket) -> None:
        if fut.done():
            return
        try:
            conn, address = sock.accept()
            conn.setblocking(False)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            fut.set_exception(exc)
        else:
            fut.set_result((conn, address))


class _SendAll:
    """Progress of one ``sock_sendall`` that had to wait."""

    __slots__ = ("view", "pos")

    def __init__(self, view: memoryview, pos: int) -> None:
        self.view = view
        self.pos = pos
