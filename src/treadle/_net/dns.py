"""Name resolution: ``getaddrinfo``/``getnameinfo`` and address helpers.

Owns: the loop's ``getaddrinfo``/``getnameinfo``, ``_ensure_resolved`` (the
"already an IP address?" shortcut every connect/bind path takes before
asking the resolver), and ``interleave_addrinfos`` for Happy Eyeballs.
Never: blocks the loop thread on anything that may touch the network or
name services.

Where resolution runs.  Resolving a *name* may block for seconds (DNS,
NSS modules), so it runs in the default executor, as in asyncio.  But
most calls carry no name at all: a numeric host (``"127.0.0.1"``,
``"::1"``, ``"fe80::1%lo"``), ``None``, and a numeric port or none.  For
those ``socket.getaddrinfo`` never looks anything up (the C library parses
the literal), so treadle calls it right on the loop thread: the result is
exactly what the executor would have returned, without a thread hop, a
future and two loop turns.  A service name (``"http"``) reads the services
database and goes to the executor.
"""

from __future__ import annotations

import socket
import time
from typing import Any

from . import base
from .._kernel.layers import Layer

# socket.getaddrinfo and socket.inet_pton are looked up at each call, as
# asyncio does: tests replace them (unittest.mock.patch("socket.getaddrinfo")).
_AF_INET = socket.AF_INET
_AF_INET6 = socket.AF_INET6
_NUMERIC_PROTOS = {0, socket.IPPROTO_TCP, socket.IPPROTO_UDP}


def _is_numeric_host(host: Any) -> bool:
    """True if resolving *host* needs no lookup (None or an IP literal)."""
    if host is None:
        return True
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return False
    if not isinstance(host, str) or not host:
        return False
    try:
        socket.inet_pton(_AF_INET, host)
        return True
    except (OSError, ValueError):
        pass
    if not base.HAS_IPV6:
        return False
    literal, sep, scope = host.partition("%")
    try:
        socket.inet_pton(_AF_INET6, literal)
    except (OSError, ValueError):
        return False
    # A scope is an interface index or name (an ioctl, no lookup).
    return not sep or bool(scope)


def _is_numeric_port(port: Any) -> bool:
    if port is None:
        return True
    if isinstance(port, int):
        return True
    if isinstance(port, bytes):
        try:
            port = port.decode("ascii")
        except UnicodeDecodeError:
            return False
    return isinstance(port, str) and port.isascii() and port.isdigit()


def numeric_addrinfo(host: Any, port: Any, family: int, type: int, proto: int,
                     flowinfo: int = 0, scopeid: int = 0) -> Any:
    """The single addrinfo entry for a host that is already an IP address,
    or None when *host* needs resolving (asyncio's connect/bind shortcut:
    one entry, with the protocol implied by *type*)."""
    # (a set, and proto first, as asyncio: an unhashable proto fails here)
    if proto not in _NUMERIC_PROTOS or host is None:
        return None
    if type == socket.SOCK_STREAM:
        proto = socket.IPPROTO_TCP
    elif type == socket.SOCK_DGRAM:
        proto = socket.IPPROTO_UDP
    else:
        return None
    if (port is None or (isinstance(port, bytes) and port == b"")
            or (isinstance(port, str) and port == "")):
        port = 0
    else:
        try:
            port = int(port)
        except (TypeError, ValueError):
            return None     # a service name: ask the resolver
    if family == socket.AF_UNSPEC:
        families: list[int] = [_AF_INET, _AF_INET6] if base.HAS_IPV6 else [_AF_INET]
    else:
        families = [family]
    if isinstance(host, bytes):
        host = host.decode("idna")
    if "%" in host:
        # inet_pton rejects a zone index ("::1%lo"): let the resolver parse it.
        return None
    for af in families:
        try:
            socket.inet_pton(af, host)
        except OSError:
            continue
        if base.HAS_IPV6 and af == _AF_INET6:
            return af, type, proto, "", (host, port, flowinfo, scopeid)
        return af, type, proto, "", (host, port)
    return None


def interleave_addrinfos(addrinfos: list[Any],
                         first_address_family_count: int = 1) -> list[Any]:
    """Reorder *addrinfos* so that families alternate (RFC 8305 section 4),
    the first family first, its first *first_address_family_count*
    addresses together."""
    by_family: dict[int, list[Any]] = {}
    for info in addrinfos:
        by_family.setdefault(info[0], []).append(info)
    lists = list(by_family.values())
    reordered: list[Any] = []
    if first_address_family_count > 1 and lists:
        head = first_address_family_count - 1
        reordered.extend(lists[0][:head])
        del lists[0][:head]
    longest = max((len(x) for x in lists), default=0)
    for i in range(longest):
        for group in lists:
            if i < len(group):
                reordered.append(group[i])
    return reordered


class DNSMixin(Layer):
    """The loop's resolver methods."""

    def _getaddrinfo_logged(self, host: Any, port: Any, family: int, type: int,
                            proto: int, flags: int) -> list[Any]:
        """``socket.getaddrinfo`` with asyncio's debug-mode log lines."""
        parts = [f"{host}:{port!r}"]
        if family:
            parts.append(f"family={family!r}")
        if type:
            parts.append(f"type={type!r}")
        if proto:
            parts.append(f"proto={proto!r}")
        if flags:
            parts.append(f"flags={flags!r}")
        msg = ", ".join(parts)
        log = base.logger()
        log.debug("Get address info %s", msg)
        t0 = time.monotonic()
        addrinfo = socket.getaddrinfo(host, port, family, type, proto, flags)
        dt = time.monotonic() - t0
        msg = f"Getting address info {msg} took {dt * 1e3:.3f}ms: {addrinfo!r}"
        if dt >= self.slow_callback_duration:
            log.info(msg)
        else:
            log.debug(msg)
        return addrinfo

    async def getaddrinfo(self, host: Any, port: Any, *, family: int = 0,
                          type: int = 0, proto: int = 0,
                          flags: int = 0) -> list[Any]:
        if _is_numeric_host(host) and _is_numeric_port(port):
            # Nothing to look up: the loop thread answers (module docstring),
            # where asyncio would have been refused the executor.
            self._check_closed()
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            if self._debug:
                return self._getaddrinfo_logged(host, port, family, type, proto, flags)
            return socket.getaddrinfo(host, port, family, type, proto, flags)
        func = self._getaddrinfo_logged if self._debug else socket.getaddrinfo
        return await self.run_in_executor(  # type: ignore[no-any-return]
            None, func, host, port, family, type, proto, flags)

    async def getnameinfo(self, sockaddr: Any, flags: int = 0) -> tuple[str, str]:
        return await self.run_in_executor(  # type: ignore[no-any-return]
            None, socket.getnameinfo, sockaddr, flags)

    async def _ensure_resolved(self, address: Any, *, family: int = 0,
                               type: int = socket.SOCK_STREAM, proto: int = 0,
                               flags: int = 0, name: str = "address") -> list[Any]:
        """*address* as addrinfo entries: numeric ones at once, names through
        ``getaddrinfo``.  *name*: the caller's parameter, for errors."""
        host, port = address[:2]
        rest = address[2:]
        if len(rest) > 2:
            # (asyncio fails here too, counting its helper's arguments)
            raise TypeError(f"{name} must be (host, port[, flowinfo[, scope_id]]), "
                            f"got {address!r}")
        info = numeric_addrinfo(host, port, family, type, proto, *rest)
        if info is not None:
            return [info]
        # Through the public method: applications and tests replace it.
        return await self.getaddrinfo(host, port, family=family, type=type,
                                      proto=proto, flags=flags)
