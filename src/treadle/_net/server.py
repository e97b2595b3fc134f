"""Listening: ``create_server``, ``create_unix_server`` and the Server.

Owns: ``Server`` (an ``asyncio.AbstractServer``: ``start_serving``,
``serve_forever``, ``close``, ``wait_closed``, ``sockets``,
``is_serving``, ``close_clients``/``abort_clients``), binding listening
sockets, the accept loop, the back-off when accept() runs out of
descriptors or memory, and the removal of a Unix server's socket file
when it closes (Python 3.13's behaviour, on 3.13).
Never: spins.  A listening socket that keeps failing with EMFILE/ENFILE/
ENOBUFS/ENOMEM is reported once, unregistered, and retried after
``ACCEPT_RETRY_DELAY`` seconds, as in asyncio.

Accepting without a task.  asyncio wraps every accepted connection in a
task (``_accept_connection2``) just to build the protocol and transport and
await the transport's readiness.  For plain connections treadle builds them
directly in the accept callback, inside a fresh copy of the context (which
is what the task's context gave: a protocol factory that sets context
variables does not leak them into the next connection); connection_made
then runs one callback later, as on asyncio.  TLS connections keep the
task, since their readiness is the handshake.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextvars
import errno
import itertools
import os
import socket
import sys
import weakref
from asyncio import trsock
from typing import Any, Callable, Iterable

from . import base, sockio
from .._writeflow import require_protocol
from .connect import ConnectMixin

_copy_context = contextvars.copy_context
# The two filesystem calls closing a Unix server makes on the loop thread,
# bound when treadle is imported (uvloop binds its stdlib calls the same
# way).  asyncio makes the same two calls in its _stop_serving, and tools
# that fail async code making blocking calls (blockbuster, under which
# aiohttp's and anyio's suites run) let exactly that function make them,
# by name; looked up at call time, treadle's would be refused where
# asyncio's is allowed.
_os_stat = os.stat
_os_unlink = os.unlink


#: Python 3.14's serve_forever() closes the clients when it is cancelled.
_CLOSE_CLIENTS_ON_CANCEL = sys.version_info >= (3, 14)


class Server(asyncio.AbstractServer):
    """A listening server on a treadle loop."""

    def __init__(self, loop: Any, sockets: list[Any], protocol_factory: Callable[[], Any],
                 ssl_context: Any, backlog: int, ssl_handshake_timeout: float | None,
                 ssl_shutdown_timeout: float | None = None) -> None:
        self._loop = loop
        self._sockets: list[Any] | None = sockets
        # Weakly: a transport the application drops must still be
        # collected (and warn) instead of living on in the server.
        self._clients: weakref.WeakSet[Any] = weakref.WeakSet()
        self._anonymous = 0
        self._waiters: list[asyncio.Future[Any]] | None = []
        self._protocol_factory = protocol_factory
        self._backlog = backlog
        self._ssl_context = ssl_context
        self._ssl_handshake_timeout = ssl_handshake_timeout
        self._ssl_shutdown_timeout = ssl_shutdown_timeout
        self._serving = False
        self._serving_forever_fut: asyncio.Future[Any] | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} sockets={self.sockets!r}>"

    # asyncio's private bookkeeping, which its own tests and a few
    # libraries call: 3.13 passes the transport, 3.11/3.12 pass nothing
    # and count.  Both forms work on every version.
    def _attach(self, transport: Any = None) -> None:
        assert self._sockets is not None
        if transport is None:
            self._anonymous += 1
        else:
            self._clients.add(transport)

    def _detach(self, transport: Any = None) -> None:
        if transport is None:
            if self._anonymous > 0:
                self._anonymous -= 1
        else:
            self._clients.discard(transport)
        if self._active_count() == 0 and self._sockets is None:
            self._wakeup()

    def _active_count(self) -> int:
        return len(self._clients) + self._anonymous

    def _wakeup(self) -> None:
        waiters = self._waiters
        self._waiters = None
        if waiters is None:
            return
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _start_serving(self) -> None:
        if self._serving:
            return
        self._serving = True        # (first: a second call returns, as on asyncio)
        if self._sockets is None:
            # asyncio's type (its loop iterates the None it has then).
            raise TypeError(f"server {self!r} is closed: it cannot start serving")
        for sock in self._sockets:
            sock.listen(self._backlog)
            self._loop._start_serving(
                self._protocol_factory, sock, self._ssl_context, self,
                self._backlog, self._ssl_handshake_timeout,
                self._ssl_shutdown_timeout)

    def get_loop(self) -> Any:
        return self._loop

    def is_serving(self) -> bool:
        return self._serving

    @property
    def sockets(self) -> tuple[trsock.TransportSocket, ...]:
        if self._sockets is None:
            return ()
        return tuple(trsock.TransportSocket(s) for s in self._sockets)

    def close(self) -> None:
        sockets = self._sockets
        if sockets is None:
            return
        self._sockets = None
        for sock in sockets:
            self._loop._stop_serving(sock)
        self._serving = False
        fut = self._serving_forever_fut
        if fut is not None and not fut.done():
            fut.cancel()
            self._serving_forever_fut = None
        if self._active_count() == 0:
            self._wakeup()

    def close_clients(self) -> None:
        """Close every connection this server accepted (graceful)."""
        for transport in self._clients.copy():
            transport.close()

    def abort_clients(self) -> None:
        """Abort every connection this server accepted (immediate)."""
        for transport in self._clients.copy():
            transport.abort()

    async def start_serving(self) -> None:
        self._start_serving()
        # One loop turn, so that the listening readers are in place.
        await asyncio.sleep(0)

    async def serve_forever(self) -> None:
        if self._serving_forever_fut is not None:
            raise RuntimeError(
                f"server {self!r} is already being awaited on serve_forever()")
        if self._sockets is None:
            raise RuntimeError(f"server {self!r} is closed")
        self._start_serving()
        self._serving_forever_fut = self._loop.create_future()
        try:
            await self._serving_forever_fut
        except asyncio.CancelledError:
            try:
                self.close()
                if _CLOSE_CLIENTS_ON_CANCEL:
                    # 3.14+: cancelling serve_forever() also closes the
                    # connections (a hanging client no longer holds
                    # wait_closed() up).
                    self.close_clients()
                await self.wait_closed()
            finally:
                raise
        finally:
            self._serving_forever_fut = None

    async def wait_closed(self) -> None:
        """Wait until the server is closed and every connection it accepted
        is gone (3.12+; on 3.11 asyncio returns at once once closed)."""
        if self._waiters is None:
            return
        if not base.PY312 and self._sockets is None:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter


class ServerMixin(ConnectMixin):
    """The loop's server methods."""

    def _layers_init(self) -> None:
        super()._layers_init()
        #: Listening Unix sockets whose file close() removes: inode of the
        #: file when it was bound (a file replaced since is left alone).
        self._unix_server_sockets: dict[Any, int] = {}

    # ------------------------------------------------------------------
    # accepting
    # ------------------------------------------------------------------

    def _start_serving(self, protocol_factory: Callable[[], Any], sock: Any,
                       sslcontext: Any = None, server: Any = None, backlog: int = 100,
                       ssl_handshake_timeout: float | None = None,
                       ssl_shutdown_timeout: float | None = None) -> None:
        self._add_reader(sock.fileno(), self._accept_connection,
                         protocol_factory, sock, sslcontext, server, backlog,
                         ssl_handshake_timeout, ssl_shutdown_timeout)

    def _resume_accepting(self, protocol_factory: Callable[[], Any], sock: Any,
                          sslcontext: Any, server: Any, backlog: int,
                          ssl_handshake_timeout: float | None,
                          ssl_shutdown_timeout: float | None) -> None:
        """The end of an accept back-off."""
        if self._closed or sock.fileno() < 0:
            return      # closed during the back-off
        if server is not None and getattr(server, "_sockets", None) is None:
            return
        self._start_serving(protocol_factory, sock, sslcontext, server, backlog,
                            ssl_handshake_timeout, ssl_shutdown_timeout)

    def _accept_connection(self, protocol_factory: Callable[[], Any], sock: Any,
                           sslcontext: Any = None, server: Any = None,
                           backlog: int = 100,
                           ssl_handshake_timeout: float | None = None,
                           ssl_shutdown_timeout: float | None = None) -> None:
        # Called once per readiness event; drain up to *backlog* pending
        # connections in one go.
        for _ in range(backlog):
            try:
                conn, addr = sock.accept()
                if self._debug:
                    base.logger().debug("%r got a new connection from %r: %r",
                                        server, addr, conn)
                conn.setblocking(False)
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in base.ACCEPT_RESOURCE_ERRNOS:
                    raise   # reported by the loop's exception handler
                # Linux keeps reporting the socket readable: stop watching
                # it for a while instead of spinning.
                self.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": exc,
                    "socket": trsock.TransportSocket(sock),
                })
                self._remove_reader(sock.fileno())
                self.call_later(base.ACCEPT_RETRY_DELAY, self._resume_accepting,
                                protocol_factory, sock, sslcontext, server,
                                backlog, ssl_handshake_timeout, ssl_shutdown_timeout)
                return
            extra = {"peername": addr}
            if sslcontext:
                self.create_task(self._accept_connection2(
                    protocol_factory, conn, extra, sslcontext, server,
                    ssl_handshake_timeout, ssl_shutdown_timeout))
            else:
                _copy_context().run(self._accept_plain, protocol_factory, conn,
                                    extra, server)

    def _accept_plain(self, protocol_factory: Callable[[], Any], conn: Any,
                      extra: dict[str, Any], server: Any) -> None:
        protocol = None
        transport = None
        try:
            protocol = protocol_factory()
            require_protocol(protocol)
            transport = self._make_socket_transport(conn, protocol, None,
                                                    extra=extra, server=server)
        except (SystemExit, KeyboardInterrupt):
            conn.close()
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            if self._debug:
                context: dict[str, Any] = {
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                }
                if protocol is not None:
                    context["protocol"] = protocol
                self.call_exception_handler(context)

    async def _accept_connection2(self, protocol_factory: Callable[[], Any], conn: Any,
                                  extra: dict[str, Any], sslcontext: Any = None,
                                  server: Any = None,
                                  ssl_handshake_timeout: float | None = None,
                                  ssl_shutdown_timeout: float | None = None) -> None:
        protocol = None
        transport = None
        try:
            protocol = protocol_factory()
            require_protocol(protocol)
            waiter: asyncio.Future[Any] | None = self.create_future()
            if sslcontext:
                transport = self._make_ssl_transport(
                    conn, protocol, sslcontext, waiter=waiter, server_side=True,
                    extra=extra, server=server,
                    ssl_handshake_timeout=ssl_handshake_timeout,
                    ssl_shutdown_timeout=ssl_shutdown_timeout)
            else:
                transport = self._make_socket_transport(
                    conn, protocol, waiter=waiter, extra=extra, server=server)
            try:
                await waiter  # type: ignore[misc]
            except BaseException:
                transport.close()
                # The exception in the waiter can keep the protocol alive.
                waiter = None
                raise
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            if transport is None:
                conn.close()
            if self._debug:
                context: dict[str, Any] = {
                    "message": "Error on transport creation for incoming connection",
                    "exception": exc,
                }
                if protocol is not None:
                    context["protocol"] = protocol
                if transport is not None:
                    context["transport"] = transport
                self.call_exception_handler(context)

    def _stop_serving(self, sock: Any) -> None:
        path = sock.getsockname() if sock in self._unix_server_sockets else None
        self._remove_reader(sock.fileno())
        sock.close()
        if path is not None:
            inode = self._unix_server_sockets.pop(sock)
            try:
                if _os_stat(path).st_ino == inode:
                    _os_unlink(path)
            except FileNotFoundError:
                pass
            except OSError as err:
                base.logger().error(
                    "Unable to clean up listening UNIX socket %r: %r", path, err)

    # ------------------------------------------------------------------
    # TCP servers
    # ------------------------------------------------------------------

    async def _create_server_getaddrinfo(self, host: Any, port: Any, family: int,
                                         flags: int) -> list[Any]:
        infos = await self._ensure_resolved((host, port), family=family,
                                            type=socket.SOCK_STREAM, flags=flags)
        if not infos:
            raise OSError(f"getaddrinfo({host!r}) returned empty list")
        return infos

    async def create_server(  # type: ignore[override]
            self, protocol_factory: Callable[[], Any], host: Any = None,
            port: Any = None, *, family: int = socket.AF_UNSPEC,
            flags: int = socket.AI_PASSIVE, sock: Any = None, backlog: int = 100,
            ssl: Any = None, reuse_address: bool | None = None,
            reuse_port: bool | None = None, keep_alive: bool | None = None,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None,
            start_serving: bool = True) -> Server:
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and ssl is None:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and ssl is None:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            sockio.check_ssl_socket(sock)

        if host is not None or port is not None:
            if sock is not None:
                raise ValueError(
                    "host/port and sock can not be specified at the same time")
            if reuse_address is None:
                reuse_address = os.name == "posix" and sys.platform != "cygwin"
            hosts: Iterable[Any]
            if host == "":
                hosts = [None]
            elif isinstance(host, str) or not isinstance(host, collections.abc.Iterable):
                hosts = [host]
            else:
                hosts = host
            found = await asyncio.gather(*[
                self._create_server_getaddrinfo(h, port, family=family, flags=flags)
                for h in hosts])
            # Each address once, in the order the lookups gave them (asyncio
            # uses a set: any order; this one is the same on every run).
            infos = list(dict.fromkeys(itertools.chain.from_iterable(found)))
            sockets: list[Any] = []
            completed = False
            try:
                for af, socktype, proto, _, sa in infos:
                    try:
                        sock = self._open_socket(af, socktype, proto)
                    except OSError:
                        # A family/type/protocol this host does not offer.
                        if self._debug:
                            base.logger().warning(
                                "create_server() failed to create "
                                "socket.socket(%r, %r, %r)", af, socktype, proto,
                                exc_info=True)
                        continue
                    sockets.append(sock)
                    if reuse_address:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, True)
                    if reuse_port:
                        base.set_reuseport(sock)
                    if keep_alive:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, True)
                    # One socket per family: no dual-stack IPv6 socket
                    # that would also take the IPv4 address.
                    if (base.HAS_IPV6 and af == socket.AF_INET6
                            and hasattr(socket, "IPPROTO_IPV6")):
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, True)
                    try:
                        sock.bind(sa)
                    except OSError as err:
                        msg = ("error while attempting to bind on address %r: %s"
                               % (sa, base.bind_error_text(err)))
                        if base.PY313 and err.errno == errno.EADDRNOTAVAIL:
                            # The family is probably not enabled (bpo-30945).
                            sockets.pop()
                            sock.close()
                            if self._debug:
                                base.logger().warning(msg)
                            continue
                        raise OSError(err.errno, msg) from None
                if not sockets and base.PY313:
                    # (3.11 and 3.12 make a server with no socket at all)
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
            if sock.type != socket.SOCK_STREAM:
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")
            sockets = [sock]

        for s in sockets:
            s.setblocking(False)
        server = Server(self, sockets, protocol_factory, ssl, backlog,
                        ssl_handshake_timeout, ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await asyncio.sleep(0)
        if self._debug:
            base.logger().info("%r is serving", server)
        return server

    # ------------------------------------------------------------------
    # Unix servers
    # ------------------------------------------------------------------

    async def create_unix_server(  # type: ignore[override]
            self, protocol_factory: Callable[[], Any], path: Any = None, *,
            sock: Any = None, backlog: int = 100, ssl: Any = None,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None,
            start_serving: bool = True,
            cleanup_socket: bool = base.PY313) -> Server:
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
            await self._remove_stale_unix_socket(path)
            sock = self._open_socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    msg = f"Address {path!r} is already in use"
                    raise OSError(errno.EADDRINUSE, msg) from None
                raise
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("path was not specified, and no sock specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(
                    f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        if cleanup_socket:
            inode = await self._unix_socket_inode(sock)
            if inode is not None:
                self._unix_server_sockets[sock] = inode
        sock.setblocking(False)
        server = Server(self, [sock], protocol_factory, ssl, backlog,
                        ssl_handshake_timeout, ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await asyncio.sleep(0)
        return server

    # The server's socket file, in the real filesystem (seams: the simulated
    # network's loop keeps the socket files of its hosts in the simulation).

    async def _remove_stale_unix_socket(self, path: str) -> None:
        await base.off_loop_thread(self, base.remove_stale_unix_socket, path)

    async def _unix_socket_inode(self, sock: Any) -> int | None:
        """The inode of the file *sock* is bound to (closing the server
        removes that file only if it is still the same one); None for an
        abstract name or a file that is already gone."""
        bound = sock.getsockname()
        if not bound or bound[0] in (0, "\x00"):
            return None
        try:
            return (await base.off_loop_thread(self, os.stat, bound)).st_ino
        except FileNotFoundError:
            return None
