"""The compiled halves of the loop's ``sock_*`` methods.

Owns: the first try of ``sock_recv`` and ``sock_sendall``; the
registration of every ``sock_*`` wait, with the one callback that retries
the operation when the socket is ready (``sock_sendall`` has its own,
which sends the rest); the operations those retry; the checks of a socket
handed to the loop and the check that no transport owns it.
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
* A retry looks the socket's method up again, as asyncio's does.
* A socket a transport owns raises ``RuntimeError`` instead of being
  waited on (``ensure_no_transport``).
"""

from __future__ import annotations

import socket
import ssl
from typing import Any, Callable, Final

from .._kernel.handles import Handle
from .base import NetLoop
from .core import READ_SIZE

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
# (``recv_now`` calls ``sock.recv`` itself rather than through a helper:
# an exception leaving a compiled function gets a traceback entry built
# for it, and the first try of a receive raises BlockingIOError on most
# round trips of a request/response protocol.)


def recv_now(loop: NetLoop, sock: Any, n: Any) -> bytes | None:
    """The checks, then the receive; None if it would block."""
    check_socket(loop, sock)
    try:
        data: bytes = _receive_large(loop, sock, n) if _large(n, sock) else sock.recv(n)
        return data
    except (BlockingIOError, InterruptedError):
        return None


def watch_recv(loop: NetLoop, fd: int, fut: Any, sock: Any, n: Any) -> Handle:
    """Register *fd*'s reader: when readable, receive and complete *fut*."""
    ensure_no_transport(loop, fd)
    handle: Handle = loop._add_reader(fd, _retry_receive, fut, loop, sock, n,
                                      _large(n, sock))
    return handle


def watch_read(loop: NetLoop, fd: int, fut: Any, op: Callable[..., Any],
               args: tuple[Any, ...]) -> Handle:
    """Register *fd*'s reader: when readable, ``op(*args)`` completes *fut*,
    unless it would block again."""
    ensure_no_transport(loop, fd)
    handle: Handle = loop._add_reader(fd, _retry_op, fut, op, args)
    return handle


def watch_write(loop: NetLoop, fd: int, fut: Any, op: Callable[..., Any],
                args: tuple[Any, ...]) -> Handle:
    """The same with *fd*'s writer, when writable."""
    ensure_no_transport(loop, fd)
    handle: Handle = loop._add_writer(fd, _retry_op, fut, op, args)
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


def _retry_op(fut: Any, op: Callable[..., Any], args: tuple[Any, ...]) -> None:
    """The callback of the waits: try again.  (``sock_recv``'s is
    ``_retry_receive``, the same rule with the receive written in: going
    through ``op(*args)`` - an argument tuple and a call by Python's
    convention per retry - was part of 1,600 instructions more per wait
    (callgrind) and 4-7% of a ``sock_*`` echo round trip side by side.
    ``sock_sendall``'s, ``_retry_send``, sends the rest.)"""
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
    finally:
        # Interpreted, the exception's traceback holds this frame, and the
        # frame the future that holds the exception: a cycle that would keep
        # the error alive until the cyclic GC runs (asyncio breaks it in its
        # connect callback only; sockets.SocketMixin._sock_wait says the rest).
        del fut


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
    finally:
        del fut         # (see _retry_op)


# The operations a wait retries.  Each looks the socket's method up when it
# runs, as asyncio does at every attempt (a test may replace a mock's
# method while the call waits).

def recv_into(sock: Any, buf: Any) -> Any:
    return sock.recv_into(buf)


def recvfrom(sock: Any, bufsize: Any) -> Any:
    return sock.recvfrom(bufsize)


def recvfrom_into(sock: Any, buf: Any, nbytes: Any) -> Any:
    return sock.recvfrom_into(buf, nbytes)


def sendto(sock: Any, data: Any, address: Any) -> Any:
    return sock.sendto(data, 0, address)


def accept(sock: Any) -> tuple[Any, Any]:
    """Accept a connection, made non-blocking."""
    conn, address = sock.accept()
    conn.setblocking(False)
    return conn, address


def connected(sock: Any, address: Any) -> None:
    """Raise the error of a connection attempt that was in progress."""
    err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
    if err != 0:
        raise OSError(err, f"Connect call failed {address}")


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


def watch_send(loop: NetLoop, fd: int, fut: Any, sock: Any,
               progress: _SendAll) -> Handle:
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
    else:
        progress.pos += n
        if progress.pos == len(view):
            fut.set_result(None)
    finally:
        del fut         # (see _retry_op)
