"""Transports over simulated sockets: asyncio's Transport and
DatagramTransport contracts, on ``SimSocket``.

Owns: ``SimStreamTransport`` (TCP and Unix streams: reading into a
``Protocol`` or ``BufferedProtocol``, the write buffer and asyncio's flow
control - pause above the high-water mark, resume at the low one -,
half-close, close and abort, connection_made / connection_lost) and
``SimDatagramTransport`` (UDP: ``sendto``, ``datagram_received``,
``error_received``), with asyncio's semantics, messages and exception
types.
Never: reaches past the socket API.  These transports sit on a
``SimSocket`` as asyncio's selector transports sit on a real socket -
``recv`` until ``BlockingIOError``, ``send`` what the kernel takes, buffer
the rest and wait for writability - so a reset, a refused or timed-out
connection reaches the protocol exactly as it would from a real kernel.
TLS is not here: ``ssl=`` wraps a protocol in treadle's ``TLSProtocol``,
which runs on any transport.

A crash makes a transport *vanish*: its host's program is gone, so it
calls nothing more and every method becomes a no-op (``is_closing()`` is
True).
"""

from __future__ import annotations

import asyncio
import collections
import errno
from asyncio import trsock
from typing import Any

from ..._kernel import _compat
from ..._kernel.handles import report_as_handle
from ..._writeflow import (WRITELINES_OWN, lost_write, refuse_writes, tell_protocol,
                           water_marks, writelines_items)
from ._stack import SimSocket

#: asyncio's read size.
READ_SIZE = 256 * 1024

_SendfileMode: Any = getattr(getattr(asyncio, "constants", None), "_SendfileMode", None)


def _logger() -> Any:
    return _compat.asyncio_logger()


def _check_data(data: Any, what: str = "data argument") -> None:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"{what} must be a bytes-like object, not "
                        f"{type(data).__name__!r}")


class _Common:
    """What both transports share (state attributes are the subclasses')."""

    _loop: Any
    _sock: SimSocket
    _protocol: Any
    _extra: dict[str, Any]
    _closing: bool
    _conn_lost: int
    _vanished: bool
    _server: Any

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "socket":
            return trsock.TransportSocket(self._sock)  # type: ignore[arg-type]
        if name in self._extra:
            return self._extra[name]
        if name == "sockname":
            try:
                return self._sock.getsockname()
            except OSError:
                return default
        if name == "peername":
            try:
                return self._sock.getpeername()
            except OSError:
                return default
        return default

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closing

    def _vanish(self) -> None:
        """The host crashed (or the run is over): the socket is gone and no
        data moves any more.  The protocol still hears of it, once: the
        host's tasks are cancelled and run their cleanup, and cleanup that
        waits for ``connection_lost`` (websockets' close, a stream's
        ``wait_closed()``) must not wait forever."""
        told = self._conn_lost
        self._vanished = True
        self._closing = True
        self._conn_lost += 1
        server = self._server
        if server is not None:
            self._server = None
            server._detach(self)
        if not told and self._protocol is not None:
            self._loop.call_soon(self._call_connection_lost, ConnectionAbortedError(
                errno.ECONNABORTED, "the simulated host went down"))

    def _vanished_before_made(self, waiter: asyncio.Future[Any] | None) -> bool:
        """Whether the host went down before ``connection_made`` ran: then
        the protocol hears nothing (never made, never lost) and whoever
        awaits the connection gets the error."""
        if not self._vanished:
            return False
        self._protocol = None
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionAbortedError(
                errno.ECONNABORTED, "the simulated host went down"))
        return True

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        protocol = self._protocol
        if protocol is None:
            return
        try:
            protocol.connection_lost(exc)
        finally:
            if not self._vanished:
                self._sock.close()
            self._protocol = None
            server = self._server
            if server is not None:
                self._server = None
                server._detach(self)


class SimStreamTransport(_Common, asyncio.Transport):
    """A connected stream socket of the simulation, as an asyncio transport."""

    # start_tls() may wrap it; sendfile() goes through the fallback.
    _start_tls_compatible = True

    def __init__(self, loop: Any, sock: SimSocket, protocol: Any,
                 waiter: asyncio.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None, server: Any = None) -> None:
        super().__init__(extra)
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._extra.setdefault("sockname", _name(sock.getsockname))
        self._extra.setdefault("peername", _name(sock.getpeername))
        self._closing = False
        self._conn_lost = 0
        self._vanished = False
        self._paused = False
        self._reading = False
        self._eof = False
        self._buffer: collections.deque[bytes] = collections.deque()
        self._buffer_size = 0
        self._writing = False
        self._protocol_paused = False
        self._high_water, self._low_water = water_marks(None, None)
        self._empty_waiter: asyncio.Future[None] | None = None
        if _SendfileMode is not None:
            self._sendfile_compatible = _SendfileMode.FALLBACK
        self._server = server
        if server is not None:
            server._attach(self)
        sock._transport = self
        loop.call_soon(self._connection_made, waiter)

    def __repr__(self) -> str:
        state = "closed" if self._conn_lost else ("closing" if self._closing else "open")
        return (f"<SimStreamTransport {self._sock.host_name} {state} "
                f"{self._extra.get('sockname')}->{self._extra.get('peername')} "
                f"bufsize={self._buffer_size}>")

    def _connection_made(self, waiter: asyncio.Future[Any] | None) -> None:
        if self._vanished_before_made(waiter):
            return
        protocol = self._protocol
        try:
            protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            report_as_handle(protocol.connection_made, (self,), self._loop, exc)
        if not self._closing and not self._paused:
            self._start_reading()
        if waiter is not None and not waiter.cancelled():
            waiter.set_result(None)

    # -- reading -------------------------------------------------------------

    def _start_reading(self) -> None:
        self._reading = True
        self._sock._watch(True, self._read_ready)

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._sock._watch(True, None)

    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        if self._closing or self._paused:
            return
        self._paused = True
        self._stop_reading()

    def resume_reading(self) -> None:
        if self._closing or not self._paused:
            return
        self._paused = False
        self._start_reading()

    def _read_ready(self) -> None:
        if self._conn_lost or self._vanished:
            return
        protocol = self._protocol
        if isinstance(protocol, asyncio.BufferedProtocol):
            self._read_buffered(protocol)
            return
        try:
            data = self._sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not data:
            self._read_eof()
            return
        try:
            protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _read_buffered(self, protocol: Any) -> None:
        try:
            buf = protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError("get_buffer() returned an empty buffer")
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.get_buffer() call failed.")
            return
        try:
            n = self._sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not n:
            self._read_eof()
            return
        try:
            protocol.buffer_updated(n)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.buffer_updated() call failed.")

    def _read_eof(self) -> None:
        if self._loop.get_debug():
            _logger().debug("%r received EOF", self)
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if keep_open:
            # The protocol keeps the write side open: nothing more to read.
            self._stop_reading()
        else:
            self.close()

    # -- writing -------------------------------------------------------------

    def write(self, data: Any) -> None:
        _check_data(data)
        refuse_writes(self._eof, self._empty_waiter is not None, "write")
        if not data:
            return
        if self._conn_lost:
            self._drop_write()
            return
        if not self._buffer:
            try:
                n = self._sock.send(data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._fatal_error(exc, "Fatal write error on socket transport")
                return
            if n == len(data):
                return
            data = memoryview(data).cast("B")[n:]
            self._writing = True
            self._sock._watch(False, self._write_ready)
        self._buffer.append(bytes(data))
        self._buffer_size += len(data)
        self._maybe_pause_protocol()

    def writelines(self, list_of_data: Any) -> None:
        # asyncio's checks, in its order (as the real transport core's
        # writelines()); on 3.11 write() makes them, after the join.
        if WRITELINES_OWN:
            refuse_writes(self._eof, self._empty_waiter is not None, "writelines")
            if not list_of_data:
                return
            if self._conn_lost:
                self._drop_write()
                return
        self.write(b"".join(writelines_items(list_of_data)))

    def _drop_write(self) -> None:
        self._conn_lost = lost_write(self._conn_lost, "socket.send() raised exception.")

    def _write_ready(self) -> None:
        if self._conn_lost or self._vanished:
            return
        while self._buffer:
            chunk = self._buffer[0]
            try:
                n = self._sock.send(chunk)
            except (BlockingIOError, InterruptedError):
                break
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._stop_writing()
                self._buffer.clear()
                self._buffer_size = 0
                self._fatal_error(exc, "Fatal write error on socket transport")
                return
            self._buffer_size -= n
            if n == len(chunk):
                self._buffer.popleft()
            else:
                self._buffer[0] = chunk[n:]
                break
        self._maybe_resume_protocol()
        if self._buffer:
            return
        self._stop_writing()
        if self._empty_waiter is not None:
            self._empty_waiter.set_result(None)
        if self._closing:
            self._call_connection_lost(None)
        elif self._eof:
            self._sock.shutdown(1)

    def _stop_writing(self) -> None:
        if self._writing:
            self._writing = False
            self._sock._watch(False, None)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._eof:
            return
        self._eof = True
        if not self._buffer:
            try:
                self._sock.shutdown(1)
            except OSError:
                pass

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

    # sendfile()'s fallback waits for the buffer to empty through these.
    def _make_empty_waiter(self) -> asyncio.Future[None]:
        if self._empty_waiter is not None:
            raise RuntimeError("Empty waiter is already set")
        self._empty_waiter = self._loop.create_future()
        if not self._buffer:
            self._empty_waiter.set_result(None)
        return self._empty_waiter

    def _reset_empty_waiter(self) -> None:
        self._empty_waiter = None

    # -- closing -------------------------------------------------------------

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer:
            self._conn_lost += 1
            self._stop_writing()
            self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on transport") -> None:
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                _logger().debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                "message": message, "exception": exc,
                "transport": self, "protocol": self._protocol,
            })
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
            self._stop_writing()
        if self._empty_waiter is not None and not self._empty_waiter.done():
            if exc is None:
                self._empty_waiter.set_result(None)
            else:
                self._empty_waiter.set_exception(exc)
        if not self._closing:
            self._closing = True
            self._stop_reading()
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)


class SimDatagramTransport(_Common, asyncio.DatagramTransport):
    """A UDP socket of the simulation, as an asyncio datagram transport."""

    max_size = 256 * 1024

    def __init__(self, loop: Any, sock: SimSocket, protocol: Any, address: Any = None,
                 waiter: asyncio.Future[Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self._loop = loop
        self._sock = sock
        self._protocol = protocol
        self._address = address
        self._extra.setdefault("sockname", _name(sock.getsockname))
        if address is not None:
            self._extra.setdefault("peername", address)
        self._closing = False
        self._conn_lost = 0
        self._vanished = False
        self._server = None
        sock._transport = self
        loop.call_soon(self._connection_made, waiter)

    def __repr__(self) -> str:
        return f"<SimDatagramTransport {self._sock.host_name} {self._extra.get('sockname')}>"

    def _connection_made(self, waiter: asyncio.Future[Any] | None) -> None:
        if self._vanished_before_made(waiter):
            return
        try:
            self._protocol.connection_made(self)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            report_as_handle(self._protocol.connection_made, (self,), self._loop, exc)
        if not self._closing:
            self._sock._watch(True, self._read_ready)
        if waiter is not None and not waiter.cancelled():
            waiter.set_result(None)

    def _read_ready(self) -> None:
        if self._conn_lost or self._vanished:
            return
        try:
            data, addr = self._sock.recvfrom(self.max_size)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._protocol.error_received(exc)
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on datagram transport")
            return
        self._protocol.datagram_received(data, addr)

    def sendto(self, data: Any, addr: Any = None) -> None:
        _check_data(data)
        if self._address is not None:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = self._address
        if self._conn_lost and self._address:
            self._conn_lost = lost_write(self._conn_lost, "socket.send() raised exception.")
            return
        if self._closing or self._vanished:
            return
        if addr is None:
            raise ValueError("Invalid address: must be None or a destination address "
                             "for an unconnected datagram endpoint")
        try:
            if self._address is not None:
                self._sock.send(data)
            else:
                self._sock.sendto(data, addr)
        except OSError as exc:
            self._protocol.error_received(exc)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal write error on datagram transport")

    def get_write_buffer_size(self) -> int:
        return 0

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return water_marks(None, None)[::-1]

    def set_write_buffer_limits(self, high: int | None = None,
                                low: int | None = None) -> None:
        water_marks(high, low)

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._sock._watch(True, None)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc: BaseException,
                     message: str = "Fatal error on transport") -> None:
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler({
                "message": message, "exception": exc,
                "transport": self, "protocol": self._protocol,
            })
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._conn_lost:
            return
        self._closing = True
        self._sock._watch(True, None)
        self._conn_lost += 1
        self._loop.call_soon(self._call_connection_lost, exc)


def _name(getter: Any) -> Any:
    try:
        return getter()
    except OSError:
        return None
