"""What every networking module shares.

Owns: asyncio's networking constants as treadle uses them, the socket
option helpers (``TCP_NODELAY``, ``SO_REUSEPORT``), the SSL-socket check,
the version flags that select which asyncio release's behaviour a method
follows, the loop type the transports are written against (``NetLoop``)
and the base of the socket transports (``TransportBase``: the
``asyncio.Transport`` surface, forwarded to the compiled core).
Never: holds state of its own.  Nothing here touches the loop.

Why a module of its own: ``sockets.py``, ``stream.py``, ``connect.py`` and
``server.py`` need the same dozen facts, and asyncio's own copies of them
live in private module globals we must not import piecemeal.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat
import sys
import warnings
import weakref
from asyncio import constants as _aio_constants
from asyncio import trsock
from typing import TYPE_CHECKING, Any, Callable, Final, Protocol, TypeVar

from .._kernel import _compat
from .._kernel.contract import KernelServices
from .core import TransportCore

T = TypeVar("T")

PY312: Final = sys.version_info >= (3, 12)
PY313: Final = sys.version_info >= (3, 13)

#: Seconds a listening socket rests after accept() ran out of descriptors
#: or memory (asyncio's ACCEPT_RETRY_DELAY).
ACCEPT_RETRY_DELAY: Final = 1.0

#: asyncio's sendfile modes.  The enum is private to asyncio, but
#: ``loop.sendfile()`` callers and asyncio's tests set it on transports, so
#: treadle's transports carry the same values.
SendfileMode: Final = _aio_constants._SendfileMode

SendfileNotAvailableError: Final = asyncio.SendfileNotAvailableError

HAS_IPV6: Final = bool(getattr(socket, "has_ipv6", False))

#: accept() errors that mean "out of resources": back off instead of spinning.
ACCEPT_RESOURCE_ERRNOS: Final = frozenset(
    (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


def logger() -> Any:
    """asyncio's logger (see ``_kernel._compat.asyncio_logger``)."""
    return _compat.asyncio_logger()


def set_nodelay(sock: socket.socket) -> None:
    """Small writes go out at once (Nagle off) on TCP, as in asyncio."""
    if (sock.family in (socket.AF_INET, socket.AF_INET6)
            and sock.type == socket.SOCK_STREAM
            and sock.proto == socket.IPPROTO_TCP):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def set_reuseport(sock: socket.socket) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        raise ValueError("reuse_port not supported by socket module")
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    except OSError:
        raise ValueError("reuse_port not supported by socket module, "
                         "SO_REUSEPORT defined but not implemented.") from None


async def off_loop_thread(loop: Any, fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in the loop's default executor, for a filesystem call
    that can block on the disk (asyncio makes these few on the loop thread,
    and tools that flag blocking calls in async code allow that only from
    asyncio's own files); on this thread when the executor is shut down,
    as asyncio does."""
    try:
        future = loop.run_in_executor(None, fn, *args)
    except RuntimeError:
        return fn(*args)
    return await future  # type: ignore[no-any-return]


def remove_stale_unix_socket(path: str) -> None:
    """Remove a socket file an earlier run left at *path* (it would make
    ``bind`` fail); anything else there is left alone, for ``bind`` to
    report.  Abstract names (leading NUL) have no file."""
    if path[0] in (0, "\x00"):
        return
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        logger().error("Unable to check or remove stale UNIX socket %r: %r", path, err)


def bind_error_text(exc: OSError) -> str:
    """The lower-cased error text asyncio puts in its bind errors (3.13
    uses ``str(exc)``, earlier versions ``strerror``)."""
    if PY313:
        return str(exc).lower()
    return (exc.strerror or str(exc)).lower()


class NetLoop(KernelServices, Protocol):
    """What the socket transports use of their loop: the kernel's contract
    plus the networking layer's own registry and read buffer
    (``sockets.py``)."""

    _transports: dict[int, weakref.ref[Any]]

    @property
    def _recv_view(self) -> memoryview: ...


class TransportBase:
    """What every socket transport (stream and datagram) shows the program,
    forwarded to its compiled core (``core.TransportCore``): the protocol,
    reading on and off, write-buffer limits, close and abort, and the
    private names asyncio's own code reads on a transport.  Put first in a
    transport's bases; ``_core`` is the transport's own slot."""

    if not TYPE_CHECKING:   # (mypy would check assignments against it)
        __slots__ = ()

    _core: TransportCore
    _extra: dict[str, Any]

    def _init_extra(self, sock: socket.socket) -> None:
        extra = self._extra
        extra["socket"] = trsock.TransportSocket(sock)
        try:
            extra["sockname"] = sock.getsockname()
        except OSError:
            extra["sockname"] = None
        if "peername" not in extra:
            try:
                extra["peername"] = sock.getpeername()
            except OSError:
                extra["peername"] = None

    def _bind_to_core(self, name: str, forwarder: Callable[..., Any],
                      method: Callable[..., Any]) -> None:
        """Make the core's *method* this transport's attribute *name*,
        unless a subclass overrides *forwarder* (the class's own method,
        which forwards to the core).

        For the one call every message makes (``write``, ``sendto``): found
        in the instance ``__dict__``, ``transport.write`` is the core's
        method itself, with no forwarding frame in between (interpreted,
        that frame costs about as much as the rest of a buffered write).
        The class keeps its method for subclasses and introspection, and
        patching the instance (``mock.patch.object``) still works."""
        if getattr(type(self), name) is forwarder:
            self.__dict__[name] = method

    def __del__(self) -> None:
        try:
            core = self._core
        except AttributeError:      # __init__ failed before the core
            return
        if core._sock is not None:
            # Warned first, as asyncio does: the repr shows the socket open.
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            core.release_unclosed()

    def __repr__(self) -> str:
        try:
            info = self._core.describe()
        except AttributeError:
            info = ["uninitialized"]
        return "<{}>".format(" ".join([type(self).__name__, *info]))

    # -- the protocol --------------------------------------------------------

    def set_protocol(self, protocol: Any) -> None:
        self._core.set_protocol(protocol)

    def get_protocol(self) -> Any:
        return self._core._protocol

    def is_closing(self) -> bool:
        return self._core._closing

    # -- reading -------------------------------------------------------------

    def is_reading(self) -> bool:
        return self._core.is_reading()

    def pause_reading(self) -> None:
        self._core.pause_reading()

    def resume_reading(self) -> None:
        self._core.resume_reading()

    # -- flow control --------------------------------------------------------

    def get_write_buffer_size(self) -> int:
        return self._core._buffer.size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._core.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None,
                                low: int | None = None) -> None:
        self._core.set_write_buffer_limits(high, low)

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        self._core.close()

    def abort(self) -> None:
        self._core._force_close(None)

    def _force_close(self, exc: BaseException | None) -> None:
        # asyncio's SSLProtocol (and treadle's TLS) drop the connection
        # through this, with the exception connection_lost() reports.
        self._core._force_close(exc)

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on transport") -> None:
        self._core._fatal_error(exc, message)

    # -- what asyncio's code reads on its transports ---------------------------

    @property
    def _loop(self) -> Any:
        return self._core._loop

    @property
    def _sock(self) -> socket.socket | None:
        return self._core._sock

    @property
    def _sock_fd(self) -> int:
        return self._core._sock_fd

    @property
    def _protocol(self) -> Any:
        return self._core._protocol

    @property
    def _protocol_paused(self) -> bool:
        return self._core._buffer.paused

    @property
    def _closing(self) -> bool:
        return self._core._closing

    @property
    def _paused(self) -> bool:
        # (reading paused; 3.15's test_server_context waits on it)
        return self._core._paused

    @property
    def _conn_lost(self) -> int:
        return self._core._conn_lost
