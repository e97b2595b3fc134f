"""The datagram transport: one UDP (or Unix datagram) socket.

Owns: ``asyncio.DatagramTransport`` for a socket, with asyncio's
semantics: ``sendto`` sends at once when nothing is queued and queues
otherwise (an immutable copy of each datagram with its address), socket
errors go to ``protocol.error_received`` and do not close the transport,
flow control counts queued datagrams, and close/abort end with
``connection_lost``.
Never: coalesces datagrams (each ``sendto`` is one datagram, one syscall),
resolves names or creates sockets (``connect.py`` does).
"""

from __future__ import annotations

import asyncio
import socket
import warnings
from asyncio import trsock
from collections import deque
from typing import Any

from .._writeflow import DEFAULT_HIGH_WATER
from . import base

_TransportSocket = trsock.TransportSocket

#: Bytes counted per queued datagram on top of its payload (3.13's rule,
#: so that empty datagrams count).
_HEADER = 8 if base.PY313 else 0


class DatagramTransport(base.TransportCommon, asyncio.DatagramTransport,
                        asyncio.Transport):
    """A datagram socket as an ``asyncio.DatagramTransport`` (and, like
    asyncio's own, an ``asyncio.Transport``: code checks for either)."""

    __slots__ = (
        "_loop", "_sock", "_sock_fd", "_protocol", "_protocol_connected",
        "_address", "_buffer", "_buffer_size", "_conn_lost", "_closing",
        "_paused", "_reading", "_writing", "_protocol_paused", "_high_water",
        "_low_water", "_connected", "_recv_view", "__weakref__",
        # A __dict__ besides the slots: asyncio's transports have one, and
        # programs and tests set attributes on them or patch their methods
        # per instance (mock.patch.object(transport, "write", ...)).
        "__dict__",
    )

    max_size = base.READ_SIZE

    _extra: dict[str, Any]
    _loop: Any
    _sock: socket.socket | None
    _sock_fd: int
    _protocol: Any
    _protocol_connected: bool
    _address: Any
    _buffer: deque[tuple[bytes, Any]]
    _buffer_size: int
    _conn_lost: int
    _closing: bool
    _paused: bool
    _reading: bool
    _writing: bool
    _protocol_paused: bool
    _high_water: int
    _low_water: int
    _connected: bool
    _recv_view: memoryview | None

    def __init__(self, loop: Any, sock: socket.socket, protocol: Any,
                 address: Any = None, waiter: asyncio.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self._sock = None
        extra_map = self._extra
        extra_map["socket"] = _TransportSocket(sock)
        try:
            extra_map["sockname"] = sock.getsockname()
        except OSError:
            extra_map["sockname"] = None
        if "peername" not in extra_map:
            try:
                extra_map["peername"] = sock.getpeername()
            except OSError:
                extra_map["peername"] = None
        self._connected = bool(extra_map["peername"])
        self._loop = loop
        self._sock = sock
        self._sock_fd = sock.fileno()
        self._protocol = protocol
        self._protocol_connected = True
        self._address = address
        self._buffer = deque()
        self._buffer_size = 0
        self._conn_lost = 0
        self._closing = False
        self._paused = False
        self._reading = False
        self._writing = False
        self._protocol_paused = False
        self._high_water, self._low_water = DEFAULT_HIGH_WATER, DEFAULT_HIGH_WATER // 4
        # A socket subclass may override recvfrom(): call it, as asyncio does.
        self._recv_view = loop._recv_view if type(sock) is socket.socket else None
        loop._transports[self._sock_fd] = self
        loop.call_soon(self._start, waiter)

    def __del__(self) -> None:
        # (no default-argument binding of warnings.warn: mypyc mis-compiles
        # __del__ with extra parameters)
        try:
            sock = self._sock
        except AttributeError:
            return
        if sock is not None:
            warnings.warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            sock.close()
            self._sock = None

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol
        self._protocol_connected = True

    def get_protocol(self) -> Any:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def is_reading(self) -> bool:
        return not self._closing and not self._paused

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        if self._reading:
            self._reading = False
            self._loop._remove_reader(self._sock_fd)
        if self._loop._debug:
            base.logger().debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        if not self._reading:
            self._reading = True
            self._loop._add_reader(self._sock_fd, self._read_ready)
        if self._loop._debug:
            base.logger().debug("%r resumes reading", self)

    # ------------------------------------------------------------------
    # I/O
    # ------------------------------------------------------------------

    def _read_ready(self) -> None:
        if self._conn_lost:
            return
        view = self._recv_view
        try:
            if view is not None:
                n, addr = self._sock.recvfrom_into(view, self.max_size)  # type: ignore[union-attr]
                data = view[:n].tobytes()
            else:
                data, addr = self._sock.recvfrom(self.max_size)  # type: ignore[union-attr]
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on datagram transport")
        else:
            self._protocol.datagram_received(data, addr)

    def sendto(self, data: Any, addr: Any = None) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if not base.PY313 and not data:
            return      # before 3.13 asyncio drops empty datagrams
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(
                    f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost and self._address:
            if self._conn_lost >= base.CONNLOST_WRITES_LOG_THRESHOLD:
                base.logger().warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not self._buffer:
            try:
                if self._connected:
                    self._sock.send(data)  # type: ignore[union-attr]
                else:
                    self._sock.sendto(data, addr)  # type: ignore[union-attr]
                return
            except (BlockingIOError, InterruptedError):
                self._writing = True
                self._loop._add_writer(self._sock_fd, self._sendto_ready)
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        # Queue an immutable copy: the caller may reuse its buffer.
        payload = bytes(data)
        self._buffer.append((payload, addr))
        self._buffer_size += len(payload) + _HEADER
        self._maybe_pause_protocol()

    def _sendto_ready(self) -> None:
        buffer = self._buffer
        while buffer:
            data, addr = buffer.popleft()
            self._buffer_size -= len(data) + _HEADER
            try:
                if self._connected:
                    self._sock.send(data)  # type: ignore[union-attr]
                else:
                    self._sock.sendto(data, addr)  # type: ignore[union-attr]
            except (BlockingIOError, InterruptedError):
                buffer.appendleft((data, addr))
                self._buffer_size += len(data) + _HEADER
                break
            except OSError as exc:
                self._protocol.error_received(exc)
                return
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on datagram transport")
                return
        self._maybe_resume_protocol()
        if not buffer:
            if self._writing:
                self._writing = False
                self._loop._remove_writer(self._sock_fd)
            if self._closing:
                self._call_connection_lost(None)

    # ------------------------------------------------------------------
    # closing (flow control, close(), abort(): base.TransportCommon)
    # ------------------------------------------------------------------

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        loop = self._loop
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
        if self._writing:
            self._writing = False
            loop._remove_writer(self._sock_fd)
        self._closing = True
        if self._reading:
            self._reading = False
            loop._remove_reader(self._sock_fd)
        self._conn_lost += 1
        loop.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            if self._protocol_connected:
                self._protocol.connection_lost(exc)
        finally:
            sock = self._sock
            if sock is not None:
                sock.close()
            self._sock = None
            self._protocol = None
            self._loop = None
