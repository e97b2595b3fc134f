"""The hot paths of the loop's ``sock_recv`` and ``sock_sendall``.

Owns: a receive and a send-all in two halves each (the first try, and
the wait if it would block), the waits of the other receives, the
callbacks that retry the syscall, the checks of a socket handed to the
loop and the check that no transport owns it.
Never: creates transports, resolves names or registers anything that
outlives the operation.  ``sockets.py`` holds the loop's ``sock_*``
methods, which call these.

Why a module of its own: this one is compiled (``setup.py``), and the loop
class with its mixins is not (``sockets.py`` is a mixin of a Python class,
which a native class cannot be).  An echo server over ``sock_*`` spends
most of its own time here; interpreted, a round trip ran about a
microsecond more of Python bytecode than uvloop's Cython.

The rules, as asyncio's:

* Each operation first tries the syscall; only when it would block does it
  make a future and register a reader (writer) for the socket.
* The registration is removed as soon as the operation is over: done,
  failed or cancelled.  asyncio adds a done-callback to the future for
  that (a ``functools.partial`` and one more ``Handle`` per wait); here the
  awaiting coroutine's ``finally`` does it, at the same point of the loop
  turn.
* A socket a transport owns raises ``RuntimeError`` instead of being
  waited on (``ensure_no_transport``).
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Callable, Final

from .._kernel.handles import Handle
from .base import READ_SIZE, NetLoop

#: Up to this, a receive is ``sock.recv`` (its allocation stays below
#: glibc's mmap threshold); above it, on a plain socket, it reads into the
#: loop's buffer and copies out what arrived.
DIRECT_RECV: Final = 64 * 1024
_SOCKET: Final = socket.socket


def check_ssl_socket(sock: Any) -> None:
    """A socket the loop reads or writes itself is never a TLS socket."""
    if isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def check_nonblocking(loop: NetLoop, sock: Any) -> None:
    """Nor a blocking one: asyncio checks that in debug mode only (it
    costs a syscall)."""
    if loop._debug and sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


def check_socket(loop: NetLoop, sock: Any) -> None:
    """Both checks, for a socket handed to a ``sock_*`` method."""
    check_ssl_socket(sock)
    check_nonblocking(loop, sock)


def ensure_no_transport(loop: NetLoop, fd: Any) -> None:
    """``RuntimeError`` if a live transport that is not closing owns *fd*
    (asyncio's rule: raw fd callbacks and ``sock_*`` calls stay off a
    transport's socket)."""
    fileno = fd
    if not isinstance(fileno, int):
        try:
            fileno = int(fileno.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fd!r}") from None
    ref = loop._transports.get(fileno)
    if ref is None:
        return
    transport = ref()
    if transport is not None and not transport.is_closing():
        raise RuntimeError(
            f"File descriptor {fd!r} is used by transport {transport!r}")


# ----------------------------------------------------------------------
# receiving
# ----------------------------------------------------------------------


def _large(n: Any, sock: Any) -> bool:
    """Whether a receive of *n* bytes goes through the loop's buffer:
    above ``DIRECT_RECV``, on a plain non-blocking socket (a subclass may
    override ``recv()``; a socket with a timeout waits in ``recv()`` as it
    does on asyncio)."""
    return (type(n) is int and DIRECT_RECV < n <= READ_SIZE
            and type(sock) is _SOCKET and sock.timeout == 0.0)


def _receive_large(loop: NetLoop, sock: Any, n: int) -> bytes:
    """``sock.recv(n)`` through the loop's buffer: ``recv`` would allocate
    *n* bytes with ``mmap`` and shrink them (see
    ``sockets.SocketMixin._recv_view``)."""
    view = loop._recv_view
    got = sock.recv_into(view, n)
    return view[:got].tobytes()


# ``loop.sock_recv(sock, n)`` is ``recv_now()`` and, if that found nothing,
# a wait on a future that ``watch_recv()``'s reader callback completes;
# ``loop.sock_sendall()`` likewise.  Nothing here is a coroutine: the
# waiting is the loop's own ``async def`` (sockets.py says why), and an
# interpreted coroutine must never await a compiled one (a throw() into
# it, as a task does when what it awaited failed, reaches the compiled
# coroutine as throw(type, value, tb), which warns on 3.12+).
#
# (Both ``recv_now`` and ``_retry_receive`` call ``sock.recv`` themselves
# rather than through a helper: an exception leaving a compiled function
# gets a traceback entry built for it, and a receive that would block
# raises BlockingIOError on most round trips of a request/response
# protocol.)


def recv_now(loop: NetLoop, sock: Any, n: Any) -> bytes | None:
    """The checks, then the receive; None if it would block."""
    check_socket(loop, sock)
    try:
        data: bytes = _receive_large(loop, sock, n) if _large(n, sock) else sock.recv(n)
        return data
    except (BlockingIOError, InterruptedError):
        return None


def watch_recv(loop: NetLoop, fd: int, sock: Any, n: Any, fut: Any) -> Handle:
    """Register *fd*'s reader: when readable, receive and complete *fut*."""
    ensure_no_transport(loop, fd)
    handle: Handle = loop._add_reader(fd, _retry_receive, fut, loop, sock, n,
                                      _large(n, sock))
    return handle


def unwatch(loop: NetLoop, fd: int, handle: Handle, writer: bool) -> None:
    """The wait that *handle* served is over (done, failed or cancelled):
    its registration goes, unless something already replaced or removed
    it (the handle is then cancelled)."""
    if not handle._cancelled:
        if writer:
            loop._remove_writer(fd)
        else:
            loop._remove_reader(fd)


def _retry_receive(fut: Any, loop: NetLoop, sock: Any, n: Any, large: bool) -> None:
    if fut.done():
        return
    try:
        data: bytes = _receive_large(loop, sock, n) if large else sock.recv(n)
    except (BlockingIOError, InterruptedError):
        return
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        fut.set_exception(exc)
    else:
        fut.set_result(data)


def watch_op(loop: NetLoop, fd: int, fut: Any, op: Callable[..., Any],
             args: tuple[Any, ...]) -> Handle:
    """Register *fd*'s reader: when readable, ``op(*args)`` completes *fut*
    (the other receives: ``recv_into``, ``recvfrom``, ...)."""
    ensure_no_transport(loop, fd)
    handle: Handle = loop._add_reader(fd, _retry_op, fut, op, args)
    return handle


def _retry_op(fut: Any, op: Callable[..., Any],
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


# ----------------------------------------------------------------------
# sending
# ----------------------------------------------------------------------


class _SendAll:
    """Progress of one ``sock_sendall`` that had to wait."""

    __slots__ = ("view", "pos")

    view: memoryview
    #: Bytes of ``view`` sent so far.
    pos: int

    def __init__(self, view: memoryview, pos: int) -> None:
        self.view = view
        self.pos = pos


def sendall_now(loop: NetLoop, sock: Any, data: Any) -> _SendAll | None:
    """The checks, then one send; None if it took everything, else what
    is left, for ``watch_send``."""
    check_socket(loop, sock)
    try:
        n: int = sock.send(data)
    except (BlockingIOError, InterruptedError):
        n = 0
    if type(data) is bytes and n == len(data):
        return None
    view = memoryview(data)
    if view.itemsize != 1 or view.ndim != 1:
        view = view.cast("B")
    if n == len(view):
        return None
    return _SendAll(view, n)


def watch_send(loop: NetLoop, fd: int, sock: Any, progress: _SendAll,
               fut: Any) -> Handle:
    """Register *fd*'s writer: when writable, send more, and complete *fut*
    once all is sent."""
    ensure_no_transport(loop, fd)
    handle: Handle = loop._add_writer(fd, _retry_send, fut, sock, progress)
    return handle


def _retry_send(fut: Any, sock: Any,
                progress: _SendAll) -> None:
    if fut.done():
        return
    view = progress.view
    try:
        n: int = sock.send(view[progress.pos:])
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
