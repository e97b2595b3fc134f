"""Small helpers every networking module shares.

Owns: asyncio's networking constants as treadle uses them, the socket
option helpers (``TCP_NODELAY``, ``SO_REUSEPORT``), the SSL-socket check
and the version flags that select which asyncio release's behaviour a
method follows.
Never: holds state.  Nothing here touches the loop.

Why a module of its own: ``sockets.py``, ``stream.py``, ``connect.py`` and
``server.py`` need the same dozen facts, and asyncio's own copies of them
live in private module globals we must not import piecemeal.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import ssl
import sys
from asyncio import constants as _aio_constants
from typing import TYPE_CHECKING, Any, Final

from .._kernel import _compat
from .._kernel.loop import fileobj_to_fd as fileobj_to_fd
from .._kernel.loop import set_result_unless_cancelled as set_result_unless_cancelled
from .._writeflow import tell_protocol, water_marks

PY312: Final = sys.version_info >= (3, 12)
PY313: Final = sys.version_info >= (3, 13)

#: A transport warns once its protocol keeps writing this many times after
#: the connection was lost (asyncio's LOG_THRESHOLD_FOR_CONNLOST_WRITES).
CONNLOST_WRITES_LOG_THRESHOLD: Final = 5

#: Seconds a listening socket rests after accept() ran out of descriptors
#: or memory (asyncio's ACCEPT_RETRY_DELAY).
ACCEPT_RETRY_DELAY: Final = 1.0

#: Bytes read per recv() by the stream transports (asyncio's max_size).
READ_SIZE: Final = 256 * 1024

#: asyncio's sendfile modes.  The enum is private to asyncio, but
#: ``loop.sendfile()`` callers and asyncio's tests set it on transports, so
#: treadle's transports carry the same values.
SendfileMode: Final = _aio_constants._SendfileMode

SendfileNotAvailableError: Final = asyncio.SendfileNotAvailableError

HAS_IPV6: Final = bool(getattr(socket, "has_ipv6", False))

#: How many buffers one sendmsg() may carry.
try:
    IOV_MAX: Final[int] = max(1, int(os.sysconf("SC_IOV_MAX")))
    HAS_SENDMSG: Final[bool] = hasattr(socket.socket, "sendmsg")
except (AttributeError, ValueError, OSError):  # pragma: no cover - not Linux
    IOV_MAX = 1  # type: ignore[misc]
    HAS_SENDMSG = False  # type: ignore[misc]

#: accept() errors that mean "out of resources": back off instead of spinning.
ACCEPT_RESOURCE_ERRNOS: Final = frozenset(
    (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))


def logger() -> Any:
    """asyncio's logger (see ``_kernel._compat.asyncio_logger``)."""
    return _compat.asyncio_logger()


def check_ssl_socket(sock: Any) -> None:
    if isinstance(sock, ssl.SSLSocket):
        raise TypeError("Socket cannot be of type SSLSocket")


def check_nonblocking(loop: Any, sock: Any) -> None:
    """asyncio checks this in debug mode only (it costs a syscall)."""
    if loop._debug and sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")


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


def bind_error_text(exc: OSError) -> str:
    """The lower-cased error text asyncio puts in its bind errors (3.13
    uses ``str(exc)``, earlier versions ``strerror``)."""
    if PY313:
        return str(exc).lower()
    return (exc.strerror or str(exc)).lower()


class TransportCommon:
    """What the socket transports (stream and datagram) share, as asyncio's
    transports share ``_FlowControlMixin`` and ``_SelectorTransport``:
    write-buffer limits, pausing and resuming the protocol, and closing.
    Put first in a transport's bases; the attributes below are the
    transport's own slots."""

    if not TYPE_CHECKING:   # (mypy would check assignments against it)
        __slots__ = ()

    _loop: Any
    _protocol: Any
    _buffer: Any
    _buffer_size: int
    _high_water: int
    _low_water: int
    _protocol_paused: bool
    _closing: bool
    _reading: bool
    _writing: bool
    _conn_lost: int
    _sock_fd: int
    _sock: Any
    _paused: bool

    def _read_ready(self) -> None:
        raise NotImplementedError  # each transport reads its own way


    def _force_close(self, exc: BaseException | None) -> None:
        raise NotImplementedError  # each transport closes its own way

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        raise NotImplementedError  # each transport closes its own way

    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return (self._low_water, self._high_water)

    def set_write_buffer_limits(self, high: int | None = None,
                                low: int | None = None) -> None:
        self._high_water, self._low_water = water_marks(high, low)
        self._maybe_pause_protocol()

    def _maybe_pause_protocol(self) -> None:
        if self._buffer_size <= self._high_water or self._protocol_paused:
            return
        self._protocol_paused = True
        tell_protocol(self._loop, self, self._protocol, "pause_writing")

    def _maybe_resume_protocol(self) -> None:
        if self._protocol_paused and self._buffer_size <= self._low_water:
            self._protocol_paused = False
            tell_protocol(self._loop, self, self._protocol, "resume_writing")

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
        if not self._buffer:
            self._conn_lost += 1
            if self._writing:
                self._writing = False
                self._loop._remove_writer(self._sock_fd)
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            if self._loop._debug:
                logger().debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                "message": message,
                "exception": exc,
                "transport": self,
                "protocol": self._protocol,
            })
        self._force_close(exc)

    def _start(self, waiter: asyncio.Future[Any] | None) -> None:
        protocol = self._protocol
        try:
            protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._loop.call_exception_handler({
                "message": f"Exception in callback {protocol!r}.connection_made()",
                "exception": exc,
                "transport": self,
                "protocol": protocol,
            })
        if not self._closing and not self._paused and not self._reading:
            self._reading = True
            self._loop._add_reader(self._sock_fd, self._read_ready)
        if waiter is not None and not waiter.cancelled():
            waiter.set_result(None)

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._sock is None:
            info.append("closed")
        elif self._closing:
            info.append("closing")
        info.append(f"fd={self._sock_fd}")
        loop = self._loop
        if loop is not None and not loop.is_closed():
            info.append("read=polling" if self._reading else "read=idle")
            state = "polling" if self._writing else "idle"
            info.append(f"write=<{state}, bufsize={self._buffer_size}>")
        return "<{}>".format(" ".join(info))
