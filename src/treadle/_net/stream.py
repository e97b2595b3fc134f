"""The stream transport: one connected TCP or Unix stream socket, as the
``asyncio.Transport`` the program and its protocol hold.

Owns: the transport object itself (an ``asyncio.Transport`` instance with
an instance ``__dict__``, weak-referenceable, as asyncio's are) and its
public methods, each forwarded to the compiled ``StreamCore``
(``core.py``), which does the work: reading into the protocol, the write
buffer and its flow control, half-close, close and abort, with asyncio's
semantics, messages and exception types.  How writes leave (at once, or
together at the end of the loop turn) is ``_writeflow.py``'s rule.
Never: resolves names, accepts connections or knows TLS (a TLS protocol is
just a buffered protocol to it); never calls its protocol from inside a
loop method other than its own I/O callbacks.
"""

from __future__ import annotations

import asyncio
import socket
import weakref
from typing import Any

from . import base
from .core import READ_SIZE, StreamCore


class SocketTransport(base.TransportBase, asyncio.Transport):
    """A connected stream socket (TCP or Unix) as an ``asyncio.Transport``."""

    __slots__ = (
        "_core", "_sendfile_compatible", "__weakref__",
        # A __dict__ besides the slots: asyncio's transports have one, and
        # programs and tests set attributes on them or patch their methods
        # per instance (mock.patch.object(transport, "write", ...)).
        "__dict__",
    )

    #: Bytes asked for per recv() (asyncio's value).
    max_size = READ_SIZE
    _start_tls_compatible = True

    _core: StreamCore
    _sendfile_compatible: Any

    def __init__(self, loop: base.NetLoop, sock: socket.socket, protocol: Any,
                 waiter: asyncio.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None,
                 server: Any = None) -> None:
        super().__init__(extra)
        self._init_extra(sock)
        core = self._core = StreamCore(self, loop, sock, protocol, self.max_size)
        self._bind_to_core("write", SocketTransport.write, core.write)
        self._sendfile_compatible = base.SendfileMode.TRY_NATIVE
        if server is not None:
            core._server = server
            server._attach(self)
        loop._transports[core._sock_fd] = weakref.ref(self)
        base.set_nodelay(sock)
        loop.call_soon(core._start, waiter, context=core._context)

    # Everything else is forwarded to the core (base.TransportBase has the
    # methods every socket transport shares).

    def write(self, data: Any) -> None:
        self._core.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._core.writelines(list_of_data)

    def write_eof(self) -> None:
        self._core.write_eof()

    def can_write_eof(self) -> bool:
        return True

    @property
    def _empty_waiter(self) -> asyncio.Future[Any] | None:
        return self._core._empty_waiter

    def _make_empty_waiter(self) -> asyncio.Future[Any]:
        return self._core.make_empty_waiter()

    def _reset_empty_waiter(self) -> None:
        self._core.reset_empty_waiter()
