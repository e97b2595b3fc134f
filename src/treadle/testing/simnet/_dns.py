"""The simulation's name service: records, ``getaddrinfo`` and
``getnameinfo`` as a pure function of them.

Owns: the map from names to addresses (every host's name, plus records the
test adds), the answers ``getaddrinfo``/``getnameinfo`` give on a simulated
host - in the shapes and with the ``socket.gaierror`` codes glibc gives -
and the address helpers the rest of the simulation shares.
Never: asks the real resolver.  Service names (``"http"``) are looked up in
the services database, which is a fixed file, not the network.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from typing import Any

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6
_EAI_NODATA = getattr(socket, "EAI_NODATA", socket.EAI_NONAME)

LOOPBACK4 = "127.0.0.1"
LOOPBACK6 = "::1"
ANY4 = "0.0.0.0"
ANY6 = "::"


def parse_ip(text: Any) -> tuple[int, str] | None:
    """``(family, canonical text)`` of an IP literal, or None."""
    if isinstance(text, str):
        return _parse_text(text)
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    if not isinstance(text, str):
        return None
    return _parse_text(text)


@functools.lru_cache(maxsize=4096)
def _parse_text(text: str) -> tuple[int, str] | None:
    if not text:
        return None
    literal = text.partition("%")[0]
    try:
        ip = ipaddress.ip_address(literal)
    except ValueError:
        return None
    return (AF_INET if ip.version == 4 else AF_INET6), str(ip)


@functools.lru_cache(maxsize=4096)
def is_loopback(address: str) -> bool:
    return ipaddress.ip_address(address).is_loopback


def is_any(address: str) -> bool:
    return address in (ANY4, ANY6)


def sockaddr(family: int, address: str, port: int) -> tuple[Any, ...]:
    if family == AF_INET6:
        return (address, port, 0, 0)
    return (address, port)


def normalise_name(name: Any) -> str:
    if isinstance(name, bytes):
        name = name.decode("idna")
    if not isinstance(name, str):
        raise TypeError(f"host name must be str or bytes, got {type(name).__name__}")
    return name.rstrip(".").lower()


def _port_number(port: Any, socktype: int) -> int:
    if port is None:
        return 0
    if isinstance(port, bytes):
        port = port.decode("ascii", "replace")
    if isinstance(port, int) and not isinstance(port, bool):
        if not 0 <= port <= 65535:
            raise OverflowError("getsockaddrarg: port must be 0-65535.")
        return port
    if isinstance(port, str):
        if port == "":
            return 0
        if port.isascii() and port.isdigit():
            number = int(port)
            if number > 65535:
                raise socket.gaierror(socket.EAI_SERVICE,
                                      "Servname not supported for ai_socktype")
            return number
        proto = "udp" if socktype == socket.SOCK_DGRAM else "tcp"
        try:
            return socket.getservbyname(port, proto)
        except OSError:
            raise socket.gaierror(socket.EAI_SERVICE,
                                  "Servname not supported for ai_socktype") from None
    raise TypeError(f"Int or String expected, got {type(port).__name__}")


class Resolver:
    """Name -> addresses; ``getaddrinfo``/``getnameinfo`` over them."""

    def __init__(self) -> None:
        #: name -> addresses, in the order they were given (answers keep it).
        self.records: dict[str, list[str]] = {}

    def add(self, name: str, addresses: list[str]) -> None:
        key = normalise_name(name)
        if not key:
            raise ValueError("a DNS name must not be empty")
        if parse_ip(key) is not None:
            raise ValueError(f"{name!r} is an IP address, not a name")
        self.records.setdefault(key, [])
        for address in addresses:
            if address not in self.records[key]:
                self.records[key].append(address)

    def remove(self, name: str) -> None:
        self.records.pop(normalise_name(name), None)

    def lookup(self, host: Any, family: int, flags: int) -> list[tuple[int, str]]:
        """``[(family, address)]`` for *host*, or ``socket.gaierror``."""
        if host is None or host == "" or host == b"":
            if flags & socket.AI_PASSIVE:
                pairs = [(AF_INET, ANY4), (AF_INET6, ANY6)]
            else:
                pairs = [(AF_INET, LOOPBACK4), (AF_INET6, LOOPBACK6)]
            return [(int(f), a) for f, a in pairs if family in (0, f)]
        ip = parse_ip(host)
        if ip is not None:
            if family not in (0, ip[0]):
                raise socket.gaierror(socket.EAI_ADDRFAMILY if hasattr(
                    socket, "EAI_ADDRFAMILY") else socket.EAI_FAMILY,
                    "Address family for hostname not supported")
            return [ip]
        if flags & socket.AI_NUMERICHOST:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        name = normalise_name(host)
        if name == "localhost":
            candidates = [LOOPBACK4, LOOPBACK6] if family == AF_INET6 else [LOOPBACK4]
            found: list[tuple[int, str]] = [(parse_ip(a) or (0, a)) for a in candidates]
        else:
            addresses = self.records.get(name)
            if addresses is None:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            found = [p for p in (parse_ip(a) for a in addresses) if p is not None]
        out: list[tuple[int, str]] = [(int(f), a) for f, a in found if family in (0, f)]
        if not out:
            raise socket.gaierror(_EAI_NODATA, "No address associated with hostname")
        return out

    def getaddrinfo(self, host: Any, port: Any, family: int = 0, type: int = 0,
                    proto: int = 0, flags: int = 0) -> list[tuple[Any, ...]]:
        if family not in (0, AF_INET, AF_INET6):
            raise socket.gaierror(socket.EAI_FAMILY, "ai_family not supported")
        number = _port_number(port, type)
        pairs = self.lookup(host, family, flags)
        canon = ""
        if flags & socket.AI_CANONNAME and host:
            canon = normalise_name(host) if parse_ip(host) is None else str(host)
        kinds: list[tuple[int, int]]
        if type == socket.SOCK_STREAM:
            kinds = [(socket.SOCK_STREAM, proto or socket.IPPROTO_TCP)]
        elif type == socket.SOCK_DGRAM:
            kinds = [(socket.SOCK_DGRAM, proto or socket.IPPROTO_UDP)]
        elif type == 0:
            kinds = [(socket.SOCK_STREAM, socket.IPPROTO_TCP),
                     (socket.SOCK_DGRAM, socket.IPPROTO_UDP),
                     (socket.SOCK_RAW, 0)]
            if proto:
                kinds = [k for k in kinds if k[1] == proto]
        else:
            kinds = [(type, proto)]
        out = []
        for fam, address in pairs:
            for socktype, pro in kinds:
                out.append((socket.AddressFamily(fam), socket.SocketKind(socktype), pro,
                            canon, sockaddr(fam, address, number)))
                canon = ""
        return out

    def getnameinfo(self, addr: Any, flags: int = 0) -> tuple[str, str]:
        if not isinstance(addr, tuple) or len(addr) < 2:
            raise TypeError("getnameinfo() argument 1 must be a tuple")
        host, port = addr[0], addr[1]
        ip = parse_ip(host)
        if ip is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        address = ip[1]
        name = None
        if not flags & socket.NI_NUMERICHOST:
            if is_loopback(address):
                name = "localhost"
            else:
                for record, addresses in self.records.items():
                    if address in addresses:
                        name = record
                        break
        if name is None:
            if flags & socket.NI_NAMEREQD:
                raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
            name = address
        if flags & socket.NI_NUMERICSERV:
            service = str(port)
        else:
            try:
                service = socket.getservbyport(
                    int(port), "udp" if flags & socket.NI_DGRAM else "tcp")
            except OSError:
                service = str(port)
        return name, service
