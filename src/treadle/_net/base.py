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
from typing import Any, Final

from .._kernel import _compat

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


def fileobj_to_fd(fileobj: Any) -> int:
    """The fd of an int or an object with ``fileno()`` (asyncio's rules
    and messages)."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def bind_error_text(exc: OSError) -> str:
    """The lower-cased error text asyncio puts in its bind errors (3.13
    uses ``str(exc)``, earlier versions ``strerror``)."""
    if PY313:
        return str(exc).lower()
    return (exc.strerror or str(exc)).lower()


def set_result_unless_cancelled(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.cancelled():
        fut.set_result(result)
