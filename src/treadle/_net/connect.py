"""Making connections: TCP, Unix, accepted sockets, UDP endpoints, TLS.

Owns: ``create_connection`` (every asyncio parameter, Happy Eyeballs
included), ``create_unix_connection``, ``connect_accepted_socket``,
``create_datagram_endpoint``, ``start_tls``, and the factories that wrap a
socket in a transport (``_make_socket_transport``, ``_make_ssl_transport``,
``_make_datagram_transport``).
Never: listens or accepts (``server.py``), and never leaks a socket: every
path that opens one closes it again when the call fails or is cancelled.

Validation follows asyncio exactly (same checks, same order, same exception
types and messages), because programs and test suites depend on them.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl as _ssl
from typing import Any, Callable

from . import base, sockio
from .._writeflow import require_protocol
from .tls import TLSProtocol
from .datagram import DatagramTransport
from .dns import interleave_addrinfos
from .sendfile import SendfileMixin
from .staggered import staggered_race
from .stream import SocketTransport


def _close_socket(sock: Any) -> None:
    sock.close()


class ConnectMixin(SendfileMixin):
    """The loop's connection-making methods."""

    # ------------------------------------------------------------------
    # transport factories
    # ------------------------------------------------------------------

    def _make_socket_transport(self, sock: socket.socket, protocol: Any,
                               waiter: asyncio.Future[Any] | None = None, *,
                               extra: dict[str, Any] | None = None,
                               server: Any = None) -> SocketTransport:
        self._ensure_fd_no_transport(sock)
        return SocketTransport(self, sock, protocol, waiter, extra, server)

    def _make_ssl_transport(self, rawsock: socket.socket, protocol: Any,
                            sslcontext: Any, waiter: asyncio.Future[Any] | None = None,
                            *, server_side: bool = False,
                            server_hostname: str | None = None,
                            extra: dict[str, Any] | None = None, server: Any = None,
                            ssl_handshake_timeout: float | None = None,
                            ssl_shutdown_timeout: float | None = None) -> Any:
        self._ensure_fd_no_transport(rawsock)
        tls = TLSProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        self._make_wire_transport(rawsock, tls, extra, server)
        return tls._app_transport

    def _make_wire_transport(self, rawsock: Any, tls: TLSProtocol,
                             extra: dict[str, Any] | None, server: Any) -> Any:
        """The transport under a TLS connection, which carries its encrypted
        bytes (a seam: the simulated network's loop puts its own there)."""
        return SocketTransport(self, rawsock, tls, extra=extra, server=server)

    def _make_datagram_transport(self, sock: socket.socket, protocol: Any,
                                 address: Any = None,
                                 waiter: asyncio.Future[Any] | None = None,
                                 extra: dict[str, Any] | None = None) -> DatagramTransport:
        self._ensure_fd_no_transport(sock)
        return DatagramTransport(self, sock, protocol, address, waiter, extra)

    async def _create_connection_transport(
            self, sock: socket.socket, protocol_factory: Callable[[], Any],
            ssl: Any, server_hostname: str | None, server_side: bool = False,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None) -> tuple[Any, Any]:
        sock.setblocking(False)
        protocol = protocol_factory()
        require_protocol(protocol)
        waiter = self.create_future()
        transport: Any
        if ssl:
            sslcontext = None if isinstance(ssl, bool) else ssl
            transport = self._make_ssl_transport(
                sock, protocol, sslcontext, waiter,
                server_side=server_side, server_hostname=server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout)
        else:
            transport = self._make_socket_transport(sock, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol

    # ------------------------------------------------------------------
    # TCP
    # ------------------------------------------------------------------

    def _open_socket(self, family: int, type_: int, proto: int) -> socket.socket:
        """A new non-blocking socket for a connection this loop makes (the
        seam through which the simulated network's loop opens its own)."""
        sock = socket.socket(family=family, type=type_, proto=proto)
        try:
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return sock

    async def _connect_sock(self, exceptions: list[list[OSError]], addr_info: Any,
                            local_addr_infos: list[Any] | None = None) -> socket.socket:
        """Create, bind and connect one socket for *addr_info*, recording
        its errors in a list of its own inside *exceptions*."""
        my_exceptions: list[OSError] = []
        exceptions.append(my_exceptions)
        family, type_, proto, _, address = addr_info
        sock = None
        try:
            sock = self._open_socket(family, type_, proto)
            if local_addr_infos is not None:
                for lfamily, _, _, _, laddr in local_addr_infos:
                    if lfamily != family:
                        continue
                    try:
                        sock.bind(laddr)
                        break
                    except OSError as exc:
                        msg = (f"error while attempting to bind on "
                               f"address {laddr!r}: {base.bind_error_text(exc)}")
                        my_exceptions.append(OSError(exc.errno, msg))
                else:
                    if my_exceptions:
                        raise my_exceptions.pop()
                    raise OSError(f"no matching local address with {family=} found")
            await self.sock_connect(sock, address)
            return sock
        except OSError as exc:
            my_exceptions.append(exc)
            if sock is not None:
                sock.close()
            raise
        except BaseException:
            if sock is not None:
                sock.close()
            raise
        finally:
            exceptions = my_exceptions = None  # type: ignore[assignment]

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
        if server_hostname is not None and not ssl:
            raise ValueError("server_hostname is only meaningful with ssl")
        if server_hostname is None and ssl:
            # The host is the name to verify; pass server_hostname='' to
            # skip the check (asyncio's rule).
            if not host:
                raise ValueError("You must set server_hostname "
                                 "when using ssl without a host")
            server_hostname = host
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if sock is not None:
            sockio.check_ssl_socket(sock)
        if happy_eyeballs_delay is not None and interleave is None:
            interleave = 1

        own_sock = sock is None
        if host is not None or port is not None:
            if sock is not None:
                raise ValueError(
                    "host/port and sock can not be specified at the same time")
            infos = await self._ensure_resolved(
                (host, port), family=family, type=socket.SOCK_STREAM,
                proto=proto, flags=flags)
            if not infos:
                raise OSError("getaddrinfo() returned empty list")
            laddr_infos: list[Any] | None = None
            if local_addr is not None:
                laddr_infos = await self._ensure_resolved(
                    local_addr, family=family, type=socket.SOCK_STREAM,
                    proto=proto, flags=flags, name="local_addr")
                if not laddr_infos:
                    raise OSError("getaddrinfo() returned empty list")
            if interleave:
                infos = interleave_addrinfos(infos, interleave)

            exceptions: list[list[OSError]] = []
            if happy_eyeballs_delay is None:
                for addrinfo in infos:
                    try:
                        sock = await self._connect_sock(exceptions, addrinfo, laddr_infos)
                        break
                    except OSError:
                        continue
            else:
                sock, _, _ = await staggered_race(
                    self,
                    [_Attempt(self, exceptions, addrinfo, laddr_infos)
                     for addrinfo in infos],
                    happy_eyeballs_delay, discard=_close_socket)

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
                raise ValueError(
                    "host and port was not specified and no sock specified")
            if sock.type != socket.SOCK_STREAM:
                # AF_UNIX stream sockets are accepted too, as in asyncio.
                raise ValueError(f"A Stream Socket was expected, got {sock!r}")

        transport, protocol = await self._connect_own_socket(
            own_sock, sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout, ssl_shutdown_timeout)
        if self._debug:
            sock = transport.get_extra_info("socket")
            base.logger().debug("%r connected to %s:%r: (%r, %r)",
                                sock, host, port, transport, protocol)
        return transport, protocol

    async def _connect_own_socket(
            self, own_sock: bool, sock: socket.socket,
            protocol_factory: Callable[[], Any], ssl: Any,
            server_hostname: str | None, ssl_handshake_timeout: float | None,
            ssl_shutdown_timeout: float | None) -> tuple[Any, Any]:
        """The transport for a connected *sock*.  If that fails (the protocol
        factory raised, ...), a socket the call opened itself (*own_sock*)
        is closed, where asyncio leaves it to the garbage collector; the
        caller's own socket is left as it was."""
        try:
            return await self._create_connection_transport(
                sock, protocol_factory, ssl, server_hostname,
                ssl_handshake_timeout=ssl_handshake_timeout,
                ssl_shutdown_timeout=ssl_shutdown_timeout)
        except BaseException:
            if own_sock:
                sock.close()
            raise

    async def connect_accepted_socket(
            self, protocol_factory: Callable[[], Any], sock: socket.socket, *,
            ssl: Any = None, ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None) -> tuple[Any, Any]:
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A Stream Socket was expected, got {sock!r}")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        sockio.check_ssl_socket(sock)
        transport, protocol = await self._create_connection_transport(
            sock, protocol_factory, ssl, "", server_side=True,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        if self._debug:
            sock = transport.get_extra_info("socket")
            base.logger().debug("%r handled: (%r, %r)", sock, transport, protocol)
        return transport, protocol

    # ------------------------------------------------------------------
    # Unix
    # ------------------------------------------------------------------

    async def create_unix_connection(
            self, protocol_factory: Callable[[], Any], path: Any = None, *,
            ssl: Any = None, sock: Any = None, server_hostname: str | None = None,
            ssl_handshake_timeout: float | None = None,
            ssl_shutdown_timeout: float | None = None) -> tuple[Any, Any]:
        # asyncio's assert, spelled out: pytest rewrites the asserts of every
        # package that ships a pytest plugin (treadle does), which would give
        # this one a message asyncio's has not.  (-O drops it, as asyncio's.)
        if __debug__ and not (server_hostname is None or isinstance(server_hostname, str)):
            raise AssertionError
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
        own_sock = path is not None
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = self._open_socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        else:
            if sock is None:
                raise ValueError("no path and sock were specified")
            if sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
                raise ValueError(
                    f"A UNIX Domain Stream Socket was expected, got {sock!r}")
            sock.setblocking(False)
        return await self._connect_own_socket(
            own_sock, sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout, ssl_shutdown_timeout)

    # ------------------------------------------------------------------
    # TLS upgrade
    # ------------------------------------------------------------------

    async def start_tls(self, transport: Any, protocol: Any, sslcontext: Any, *,
                        server_side: bool = False, server_hostname: str | None = None,
                        ssl_handshake_timeout: float | None = None,
                        ssl_shutdown_timeout: float | None = None) -> Any:
        if not isinstance(sslcontext, _ssl.SSLContext):
            raise TypeError(
                f"sslcontext is expected to be an instance of ssl.SSLContext, "
                f"got {sslcontext!r}")
        if not getattr(transport, "_start_tls_compatible", False):
            raise TypeError(
                f"transport {transport!r} is not supported by start_tls()")
        waiter = self.create_future()
        tls = TLSProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout,
            call_connection_made=False)
        if server_side:
            # Bytes the client sent right after its plain-text part (the
            # start of its handshake) may already sit in a stream reader's
            # buffer: they belong to TLS now (as 3.14's asyncio, gh-142352).
            reader = getattr(protocol, "_stream_reader", None)
            if isinstance(protocol, asyncio.StreamReaderProtocol) and reader is not None:
                buffered = reader._buffer
                if buffered:
                    tls._tls.receive(bytes(buffered))
                    buffered.clear()
        # Pause first: the TLS protocol must not see data before its
        # connection_made.
        transport.pause_reading()
        transport.set_protocol(tls)
        conmade_cb = self.call_soon(tls.connection_made, transport)
        resume_cb = self.call_soon(transport.resume_reading)
        try:
            await waiter
        except BaseException:
            transport.close()
            conmade_cb.cancel()
            resume_cb.cancel()
            # The exception's traceback holds this frame: without these the
            # frame -> waiter/protocol -> exception cycle would keep the
            # transport alive until the cyclic GC runs.
            waiter = tls = None  # type: ignore[assignment]
            raise
        return tls._app_transport

    # ------------------------------------------------------------------
    # UDP
    # ------------------------------------------------------------------

    async def create_datagram_endpoint(  # type: ignore[override]
            self, protocol_factory: Callable[[], Any], local_addr: Any = None,
            remote_addr: Any = None, *, family: int = 0, proto: int = 0,
            flags: int = 0, reuse_port: bool | None = None,
            allow_broadcast: bool | None = None,
            sock: Any = None) -> tuple[Any, Any]:
        r_addr: Any = None
        own_sock = sock is None
        if sock is not None:
            if base.PY313:
                if sock.type == socket.SOCK_STREAM:
                    raise ValueError(f"A datagram socket was expected, got {sock!r}")
            elif sock.type != socket.SOCK_DGRAM:
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
            sock.setblocking(False)
        else:
            addr_pairs_info: Any
            if not (local_addr or remote_addr):
                if family == 0:
                    raise ValueError("unexpected address family")
                addr_pairs_info = (((family, proto), (None, None)),)
            elif hasattr(socket, "AF_UNIX") and family == socket.AF_UNIX:
                for addr in (local_addr, remote_addr):
                    if addr is not None and not isinstance(addr, str):
                        raise TypeError("string is expected")
                if local_addr:
                    await base.off_loop_thread(self, base.remove_stale_unix_socket,
                                               local_addr)
                addr_pairs_info = (((family, proto), (local_addr, remote_addr)),)
            else:
                addr_infos: dict[tuple[int, int], list[Any]] = {}
                for idx, addr in ((0, local_addr), (1, remote_addr)):
                    if addr is None:
                        continue
                    if not (isinstance(addr, tuple) and len(addr) == 2):
                        raise TypeError("2-tuple is expected")
                    infos = await self._ensure_resolved(
                        addr, family=family, type=socket.SOCK_DGRAM,
                        proto=proto, flags=flags)
                    if not infos:
                        raise OSError("getaddrinfo() returned empty list")
                    for fam, _, pro, _, address in infos:
                        addr_infos.setdefault((fam, pro), [None, None])[idx] = address
                # Each (family, proto) must serve every address given.
                addr_pairs_info = [
                    (key, pair) for key, pair in addr_infos.items()
                    if not ((local_addr and pair[0] is None)
                            or (remote_addr and pair[1] is None))]
                if not addr_pairs_info:
                    raise ValueError("can not get address information")

            exceptions: list[OSError] = []
            for (fam, pro), (local_address, remote_address) in addr_pairs_info:
                sock = None
                r_addr = None
                try:
                    sock = self._open_socket(fam, socket.SOCK_DGRAM, pro)
                    if reuse_port:
                        base.set_reuseport(sock)
                    if allow_broadcast:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
                    if local_addr:
                        sock.bind(local_address)
                    if remote_addr:
                        if not allow_broadcast:
                            await self.sock_connect(sock, remote_address)
                        r_addr = remote_address
                except OSError as exc:
                    if sock is not None:
                        sock.close()
                    exceptions.append(exc)
                except BaseException:
                    if sock is not None:
                        sock.close()
                    raise
                else:
                    break
            else:
                raise exceptions[0]

        try:
            protocol = protocol_factory()
            require_protocol(protocol)
        except BaseException:
            if own_sock:        # (see _connect_own_socket)
                sock.close()
            raise
        waiter = self.create_future()
        transport = self._make_datagram_transport(sock, protocol, r_addr, waiter)
        if self._debug:
            if local_addr:
                base.logger().info(
                    "Datagram endpoint local_addr=%r remote_addr=%r created: (%r, %r)",
                    local_addr, remote_addr, transport, protocol)
            else:
                base.logger().debug(
                    "Datagram endpoint remote_addr=%r created: (%r, %r)",
                    remote_addr, transport, protocol)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        return transport, protocol


class _Attempt:
    """One Happy Eyeballs connection attempt, as a coroutine function."""

    __slots__ = ("loop", "exceptions", "addr_info", "laddr_infos")

    def __init__(self, loop: ConnectMixin, exceptions: list[list[OSError]],
                 addr_info: Any, laddr_infos: list[Any] | None) -> None:
        self.loop = loop
        self.exceptions = exceptions
        self.addr_info = addr_info
        self.laddr_infos = laddr_infos

    def __call__(self) -> Any:
        return self.loop._connect_sock(self.exceptions, self.addr_info, self.laddr_infos)
