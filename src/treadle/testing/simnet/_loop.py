"""``SimEventLoop``: the seam that sends a simulated host's networking to the
simulation.

Owns: the one place where a loop networking call is routed.  Each
networking method of ``treadle.EventLoop`` is overridden here with the
same signature; it asks ``current_incarnation()`` (one context-variable
read) whether the caller runs on a simulated host, and if not calls the
real method unchanged.  On a host it runs the simulated version below:
``create_connection``, ``create_server``, ``create_unix_connection``/
``create_unix_server``, ``create_datagram_endpoint``,
``connect_accepted_socket``, ``getaddrinfo``/``getnameinfo`` (the
simulation's DNS), the ``sock_*`` methods and ``add_reader``/
``add_writer`` on simulated sockets.  ``start_tls``, ``sendfile`` and the
streams API need no routing: they work on any transport, so they work on
the simulated ones.  ``run_in_executor`` is made deterministic for the
whole loop (``_nondet.py``).
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
import collections.abc
import contextvars
import errno
import itertools
import os
import socket
import stat
from typing import TYPE_CHECKING, Any, Callable

from ..._loop import EventLoop
from ..._net.tls import TLSProtocol
from ..._net.server import Server
from ..._net.staggered import staggered_race
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

    async def create_connection(
            self, protocol_factory: Callable[[], Any], host: Any = None,
            port: Any = None, *, ssl: Any = None, family: int = 0, proto: int = 0,
            flags: int = 0, sock: Any = None, local_addr: Any = None,
            server_hostname: str | None = None,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None,
            happy_eyeballs_delay: float | None = None,
            interleave: int | None = None,
            all_errors: bool = False) -> tuple[Any, Any]:
        inc = self._on_host()
        if inc is None and not isinstance(sock, SimSocket):
            return await super().create_connection(
                protocol_factory, host, port, ssl=ssl, family=family, proto=proto,
                flags=flags, sock=sock, local_addr=local_addr,
                server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout,
                happy_eyeballs_delay=happy_eyeballs_delay, interleave=interleave,
                all_errors=all_errors)
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if server_hostname is None and ssl:
            if not host:
                raise ValueError("You must set server_hostname "
                                 "when using ssl without a host")
            server_hostname = host
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError(
                    "host/port and sock can not be specified at the same time")
            net = self._net
            infos = await net._resolve(inc, host, port, family, socket.SOCK_STREAM,
                                       proto, flags)
            laddr_infos = None
            if local_addr is not None:
                laddr_infos = await net._resolve(inc, local_addr[0], local_addr[1], family,
                                                 socket.SOCK_STREAM, proto, flags)
            if interleave:
                from ..._net.dns import interleave_addrinfos
                infos = interleave_addrinfos(infos, interleave)
            exceptions: list[list[OSError]] = []
            if happy_eyeballs_delay is None:
                for info in infos:
                    try:
                        sock = await self._sim_connect_sock(inc, exceptions, info,
                                                            laddr_infos)
                        break
                    except OSError:
                        continue
            else:
                sock, _, _ = await staggered_race(
                    self, [_Attempt(self, inc, exceptions, info, laddr_infos)
                           for info in infos],
                    happy_eyeballs_delay, discard=_close)
            if sock is None:
                flat = [exc for sub in exceptions for exc in sub]
                try:
                    if all_errors:
                        raise ExceptionGroup("create_connection failed", flat)
                    if len(flat) == 1:
                        raise flat[0]
                    model = str(flat[0])
                    if all(str(exc) == model for exc in flat):
                        raise flat[0]
                    raise OSError("Multiple exceptions: {}".format(
                        ", ".join(str(exc) for exc in flat)))
                finally:
                    flat = exceptions = None  # type: ignore[assignment]
        else:
            if sock is None:
                raise ValueError("host and port was not specified and no sock specified")
            sock = self._sim_sock(sock)
            if sock is None or sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        return await self._sim_transport(sock, protocol_factory, ssl, server_hostname,
                                         False, ssl_handshake_timeout,
                                         ssl_shutdown_timeout)

    async def _sim_connect_sock(self, inc: Incarnation | None,
                                exceptions: list[list[OSError]], info: Any,
                                laddr_infos: list[Any] | None) -> SimSocket:
        mine: list[OSError] = []
        exceptions.append(mine)
        family, type_, proto, _, address = info
        sock = None
        try:
            sock = self._net._new_socket(inc, family, type_, proto)
            if laddr_infos is not None:
                for lfamily, _, _, _, laddr in laddr_infos:
                    if lfamily != family:
                        continue
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        mine.append(OSError(
                            exc.errno, f"error while attempting to bind on address "
                                       f"{laddr!r}: {(exc.strerror or str(exc)).lower()}"))
                else:
                    if mine:
                        raise mine.pop()
                    raise OSError(f"no matching local address with {family=} found")
            await self.sock_connect(sock, address)
            return sock
        except OSError as exc:
            mine.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        finally:
            exceptions = mine = None  # type: ignore[assignment]

    async def _sim_transport(self, sock: SimSocket, protocol_factory: Callable[[], Any],
                             ssl: Any, server_hostname: str | None, server_side: bool,
                             ssl_handshake_timeout: float | None,
                             ssl_shutdown_timeout: float | None) -> tuple[Any, Any]:
        sock.setblocking(False)
        protocol = protocol_factory()
        waiter = self.create_future()
        transport: Any
        if ssl:
            context = None if isinstance(ssl, bool) else ssl
            tls = TLSProtocol(self, protocol, context, waiter, server_side, server_hostname,
                              ssl_handshake_timeout=ssl_handshake_timeout,
                              ssl_shutdown_timeout=ssl_shutdown_timeout)
            SimStreamTransport(self, sock, tls)
            transport = tls._app_transport
        else:
            transport = SimStreamTransport(self, sock, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    async def connect_accepted_socket(
            self, protocol_factory: Callable[[], Any], sock: Any, *,
            ssl: Any = None, ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None) -> tuple[Any, Any]:
        s = self._sim_sock(sock)
        if s is None:
            return await super().connect_accepted_socket(
                protocol_factory, sock, ssl=ssl, ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout)
        if s.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        return await self._sim_transport(s, protocol_factory, ssl, "", True,
                                         ssl_handshake_timeout, ssl_shutdown_timeout)

    async def create_unix_connection(
            self, protocol_factory: Callable[[], Any], path: Any = None, *,
            ssl: Any = None, sock: Any = None, server_hostname: str | None = None,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None) -> tuple[Any, Any]:
        inc = self._on_host()
        if inc is None and not isinstance(sock, SimSocket):
            return await super().create_unix_connection(
                protocol_factory, path, ssl=ssl, sock=sock, server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout)
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            if ssl_handshake_timeout is not None:
                raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
            if ssl_shutdown_timeout is not None:
                raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            s = self._net._new_socket(inc, socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                await self.sock_connect(s, path)
            except BaseException:
                s.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            given = self._sim_sock(sock)
            if given is None or given.family != socket.AF_UNIX \
                    or given.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            s = given
        return await self._sim_transport(s, protocol_factory, ssl, server_hostname, False,
                                         ssl_handshake_timeout, ssl_shutdown_timeout)

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
        inc = self._on_host()
        if inc is None and not isinstance(sock, SimSocket):
            return await super().create_server(
                protocol_factory, host, port, family=family, flags=flags, sock=sock,
                backlog=backlog, ssl=ssl, reuse_address=reuse_address,
                reuse_port=reuse_port, keep_alive=keep_alive,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout, start_serving=start_serving)
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        sockets: list[Any] = []
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError("host/port and sock can not be specified at the same time")
            if host == "":
                hosts: Any = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = host
            net = self._net
            found = []
            for h in hosts:
                infos = await net._resolve(inc, h, port, family, socket.SOCK_STREAM, 0,
                                           flags)
                if not infos:
                    raise OSError(f"getaddrinfo({h!r}) returned empty list")
                found.append(infos)
            infos = list(dict.fromkeys(itertools.chain.from_iterable(found)))
            completed = False
            try:
                for af, socktype, proto, _, sa in infos:
                    s = net._new_socket(inc, af, socktype, proto)
                    sockets.append(s)
                    if reuse_address is not False:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                    if reuse_port:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, True)
                    if keep_alive:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                    try:
                        s.bind(sa)
                    except OSError as err:
                        raise OSError(err.errno, "error while attempting to bind on "
                                      "address %r: %s" % (sa, (err.strerror or "").lower())
                                      ) from None
                if not sockets:
                    raise OSError("could not bind on any address out of %r"
                                  % ([info[4] for info in infos],))
                completed = True
            finally:
                if not completed:
                    for s in sockets:
                        s.close()
        else:
            if sock is None:
                raise ValueError("Neither host/port nor sock were specified")
            given = self._sim_sock(sock)
            if given is None or given.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [given]
        return await self._sim_server(sockets, protocol_factory, ssl, backlog,
                                      ssl_handshake_timeout, ssl_shutdown_timeout,
                                      start_serving)

    async def _sim_server(self, sockets: list[SimSocket], protocol_factory: Callable[[], Any],
                          ssl: Any, backlog: int, ssl_handshake_timeout: float | None,
                          ssl_shutdown_timeout: float | None, start_serving: bool) -> Server:
        for s in sockets:
            s.setblocking(False)
        server = Server(self, sockets, protocol_factory, ssl, backlog,
                        ssl_handshake_timeout, ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await asyncio.sleep(0)
        return server

    async def create_unix_server(  # type: ignore[override]
            self, protocol_factory: Callable[[], Any], path: Any = None, *,
            sock: Any = None, backlog: int = 100, ssl: Any = None,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None,
            start_serving: bool = True, cleanup_socket: bool = True) -> Server:
        inc = self._on_host()
        if inc is None and not isinstance(sock, SimSocket):
            kwargs: dict[str, Any] = {}
            if cleanup_socket is not True:
                kwargs["cleanup_socket"] = cleanup_socket
            return await super().create_unix_server(
                protocol_factory, path, sock=sock, backlog=backlog, ssl=ssl,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout, start_serving=start_serving,
                **kwargs)
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            s = self._net._new_socket(inc, socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                s.bind(path)
            except OSError as exc:
                s.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE,
                                  f"Address {path!r} is already in use") from None
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            given = self._sim_sock(sock)
            if given is None or given.family != socket.AF_UNIX \
                    or given.type != socket.SOCK_STREAM:
                raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            s = given
        return await self._sim_server([s], protocol_factory, ssl, backlog,
                                      ssl_handshake_timeout, ssl_shutdown_timeout,
                                      start_serving)

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
        while True:
            try:
                conn, addr = sock.accept()
            except (BlockingIOError, InterruptedError, OSError):
                return
            conn.setblocking(False)
            _copy_context().run(self._sim_accept_one, protocol_factory, conn, addr,
                                sslcontext, server, ssl_handshake_timeout,
                                ssl_shutdown_timeout)

    def _sim_accept_one(self, protocol_factory: Callable[[], Any], conn: SimSocket,
                        addr: Any, sslcontext: Any, server: Any,
                        ssl_handshake_timeout: float | None,
                        ssl_shutdown_timeout: float | None) -> None:
        try:
            protocol = protocol_factory()
            extra = {"peername": addr}
            if sslcontext:
                tls = TLSProtocol(self, protocol, sslcontext, None, True, None,
                                  ssl_handshake_timeout=ssl_handshake_timeout,
                                  ssl_shutdown_timeout=ssl_shutdown_timeout)
                SimStreamTransport(self, conn, tls, None, extra, server)
            else:
                SimStreamTransport(self, conn, protocol, None, extra, server)
        except (SystemExit, KeyboardInterrupt):
            conn.close()
            raise
        except BaseException as exc:
            conn.close()
            if self._debug:
                self.call_exception_handler({
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                })

    # -- datagrams ------------------------------------------------------------------------

    async def create_datagram_endpoint(  # type: ignore[override]
            self, protocol_factory: Callable[[], Any], local_addr: Any = None,
            remote_addr: Any = None, *, family: int = 0, proto: int = 0,
            flags: int = 0, reuse_port: bool | None = None,
            allow_broadcast: bool | None = None,
            sock: Any = None) -> tuple[Any, Any]:
        inc = self._on_host()
        if inc is None and not isinstance(sock, SimSocket):
            return await super().create_datagram_endpoint(
                protocol_factory, local_addr, remote_addr, family=family, proto=proto,
                flags=flags, reuse_port=reuse_port, allow_broadcast=allow_broadcast,
                sock=sock)
        r_addr: Any = None
        if sock is not None:
            s = self._sim_sock(sock)
            if s is None or s.type != socket.SOCK_DGRAM:
                raise ValueError(f"A UDP Socket was expected, got {sock!r}")
            if (local_addr or remote_addr or family or proto or flags
                    or reuse_port or allow_broadcast):
                opts = dict(local_addr=local_addr, remote_addr=remote_addr,
                            family=family, proto=proto, flags=flags,
                            reuse_port=reuse_port, allow_broadcast=allow_broadcast)
                problems = ", ".join(f"{k}={v}" for k, v in opts.items() if v)
                raise ValueError(
                    f"socket modifier keyword arguments can not be used "
                    f"when sock is specified. ({problems})")
            s.setblocking(False)
            if s._remote is not None:
                r_addr = s._remote
        else:
            if not (local_addr or remote_addr):
                if family == 0:
                    raise ValueError("unexpected address family")
                pairs: list[Any] = [((family, proto), (None, None))]
            elif family == socket.AF_UNIX:
                raise SimulationError("Unix datagram sockets are not simulated")
            else:
                net = self._net
                by_key: dict[tuple[int, int], list[Any]] = {}
                for idx, addr in ((0, local_addr), (1, remote_addr)):
                    if addr is None:
                        continue
                    if not (isinstance(addr, tuple) and len(addr) == 2):
                        raise TypeError("2-tuple is expected")
                    infos = await net._resolve(inc, addr[0], addr[1], family,
                                               socket.SOCK_DGRAM, proto, flags)
                    for fam, _, pro, _, address in infos:
                        by_key.setdefault((fam, pro), [None, None])[idx] = address
                pairs = [(key, pair) for key, pair in by_key.items()
                         if not ((local_addr and pair[0] is None)
                                 or (remote_addr and pair[1] is None))]
                if not pairs:
                    raise ValueError("can not get address information")
            exceptions: list[OSError] = []
            s = None
            for (fam, pro), (local_address, remote_address) in pairs:
                s = None
                r_addr = None
                try:
                    s = self._net._new_socket(inc, fam, socket.SOCK_DGRAM, pro)
                    if reuse_port:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, True)
                    if allow_broadcast:
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, True)
                    if local_addr:
                        s.bind(local_address)
                    if remote_addr:
                        if not allow_broadcast:
                            await self.sock_connect(s, remote_address)
                        r_addr = remote_address
                except OSError as exc:
                    if s is not None:
                        s.close()
                    exceptions.append(exc)
                except BaseException:
                    if s is not None:
                        s.close()
                    raise
                else:
                    break
            else:
                raise exceptions[0]
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = SimDatagramTransport(self, s, protocol, r_addr, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol


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


def _close(sock: Any) -> None:
    sock.close()


class _Attempt:
    """One Happy Eyeballs attempt, as a coroutine function."""

    def __init__(self, loop: SimEventLoop, inc: Incarnation | None,
                 exceptions: list[list[OSError]], info: Any,
                 laddr_infos: list[Any] | None) -> None:
        self.loop = loop
        self.inc = inc
        self.exceptions = exceptions
        self.info = info
        self.laddr_infos = laddr_infos

    def __call__(self) -> Any:
        return self.loop._sim_connect_sock(self.inc, self.exceptions, self.info,
                                           self.laddr_infos)
