"""``SimEventLoop``: the seam that sends a simulated host's networking to the
simulation.

Owns: the one place where a loop networking call is routed.  Two ways:

* Seams.  ``create_connection``, ``create_unix_connection``,
  ``connect_accepted_socket``, ``create_server``, ``create_unix_server``
  and ``create_datagram_endpoint`` are the real loop's, unchanged (every
  argument check, Happy Eyeballs, the errors): they reach the simulation
  through the methods they are built on, overridden here -
  ``getaddrinfo``/``getnameinfo`` (the simulation's DNS), ``_open_socket``
  (a simulated socket on a host), ``sock_connect``, the transport factories
  (``_make_socket_transport``, ``_make_wire_transport`` under TLS,
  ``_make_datagram_transport``), ``_start_serving``/``_stop_serving``, and
  the two that touch a Unix server's socket file in the real filesystem
  (``_remove_stale_unix_socket``, ``_unix_socket_inode``: a host's socket
  files are the simulation's); a socket passed in is turned into a
  simulated one first.  One rule, one place: the simulation cannot drift
  from the loop it stands in for.
* Overrides with the same signature, where the real method touches the
  machine beyond its sockets: the ``sock_*`` methods and
  ``add_reader``/``add_writer`` (simulated sockets have no real fd).

Each asks ``current_incarnation()`` (one context-variable read) whether
the caller runs on a simulated host, and if not calls the real method
unchanged.  ``start_tls``, ``sendfile`` and the streams API need no
routing: they work on any transport, so they work on the simulated ones.
``run_in_executor`` is made deterministic for the whole loop
(``_nondet.py``).
Never: changes the real loop.  A program's loop is a ``treadle.EventLoop``
and pays nothing for the simulation; only a loop made for a simulation
(``SimNetwork.run()``, the ``treadle_net`` fixture) is a ``SimEventLoop``.

Semantics follow asyncio's: the same argument checks in the same order,
the same exception types and messages, the same ordering of protocol
callbacks.  A real ``socket.socket`` passed to any of these on a host is
refused at once (``SimulationError``): its I/O would leave the
simulation.
"""

from __future__ import annotations

import asyncio
import contextvars
import errno
import os
import socket
import stat
from typing import TYPE_CHECKING, Any, Callable

from ..._loop import EventLoop
from ..._net.tls import TLSProtocol
from ..._net.base import PY313
from ..._net.server import Server
from ._host import Incarnation, current_incarnation
from ._stack import SimSocket, SimulationError
from ._transports import SimDatagramTransport, SimStreamTransport

if TYPE_CHECKING:
    from ._network import SimNetwork

_copy_context = contextvars.copy_context


def _real_socket_error(sock: Any, incarnation: Incarnation) -> SimulationError:
    return SimulationError(
        f"{sock!r} is a real socket that is already bound or connected: code "
        f"running on simulated host {incarnation.host.name!r} can use only sockets "
        f"the simulation makes (loop.create_connection/create_server/"
        f"create_datagram_endpoint, host.socket(), or a fresh socket.socket() that "
        f"it hands to the loop before binding or connecting it); real I/O would "
        f"leave the simulation")


def _adoptable(sock: Any) -> bool:
    """A real socket the program just made, with no address yet: the
    simulation can take it over (aiohttp's Happy Eyeballs makes its sockets
    itself and hands them to ``sock_connect``)."""
    if not isinstance(sock, socket.socket) or sock.fileno() < 0:
        return False
    if sock.family not in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
        return False
    if sock.type not in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        return False
    try:
        name = sock.getsockname()
    except OSError:
        return False
    if sock.family == socket.AF_UNIX:
        if name not in ("", b"", None):
            return False
    elif name[1] != 0:
        return False
    try:
        sock.getpeername()
    except OSError:
        return True
    return False


class SimEventLoop(EventLoop):
    """A treadle loop whose simulated hosts use the simulated network."""

    #: The network this loop runs (set by ``SimNetwork.attach``).
    _simnet: SimNetwork | None = None

    # -- routing helpers -------------------------------------------------------

    @property
    def _net(self) -> SimNetwork:
        net = self._simnet
        if net is None:
            raise RuntimeError("this loop runs no simulated network")
        return net

    def _on_host(self) -> Incarnation | None:
        incarnation = current_incarnation()
        if incarnation is None or self._simnet is None:
            return None
        if not incarnation.alive:
            raise ConnectionAbortedError(
                errno.ECONNABORTED, f"host {incarnation.host.name!r} has crashed")
        return incarnation

    def _sim_sock(self, sock: Any) -> SimSocket | None:
        """*sock* as a simulated socket: a ``SimSocket``, or a fresh real
        socket that code on a host hands to the loop (adopted: the
        simulation stands in for it from then on, and closes it with its
        stand-in).  A real socket with an address on a host is refused."""
        if isinstance(sock, SimSocket):
            return sock
        net = self._simnet
        if net is None or sock is None:
            return None
        shadow = net._shadows.get(sock)
        if shadow is not None:
            return shadow
        incarnation = current_incarnation()
        if incarnation is None:
            return None
        if not _adoptable(sock):
            raise _real_socket_error(sock, incarnation)
        return net._adopt(incarnation, sock)

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        # A crashed host's program is gone: errors its leftover callbacks
        # and cancelled tasks raise (asyncio 3.11's streams log one for every
        # cancelled handler task) are not the living program's.
        inc = _incarnation_of(context)
        if inc is not None and not inc.alive:
            net = self._simnet
            if net is not None:
                net.log_event(inc.host.name, f"error after crash not reported: "
                                             f"{context.get('message')}")
            return
        super().call_exception_handler(context)

    # -- DNS -----------------------------------------------------------------------

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0,
                          type: int = 0, proto: int = 0, flags: int = 0) -> list[Any]:
        inc = self._on_host()
        if inc is None:
            return await super().getaddrinfo(host, port, family=family, type=type,
                                             proto=proto, flags=flags)
        return await self._net._resolve(inc, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr: Any, flags: int = 0) -> tuple[str, str]:
        inc = self._on_host()
        if inc is None:
            return await super().getnameinfo(sockaddr, flags)
        await self._net._dns_wait(inc, None)
        return self._net.dns.getnameinfo(sockaddr, flags)

    # -- sock_* ----------------------------------------------------------------------

    async def _wait(self, sock: SimSocket, readable: bool) -> None:
        fut = self.create_future()
        sock._watch(readable, _wake, fut)
        try:
            await fut
        finally:
            if not sock._dead and sock._state != "closed":
                sock._watch(readable, None)

    async def _retry(self, sock: SimSocket, readable: bool, op: Callable[..., Any],
                     *args: Any) -> Any:
        while True:
            try:
                return op(*args)
            except (BlockingIOError, InterruptedError):
                pass
            await self._wait(sock, readable)

    async def sock_recv(self, sock: Any, n: int) -> bytes:
        s = self._sim_sock(sock)
        if s is None:
            return await super().sock_recv(sock, n)
        return await self._retry(s, True, s.recv, n)  # type: ignore[no-any-return]

    async def sock_recv_into(self, sock: Any, buf: Any) -> int:
        s = self._sim_sock(sock)
        if s is None:
            return await super().sock_recv_into(sock, buf)
        return await self._retry(s, True, s.recv_into, buf)  # type: ignore[no-any-return]

    async def sock_recvfrom(self, sock: Any, bufsize: int) -> tuple[bytes, Any]:
        s = self._sim_sock(sock)
        if s is None:
            return await super().sock_recvfrom(sock, bufsize)
        return await self._retry(s, True, s.recvfrom, bufsize)  # type: ignore[no-any-return]

    async def sock_recvfrom_into(self, sock: Any, buf: Any,
                                 nbytes: int = 0) -> tuple[int, Any]:
        s = self._sim_sock(sock)
        if s is None:
            return await super().sock_recvfrom_into(sock, buf, nbytes)
        return await self._retry(s, True, s.recvfrom_into, buf, nbytes)  # type: ignore[no-any-return]

    async def sock_sendall(self, sock: Any, data: Any) -> None:
        s = self._sim_sock(sock)
        if s is None:
            return await super().sock_sendall(sock, data)
        view = memoryview(data).cast("B")
        pos = 0
        while pos < len(view):
            try:
                pos += s.send(view[pos:])
                continue
            except (BlockingIOError, InterruptedError):
                pass
            await self._wait(s, False)

    async def sock_sendto(self, sock: Any, data: Any, address: Any) -> int:
        s = self._sim_sock(sock)
        if s is None:
            return await super().sock_sendto(sock, data, address)
        return s.sendto(data, address)

    async def sock_connect(self, sock: Any, address: Any) -> None:
        s = self._sim_sock(sock)
        if s is None:
            return await super().sock_connect(sock, address)
        if s._family != socket.AF_UNIX:
            infos = await self._net._resolve(
                current_incarnation(), address[0], address[1], s._family, s._type,
                s._proto, 0)
            address = infos[0][4]
        try:
            s.connect(address)
            return
        except (BlockingIOError, InterruptedError):
            pass
        while True:
            await self._wait(s, False)
            if s._state == "connecting":
                continue
            err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if err:
                raise OSError(err, f"Connect call failed {address}")
            return

    async def sock_accept(self, sock: Any) -> tuple[Any, Any]:
        s = self._sim_sock(sock)
        if s is None:
            return await super().sock_accept(sock)
        conn, addr = await self._retry(s, True, s.accept)
        conn.setblocking(False)
        return conn, addr

    async def sock_sendfile(self, sock: Any, file: Any, offset: int = 0,
                            count: int | None = None, *,
                            fallback: bool | None = True) -> int:
        s = self._sim_sock(sock)
        if s is None:
            return await super().sock_sendfile(sock, file, offset, count,
                                               fallback=fallback)
        if not fallback:
            raise asyncio.SendfileNotAvailableError(
                "a simulated socket has no native sendfile")
        if offset:
            file.seek(offset)
        total = 0
        while count is None or total < count:
            size = 256 * 1024 if count is None else min(256 * 1024, count - total)
            data = file.read(size)
            if not data:
                break
            await self.sock_sendall(s, data)
            total += len(data)
        return total

    # -- fd callbacks on simulated sockets ----------------------------------------------

    def add_reader(self, fd: Any, callback: Callable[..., object],  # type: ignore[override]
                   *args: Any) -> None:
        s = self._sim_fd(fd)
        if s is None:
            return super().add_reader(fd, callback, *args)
        s._watch(True, callback, *args)

    def add_writer(self, fd: Any, callback: Callable[..., object],  # type: ignore[override]
                   *args: Any) -> None:
        s = self._sim_fd(fd)
        if s is None:
            return super().add_writer(fd, callback, *args)
        s._watch(False, callback, *args)

    def remove_reader(self, fd: Any) -> bool:
        s = self._sim_fd(fd)
        if s is None:
            return super().remove_reader(fd)
        had = s._reader is not None
        s._watch(True, None)
        return had

    def remove_writer(self, fd: Any) -> bool:
        s = self._sim_fd(fd)
        if s is None:
            return super().remove_writer(fd)
        had = s._writer is not None
        s._watch(False, None)
        return had

    def _sim_fd(self, fd: Any) -> SimSocket | None:
        if isinstance(fd, SimSocket):
            return fd
        net = self._simnet
        if net is None:
            return None
        if isinstance(fd, int) and fd >= 10_000_000:
            sock = net._socket_by_fd(fd)
            if sock is not None:
                return sock
        shadow = net._shadows.get(fd) if not isinstance(fd, int) else \
            net._shadow_fds.get(fd)
        if shadow is not None:
            return shadow
        incarnation = current_incarnation()
        if incarnation is not None:
            try:
                number = fd if isinstance(fd, int) else fd.fileno()
                is_socket = stat.S_ISSOCK(os.fstat(number).st_mode)
            except (OSError, AttributeError, TypeError, ValueError):
                is_socket = False
            if is_socket:
                raise _real_socket_error(fd, incarnation)
        return None

    # -- executors ------------------------------------------------------------------------

    def run_in_executor(self, executor: Any, func: Callable[..., Any],  # type: ignore[override]
                        *args: Any) -> asyncio.Future[Any]:
        net = self._simnet
        if net is None or not net.deterministic_threads:
            return super().run_in_executor(executor, func, *args)
        return net._run_in_thread(self, executor, func, args)

    # -- connections ----------------------------------------------------------------------------

    # treadle.EventLoop's create_connection(), create_unix_connection() and
    # connect_accepted_socket() run unchanged - every argument check, Happy
    # Eyeballs, the errors - and reach the simulation through its seams: the
    # names they resolve (getaddrinfo above), the sockets they open (below),
    # the connect (sock_connect above) and the transports they build (below).

    def _open_socket(self, family: int, type_: int, proto: int) -> Any:
        inc = self._on_host()
        if inc is None:
            return super()._open_socket(family, type_, proto)
        return self._net._new_socket(inc, family, type_, proto)

    async def _create_connection_transport(
            self, sock: Any, protocol_factory: Callable[[], Any],
            ssl: Any, server_hostname: str | None, server_side: bool = False,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None) -> tuple[Any, Any]:
        # A socket the caller passed in becomes a simulated one here (or is
        # refused, if it is real and has an address), before anything else.
        sim = self._sim_sock(sock)
        target: Any = sock if sim is None else sim
        return await super()._create_connection_transport(
            target, protocol_factory, ssl, server_hostname,
            server_side, ssl_handshake_timeout, ssl_shutdown_timeout)

    def _make_socket_transport(self, sock: Any, protocol: Any,
                               waiter: asyncio.Future[Any] | None = None, *,
                               extra: dict[str, Any] | None = None,
                               server: Any = None) -> Any:
        if not isinstance(sock, SimSocket):
            return super()._make_socket_transport(sock, protocol, waiter, extra=extra,
                                                  server=server)
        return SimStreamTransport(self, sock, protocol, waiter, extra, server)

    def _make_wire_transport(self, rawsock: Any, tls: TLSProtocol,
                             extra: dict[str, Any] | None, server: Any) -> Any:
        if not isinstance(rawsock, SimSocket):
            return super()._make_wire_transport(rawsock, tls, extra, server)
        return SimStreamTransport(self, rawsock, tls, extra=extra, server=server)

    # -- servers ---------------------------------------------------------------------------

    async def create_server(  # type: ignore[override]
            self, protocol_factory: Callable[[], Any], host: Any = None,
            port: Any = None, *, family: int = socket.AF_UNSPEC,
            flags: int = socket.AI_PASSIVE, sock: Any = None, backlog: int = 100,
            ssl: Any = None, reuse_address: bool | None = None,
            reuse_port: bool | None = None, keep_alive: bool | None = None,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None,
            start_serving: bool = True) -> Server:
        # The real method, on the simulation's seams (_open_socket, DNS,
        # _start_serving); a socket passed in becomes a simulated one first.
        sim = self._sim_sock(sock)
        return await super().create_server(
            protocol_factory, host, port, family=family, flags=flags,
            sock=sock if sim is None else sim, backlog=backlog, ssl=ssl,
            reuse_address=reuse_address, reuse_port=reuse_port, keep_alive=keep_alive,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout, start_serving=start_serving)

    async def create_unix_server(  # type: ignore[override]
            self, protocol_factory: Callable[[], Any], path: Any = None, *,
            sock: Any = None, backlog: int = 100, ssl: Any = None,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None,
            start_serving: bool = True, cleanup_socket: bool = PY313) -> Server:
        # The real method, as create_server(): a socket passed in becomes a
        # simulated one first; the socket file of a host's server lives in
        # the simulation (the seams below), never in the real filesystem.
        sim = self._sim_sock(sock)
        return await super().create_unix_server(
            protocol_factory, path, sock=sock if sim is None else sim, backlog=backlog,
            ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout, start_serving=start_serving,
            cleanup_socket=cleanup_socket)

    async def _remove_stale_unix_socket(self, path: str) -> None:
        if self._on_host() is None:
            await super()._remove_stale_unix_socket(path)

    async def _unix_socket_inode(self, sock: Any) -> int | None:
        if isinstance(sock, SimSocket):
            return None
        return await super()._unix_socket_inode(sock)

    # Server (treadle's, reused as is) calls these to start and stop
    # accepting on each of its sockets.
    def _start_serving(self, protocol_factory: Callable[[], Any], sock: Any,
                       sslcontext: Any = None, server: Any = None, backlog: int = 100,
                       ssl_handshake_timeout: float | None = None,
                       ssl_shutdown_timeout: float | None = None) -> None:
        if not isinstance(sock, SimSocket):
            return super()._start_serving(protocol_factory, sock, sslcontext, server,
                                          backlog, ssl_handshake_timeout,
                                          ssl_shutdown_timeout)
        sock._watch(True, self._sim_accept, protocol_factory, sock, sslcontext, server,
                    ssl_handshake_timeout, ssl_shutdown_timeout)

    def _stop_serving(self, sock: Any) -> None:
        if not isinstance(sock, SimSocket):
            return super()._stop_serving(sock)
        sock.close()

    def _sim_accept(self, protocol_factory: Callable[[], Any], sock: SimSocket,
                    sslcontext: Any, server: Any, ssl_handshake_timeout: float | None,
                    ssl_shutdown_timeout: float | None) -> None:
        # The real loop's accept loop over a simulated socket: each
        # connection gets its transport as on a real one (a task for TLS).
        while True:
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError, OSError):
                return
            conn.setblocking(False)
            extra = {"peername": addr}
            if sslcontext:
                self.create_task(self._accept_connection2(
                    protocol_factory, conn, extra, sslcontext, server,
                    ssl_handshake_timeout, ssl_shutdown_timeout))
            else:
                _copy_context().run(self._accept_plain, protocol_factory, conn, extra,
                                    server)

    # -- datagrams ------------------------------------------------------------------------

    async def create_datagram_endpoint(  # type: ignore[override]
            self, protocol_factory: Callable[[], Any], local_addr: Any = None,
            remote_addr: Any = None, *, family: int = 0, proto: int = 0,
            flags: int = 0, reuse_port: bool | None = None,
            allow_broadcast: bool | None = None,
            sock: Any = None) -> tuple[Any, Any]:
        # The real method, on the simulation's seams (_open_socket, DNS,
        # sock_connect, _make_datagram_transport); a socket passed in becomes
        # a simulated one first.  Unix datagram sockets are not simulated
        # (the real method would look at socket files in the real filesystem).
        if (family == socket.AF_UNIX and sock is None and (local_addr or remote_addr)
                and self._on_host() is not None):
            raise SimulationError("Unix datagram sockets are not simulated")
        sim = self._sim_sock(sock)
        return await super().create_datagram_endpoint(
            protocol_factory, local_addr, remote_addr, family=family, proto=proto,
            flags=flags, reuse_port=reuse_port, allow_broadcast=allow_broadcast,
            sock=sock if sim is None else sim)

    def _make_datagram_transport(self, sock: Any, protocol: Any, address: Any = None,
                                 waiter: asyncio.Future[Any] | None = None,
                                 extra: dict[str, Any] | None = None) -> Any:
        if not isinstance(sock, SimSocket):
            return super()._make_datagram_transport(sock, protocol, address, waiter, extra)
        # A connected socket passed in sends to its peer (the real transport
        # asks the socket for its peer name; the simulated one is told).
        return SimDatagramTransport(self, sock, protocol,
                                    sock._remote if address is None else address,
                                    waiter, extra)


def _incarnation_of(context: dict[str, Any]) -> Incarnation | None:
    from ._host import _current
    inc = current_incarnation()
    if inc is not None:
        return inc
    for key in ("task", "handle", "future"):
        thing = context.get(key)
        if thing is None:
            continue
        ctx = getattr(thing, "_context", None)
        if ctx is None and hasattr(thing, "get_context"):
            try:
                ctx = thing.get_context()
            except Exception:
                ctx = None
        if ctx is not None:
            found = ctx.get(_current)
            if found is not None:
                return found  # type: ignore[no-any-return]
    return None


def _wake(fut: asyncio.Future[Any]) -> None:
    if not fut.done():
        fut.set_result(None)
