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
The receives and ``sock_sendall`` run in ``sockio.py``, compiled (it says
why and states these rules); ``sock_sendto``, ``sock_connect`` and
``sock_accept`` follow the same rules here.
"""

from __future__ import annotations

import socket
import weakref
from typing import Any, Callable

from . import base, sockio
from .core import READ_SIZE
from .dns import DNSMixin



class SocketMixin(DNSMixin):
    """The loop's ``sock_*`` methods and the transport registry."""

    def _layers_init(self) -> None:
        super()._layers_init()
        #: fd -> a weak reference to the transport using it (weak: an
        #: abandoned transport must still be collected and warn).  A dead
        #: reference counts as none; the next transport on the fd replaces
        #: it.  (Not a WeakValueDictionary: its get() is Python code, and
        #: every wait of a sock_* call looks here.)
        self._transports: dict[int, weakref.ref[Any]] = {}
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
            view = self._recv_buffer = memoryview(bytearray(READ_SIZE))
        return view

    # ------------------------------------------------------------------
    # fd ownership
    # ------------------------------------------------------------------

    def _ensure_fd_no_transport(self, fd: Any) -> None:
        sockio.ensure_no_transport(self, fd)

    def _check_fd_free(self, fd: Any) -> None:
        self._ensure_fd_no_transport(fd)
        super()._check_fd_free(fd)

    # ------------------------------------------------------------------
    # receiving and sending: the waits live in the compiled sockio.py
    # ------------------------------------------------------------------

    # Each is an `async def` of its own around sockio's compiled functions
    # (the first try; the registration whose callback completes the
    # future): what the caller gets must be a coroutine of the loop's
    # method, by name (task reprs, "coroutine was never awaited",
    # slow-callback reports), with a Python frame (task stacks, `treadle
    # ps`, debug mode's "created at") and for inspect.iscoroutine().  A
    # compiled coroutine has neither name nor frame, and a throw() into a
    # coroutine awaiting one warns on 3.12+ (sockio.py).

    async def sock_recv(self, sock: socket.socket, n: int) -> bytes:
        data = sockio.recv_now(self, sock, n)
        if data is None:
            data = await self._sock_wait(sock, False, sockio.watch_recv, sock, n)
        return data

    async def sock_sendall(self, sock: socket.socket, data: Any) -> None:
        rest = sockio.sendall_now(self, sock, data)
        if rest is not None:
            await self._sock_wait(sock, True, sockio.watch_send, sock, rest)

    async def sock_recv_into(self, sock: socket.socket, buf: Any) -> int:
        sockio.check_socket(self, sock)
        return await self._when_ready(sock, sockio.recv_into, (sock, buf), False)  # type: ignore[no-any-return]

    async def sock_recvfrom(self, sock: socket.socket,
                            bufsize: int) -> tuple[bytes, Any]:
        sockio.check_socket(self, sock)
        return await self._when_ready(sock, sockio.recvfrom, (sock, bufsize), False)  # type: ignore[no-any-return]

    async def sock_recvfrom_into(self, sock: socket.socket, buf: Any,
                                 nbytes: int = 0) -> tuple[int, Any]:
        sockio.check_socket(self, sock)
        if not nbytes:
            nbytes = len(buf)
        return await self._when_ready(  # type: ignore[no-any-return]
            sock, sockio.recvfrom_into, (sock, buf, nbytes), False)

    async def sock_sendto(self, sock: socket.socket, data: Any, address: Any) -> int:
        sockio.check_socket(self, sock)
        try:
            return sock.sendto(data, address)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(sock, True, sockio.watch_write,  # type: ignore[no-any-return]
                                     sockio.sendto, (sock, data, address))

    async def _when_ready(self, sock: socket.socket, op: Callable[..., Any],
                          args: tuple[Any, ...], writer: bool) -> Any:
        """``op(*args)`` now, or once *sock* is readable (writable) and it
        succeeds."""
        try:
            return op(*args)
        except (BlockingIOError, InterruptedError):
            pass
        return await self._sock_wait(sock, writer, sockio.watch_write if writer
                                     else sockio.watch_read, op, args)

    async def _sock_wait(self, sock: socket.socket, writer: bool,
                         watch: Callable[..., Any], a: Any, b: Any) -> Any:
        """Make a future, have ``watch(loop, fd, future, a, b)`` register
        *sock*'s reader (writer) that completes it, and await it; the
        registration goes as soon as the wait is over, however it ended.
        Only this frame holds the future: a frame that an error's traceback
        keeps must not (future -> error -> traceback -> frame -> future
        would keep the error alive until the cyclic GC runs)."""
        fut = self.create_future()
        fd = sock.fileno()
        handle = watch(self, fd, fut, a, b)
        try:
            return await fut
        finally:
            sockio.unwatch(self, fd, handle, writer)
            del fut, handle   # (the handle holds the future too)

    # ------------------------------------------------------------------
    # connecting and accepting
    # ------------------------------------------------------------------

    async def sock_connect(self, sock: socket.socket, address: Any) -> None:
        sockio.check_socket(self, sock)
        if sock.family == socket.AF_INET or (
                base.HAS_IPV6 and sock.family == socket.AF_INET6):
            resolved = await self._ensure_resolved(
                address, family=sock.family, type=sock.type, proto=sock.proto)
            address = resolved[0][4]
        sock.fileno()   # (first, as asyncio: what fails for a non-socket)
        try:
            sock.connect(address)
        except (BlockingIOError, InterruptedError):
            pass
        else:
            return
        # In progress (EINPROGRESS, or EINTR, after which the connection
        # also completes in the background): wait until writable.
        await self._sock_wait(sock, True, sockio.watch_write, sockio.connected,
                              (sock, address))

    async def sock_accept(self, sock: socket.socket) -> tuple[socket.socket, Any]:
        sockio.check_socket(self, sock)
        sock.fileno()   # (first, as asyncio: what fails for a non-socket)
        return await self._when_ready(sock, sockio.accept, (sock,), False)  # type: ignore[no-any-return]
