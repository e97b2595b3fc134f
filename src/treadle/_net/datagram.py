"""The datagram transport: one UDP (or Unix datagram) socket, as the
``asyncio.DatagramTransport`` the program and its protocol hold.

Owns: the transport object and its public methods, forwarded to the
compiled ``DatagramCore`` (``core.py``), which has asyncio's semantics:
``sendto`` sends at once when nothing is queued and queues otherwise (an
immutable copy of each datagram with its address), socket errors go to
``protocol.error_received`` and do not close the transport, flow control
counts queued datagrams, and close/abort end with ``connection_lost``.
Never: coalesces datagrams (each ``sendto`` is one datagram, one syscall),
resolves names or creates sockets (``connect.py`` does).
"""

from __future__ import annotations

import asyncio
import socket
import weakref
from typing import Any

from . import base
from .core import READ_SIZE, DatagramCore


class DatagramTransport(base.TransportBase, asyncio.DatagramTransport,
                        asyncio.Transport):
    """A datagram socket as an ``asyncio.DatagramTransport`` (and, like
    asyncio's own, an ``asyncio.Transport``: code checks for either)."""

    __slots__ = (
        "_core", "__weakref__",
        # A __dict__ besides the slots: asyncio's transports have one, and
        # programs and tests set attributes on them or patch their methods
        # per instance (mock.patch.object(transport, "write", ...)).
        "__dict__",
    )

    max_size = READ_SIZE

    _core: DatagramCore

    def __init__(self, loop: base.NetLoop, sock: socket.socket, protocol: Any,
                 address: Any = None, waiter: asyncio.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self._init_extra(sock)
        core = self._core = DatagramCore(self, loop, sock, protocol, address,
                                         bool(self._extra["peername"]), self.max_size)
        self._bind_to_core("sendto", DatagramTransport.sendto, core.sendto)
        loop._transports[core._sock_fd] = weakref.ref(self)
        loop.call_soon(core._start, waiter)

    def sendto(self, data: Any, addr: Any = None) -> None:
        self._core.sendto(data, addr)

    @property
    def _address(self) -> Any:
        return self._core._address
