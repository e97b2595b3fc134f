"""The simulated hosts' network stack: sockets, ports, TCP connections and
datagrams, moved across links by the loop's timers.

Owns: ``SimSocket`` (the kernel socket a simulated program holds: the
non-blocking ``socket.socket`` API, with Linux's errno values), each host's
port table and listening sockets, the three-way handshake with its SYN
retries, moving TCP segments (``_tcp.Flow``) and datagrams across
``_link.Link``s at the times the links say, retransmission with
exponential back-off while a path is down, the TCP user timeout, resets,
and readiness: the callbacks a transport or a waiting ``sock_*`` call
registers, called level-triggered as epoll calls a loop's readers.
Never: calls a protocol.  Transports (``_transports.py``) sit on these
sockets exactly as asyncio's sit on real ones, so errors surface the way
real ones do (``recv`` raising ``ConnectionResetError``, ``SO_ERROR``
after a failed connect).

Where code runs.  Everything the network does by itself - a segment
arriving, a retransmission, a SYN timing out - runs in a loop callback in
the network's own context, never in a host's, and calls the sockets'
readiness callbacks from there (as a loop's poller queues readers).  What a
program does to a socket (``send``, ``recv``, ``close``) only changes state
and schedules timers, so one host's code never runs inside another's.
"""

from __future__ import annotations

import contextvars
import errno
import os
import socket
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from . import _dns
from ._tcp import Flow, Segment

if TYPE_CHECKING:
    from ._network import SimNetwork

AF_INET = socket.AF_INET
AF_INET6 = socket.AF_INET6
AF_UNIX = socket.AF_UNIX
SOCK_STREAM = socket.SOCK_STREAM
SOCK_DGRAM = socket.SOCK_DGRAM

#: First retransmission timeout and its cap (Linux: 200 ms, 120 s).
RTO_MIN = 0.2
RTO_MAX = 120.0
#: SYN retransmissions: 1 s, doubling (Linux: tcp_syn_retries = 6).
SYN_RTO = 1.0
#: Ephemeral ports (Linux's ip_local_port_range).
EPHEMERAL = (32768, 60999)
#: The largest UDP payload over IPv4.
MAX_DATAGRAM = 65507
#: Where simulated file descriptor numbers start: far above any real one.
FD_BASE = 10_000_000


def _oserror(code: int, text: str | None = None) -> OSError:
    return OSError(code, text or os.strerror(code))


class SimulationError(RuntimeError):
    """Something a simulated host cannot do (real I/O, a blocking call on
    a simulated socket, ...)."""


class HostKernel:
    """The network stack of one host: its ports and sockets."""

    __slots__ = ("name", "addresses", "up", "incarnation", "bound", "unix",
                 "sockets", "next_port")

    def __init__(self, name: str, addresses: list[tuple[int, str]]) -> None:
        self.name = name
        self.addresses = addresses
        self.up = True
        #: Bumped by every crash: sockets of an older incarnation are dead.
        self.incarnation = 0
        #: (family, type, port) -> sockets bound to it.
        self.bound: dict[tuple[int, int, int], list[SimSocket]] = {}
        #: Unix socket paths -> listening socket.
        self.unix: dict[str, SimSocket] = {}
        #: Every open socket, in creation order (a crash drops them all).
        self.sockets: dict[int, SimSocket] = {}
        self.next_port = EPHEMERAL[0]

    def owns(self, family: int, address: str) -> bool:
        if _dns.is_loopback(address) or _dns.is_any(address):
            return True
        return (family, address) in self.addresses

    def source_address(self, family: int, dst: str) -> str | None:
        if _dns.is_loopback(dst):
            return _dns.LOOPBACK4 if family == AF_INET else _dns.LOOPBACK6
        for fam, address in self.addresses:
            if fam == family:
                if address == dst:
                    return address
        for fam, address in self.addresses:
            if fam == family:
                return address
        return None

    def ephemeral_port(self, family: int, type: int) -> int:
        lo, hi = EPHEMERAL
        span = hi - lo + 1
        for _ in range(span):
            port = self.next_port
            self.next_port = lo + (port - lo + 1) % span
            if (family, type, port) not in self.bound:
                return port
        raise _oserror(errno.EADDRNOTAVAIL, "Cannot assign requested address")


class Stack:
    """Every host's network stack, and the wires between them."""

    def __init__(self, net: SimNetwork) -> None:
        self.net = net
        self.kernels: dict[str, HostKernel] = {}
        #: (family, address) -> host name.
        self.owners: dict[tuple[int, str], str] = {}
        self.next_fd = FD_BASE
        self.next_conn = 0
        #: Pipes whose ACKs wait for their reverse path (insertion order).
        self.ack_waiting: dict[int, Pipe] = {}
        #: Held packets per link (src, dst): callbacks to run on release.
        self.held: dict[tuple[str, str], list[tuple[Callable[..., None], tuple[Any, ...]]]] = {}
        self.deliveries = 0
        self.couriers: dict[tuple[str, str], _Courier] = {}

    # -- helpers -----------------------------------------------------------

    def kernel(self, host: str) -> HostKernel:
        return self.kernels[host]

    def call_at(self, when: float, callback: Callable[..., object], *args: Any) -> Any:
        net = self.net
        return net.loop.call_at(when, callback, *args, context=net.net_context)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> Any:
        net = self.net
        return net.loop.call_soon(callback, *args, context=net.net_context)

    def now(self) -> float:
        return float(self.net.loop.time())

    def log(self, host: str, text: str) -> None:
        self.net.log_event(host, text)

    def route(self, src: HostKernel, family: int, address: str) -> HostKernel | None:
        """The host that *address* leads to from *src* (None: nobody)."""
        if _dns.is_loopback(address) or (family, address) in src.addresses:
            return src
        name = self.owners.get((family, address))
        return None if name is None else self.kernels[name]

    def reachable(self, src: str, dst: str) -> bool:
        """A packet sent now from *src* gets to *dst* (both up, not
        partitioned)."""
        if src == dst:
            return self.kernels[src].up
        if not (self.kernels[src].up and self.kernels[dst].up):
            return False
        return self.net.link(src, dst).passes

    def deliver(self, src: str, dst: str, when: float, callback: Callable[..., None],
                *args: Any) -> None:
        """Run *callback(*args)* when a packet sent now from *src* arrives
        at *dst* (*when*), unless the link is held then: it waits for the
        release.  Packets of one link are callbacks of one courier, so
        seeded scheduling keeps them in order (a wire is first in, first
        out) while packets of different links arriving together may be
        taken in any order."""
        if src == dst:
            self.call_at(when, callback, *args)
            return
        courier = self.couriers.get((src, dst))
        if courier is None:
            courier = self.couriers[(src, dst)] = _Courier(self, src, dst)
        self.call_at(when, courier.arrive, callback, args)

    def release(self, src: str, dst: str) -> int:
        """Deliver what was held on the link *src* -> *dst* (in order)."""
        packets = self.held.pop((src, dst), [])
        for callback, args in packets:
            self.call_soon(callback, *args)
        return len(packets)

    def path_healed(self) -> None:
        """A partition healed or a host came back: ACKs that waited go
        back, stalled senders try again."""
        for key, pipe in list(self.ack_waiting.items()):
            if self.reachable(pipe.dst_host, pipe.src_host):
                del self.ack_waiting[key]
                self.call_soon(pipe.ack_back)

    # -- sockets -----------------------------------------------------------

    def socket(self, host: str, family: int, type: int, proto: int = 0) -> SimSocket:
        kernel = self.kernels.get(host)
        if kernel is None:
            raise SimulationError(f"no host named {host!r}")
        if family not in (AF_INET, AF_INET6, AF_UNIX):
            raise _oserror(errno.EAFNOSUPPORT, "Address family not supported by protocol")
        base_type = type & ~(getattr(socket, "SOCK_NONBLOCK", 0)
                             | getattr(socket, "SOCK_CLOEXEC", 0))
        if base_type not in (SOCK_STREAM, SOCK_DGRAM):
            raise _oserror(errno.EPROTONOSUPPORT, "Protocol not supported")
        if not proto and family != AF_UNIX:
            proto = socket.IPPROTO_TCP if base_type == SOCK_STREAM else socket.IPPROTO_UDP
        fd = self.next_fd
        self.next_fd += 1
        sock = SimSocket(self, kernel, fd, family, base_type, proto)
        kernel.sockets[fd] = sock
        return sock

    def crash(self, host: str) -> None:
        """Every socket of *host* vanishes: no FIN, no RST."""
        kernel = self.kernels[host]
        kernel.up = False
        kernel.incarnation += 1
        for sock in list(kernel.sockets.values()):
            sock._vanish()
        kernel.sockets.clear()
        kernel.bound.clear()
        kernel.unix.clear()
        for key in [k for k in self.held if k[1] == host or k[0] == host]:
            del self.held[key]

    def restart(self, host: str) -> None:
        self.kernels[host].up = True
        self.path_healed()

    def reset_all(self, host: str) -> int:
        """Reset every TCP connection of *host* (both ends see the RST)."""
        n = 0
        for sock in list(self.kernels[host].sockets.values()):
            if sock._conn is not None and not sock._conn.finished:
                sock._conn.reset_both()
                n += 1
        return n


class _Courier:
    """Carries the packets of one link to their arrival callbacks."""

    __slots__ = ("stack", "src", "dst")

    def __init__(self, stack: Stack, src: str, dst: str) -> None:
        self.stack = stack
        self.src = src
        self.dst = dst

    def arrive(self, callback: Callable[..., None], args: tuple[Any, ...]) -> None:
        stack = self.stack
        if stack.net.link(self.src, self.dst).held:
            stack.held.setdefault((self.src, self.dst), []).append((callback, args))
            return
        callback(*args)


class Pipe:
    """One direction of a TCP connection on the wire: the flow plus who
    sends and who receives.  Packets of one pipe are callbacks bound to it,
    so seeded scheduling keeps them in order."""

    __slots__ = ("conn", "side", "flow", "src_host", "dst_host", "last_arrival",
                 "stalled_since", "unacked_since", "rto", "retry", "deadline_timer",
                 "key")

    def __init__(self, conn: Connection, side: int, flow: Flow, src_host: str,
                 dst_host: str, key: int) -> None:
        self.conn = conn
        self.side = side          # the sending side (0: the connecting end)
        self.flow = flow
        self.src_host = src_host
        self.dst_host = dst_host
        self.last_arrival = 0.0
        #: Since when data could not get through / ACKs could not get back.
        self.stalled_since: float | None = None
        self.unacked_since: float | None = None
        self.rto = RTO_MIN
        self.retry: Any = None
        self.deadline_timer: Any = None
        self.key = key

    def __repr__(self) -> str:
        return f"<Pipe {self.conn.label(self.side)} {self.flow!r}>"

    def pump(self) -> None:
        """Put on the wire what the window allows."""
        conn = self.conn
        if conn.finished or self.retry is not None:
            return      # (waiting for the next retransmission)
        sender = conn.socks[self.side]
        if sender is None or sender._dead:
            return      # its host crashed: nothing is sent any more
        stack = conn.stack
        flow = self.flow
        if not stack.reachable(self.src_host, self.dst_host):
            if flow.unsent or (flow.fin_wanted and not flow.fin_sent):
                self._stall()
            return
        link = stack.net.link(self.src_host, self.dst_host) if \
            self.src_host != self.dst_host else None
        now = stack.now()
        choices = stack.net.choices
        while True:
            seg = flow.next_segment()
            if seg is None:
                return
            if link is None:
                when = now
            else:
                when = link.transit(now, len(seg.data), choices)
            if when < self.last_arrival:
                when = self.last_arrival      # TCP delivers in order
            self.last_arrival = when
            stack.deliver(self.src_host, self.dst_host, when, self.arrive, seg)

    def arrive(self, seg: Segment) -> None:
        conn = self.conn
        if conn.finished:
            return
        stack = conn.stack
        flow = self.flow
        if not stack.reachable(self.src_host, self.dst_host):
            # Lost on the way (partition, host down): go back and resend.
            if flow.lost(seg):
                stack.log(self.src_host, f"tcp {conn.label(self.side)} lost "
                                         f"{len(seg.data)}B")
                self._stall()
            return
        receiver = conn.socks[1 - self.side]
        if receiver is None or receiver._dead or (
                receiver._closed_by_app and seg.data):
            # The connection is gone at the far end (its host restarted, or
            # its program closed it): Linux answers RST.
            if flow.lost(seg):
                conn.send_rst_from(1 - self.side, "no such connection" if receiver is None
                                   or receiver._dead else "data after close")
            return
        acked = stack.reachable(self.dst_host, self.src_host)
        if not flow.arrived(seg, acked):
            return
        stack.deliveries += 1
        self.stalled_since = None
        self.rto = RTO_MIN
        if acked:
            if flow.unacked:
                self._acked()
        else:
            if self.unacked_since is None:
                self.unacked_since = stack.now()
            stack.ack_waiting[self.key] = self
            self._arm_deadline()
        stack.log(self.dst_host, f"tcp {conn.label(self.side)} {len(seg.data)}B"
                                 f"{' FIN' if seg.fin else ''}")
        receiver._poll()
        sender = conn.socks[self.side]
        if acked and sender is not None:
            sender._poll()
        conn.maybe_finish()

    def _acked(self) -> None:
        self.flow.acked()
        self.unacked_since = None
        self.conn.stack.ack_waiting.pop(self.key, None)

    def ack_back(self) -> None:
        """The ACKs that waited for the reverse path got back."""
        if self.conn.finished:
            return
        self._acked()
        sender = self.conn.socks[self.side]
        if sender is not None:
            sender._poll()
        self.pump()
        self.conn.maybe_finish()

    def window_opened(self) -> None:
        """The receiver read: more may go on the wire."""
        self.pump()

    def _stall(self) -> None:
        stack = self.conn.stack
        now = stack.now()
        if self.stalled_since is None:
            self.stalled_since = now
        self._arm_deadline()
        if self.retry is None:
            self.retry = stack.call_at(now + self.rto, self._retransmit)
            self.rto = min(self.rto * 2, RTO_MAX)

    def _stuck_since(self) -> float | None:
        times = [t for t in (self.stalled_since, self.unacked_since) if t is not None]
        return min(times) if times else None

    def _arm_deadline(self) -> None:
        since = self._stuck_since()
        if since is None or self.deadline_timer is not None:
            return
        stack = self.conn.stack
        self.deadline_timer = stack.call_at(since + stack.net.tcp_timeout,
                                            self._check_deadline)

    def _check_deadline(self) -> None:
        """The TCP user timeout: nothing got through (or back) for that long."""
        self.deadline_timer = None
        conn = self.conn
        since = self._stuck_since()
        if conn.finished or since is None:
            return
        stack = conn.stack
        if stack.now() - since >= stack.net.tcp_timeout - 1e-9:
            conn.timeout(self.side)
        else:
            self._arm_deadline()

    def _retransmit(self) -> None:
        self.retry = None
        if self.conn.finished:
            return
        stack = self.conn.stack
        if self.flow.unacked and stack.reachable(self.dst_host, self.src_host):
            self._acked()
        self.pump()


class Connection:
    """A TCP connection: two sockets, two pipes."""

    __slots__ = ("stack", "id", "socks", "pipes", "finished", "hosts", "addrs", "_labels")

    def __init__(self, stack: Stack, client: SimSocket, client_host: str,
                 server_host: str, client_addr: Any, server_addr: Any) -> None:
        self.stack = stack
        stack.next_conn += 1
        self.id = stack.next_conn
        net = stack.net
        self.socks: list[SimSocket | None] = [client, None]
        self.hosts = (client_host, server_host)
        self.addrs = (client_addr, server_addr)
        self.pipes = (
            Pipe(self, 0, Flow(client._sndbuf, net.rcvbuf), client_host, server_host,
                 2 * self.id),
            Pipe(self, 1, Flow(net.sndbuf, client._rcvbuf), server_host, client_host,
                 2 * self.id + 1),
        )
        self.finished = False
        self._labels: tuple[str, str] | None = None

    def label(self, side: int) -> str:
        labels = self._labels
        if labels is None:
            a, b = self.addrs
            labels = self._labels = (f"c{self.id} {_fmt(a)}>{_fmt(b)}",
                                     f"c{self.id} {_fmt(b)}>{_fmt(a)}")
        return labels[side]

    def reset_both(self) -> None:
        stack = self.stack
        stack.log(self.hosts[0], f"tcp c{self.id} reset by the network")
        for side in (0, 1):
            sock = self.socks[side]
            if sock is not None:
                sock._reset(errno.ECONNRESET)
        self.finish()

    def send_rst_from(self, side: int, why: str) -> None:
        """Side *side* sends RST to the other side (it arrives after the
        link's latency, if the path is up)."""
        stack = self.stack
        src, dst = self.hosts[side], self.hosts[1 - side]
        stack.log(src, f"tcp {self.label(side)} RST ({why})")
        if not stack.reachable(src, dst):
            self.forget(side)
            return
        when = stack.now() if src == dst else stack.now() + stack.net.link(src, dst).latency
        when = max(when, self.pipes[side].last_arrival)
        stack.deliver(src, dst, when, self.pipes[side].conn._rst_arrives, 1 - side)
        self.forget(side)

    def _rst_arrives(self, side: int) -> None:
        sock = self.socks[side]
        if sock is not None and not sock._dead:
            sock._reset(errno.ECONNRESET)
        self.finish()

    def forget(self, side: int) -> None:
        self.socks[side] = None
        if self.socks[0] is None and self.socks[1] is None:
            self.finish()

    def timeout(self, side: int) -> None:
        stack = self.stack
        stack.log(self.hosts[side], f"tcp {self.label(side)} timed out")
        sock = self.socks[side]
        if sock is not None:
            sock._reset(errno.ETIMEDOUT)
        self.forget(side)

    def finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        for pipe in self.pipes:
            self.stack.ack_waiting.pop(pipe.key, None)
            if pipe.retry is not None:
                pipe.retry.cancel()
                pipe.retry = None
            if pipe.deadline_timer is not None:
                pipe.deadline_timer.cancel()
                pipe.deadline_timer = None

    def maybe_finish(self) -> None:
        """Both FINs sent, acknowledged and read, both sockets closed."""
        a, b = self.pipes
        if (a.flow.done_sending and b.flow.done_sending
                and all(s is None or s._closed_by_app for s in self.socks)):
            self.finish()


def _fmt(addr: Any) -> str:
    if isinstance(addr, tuple):
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


class _Watch:
    """A readiness callback and the context it runs in (a copy of the
    context it was registered in, as a loop's reader handle keeps)."""

    __slots__ = ("callback", "args", "context")

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.callback = callback
        self.args = args
        self.context = contextvars.copy_context()


class SimSocket:
    """A socket on a simulated host: the non-blocking ``socket.socket`` API.

    Made by the simulated loop's methods (``create_connection``, ...) and by
    ``Host.socket()``.  Operations that would block raise
    ``BlockingIOError``, as a non-blocking socket does; use the loop's
    ``sock_*`` methods to wait."""

    def __init__(self, stack: Stack, kernel: HostKernel, fd: int, family: int,
                 type: int, proto: int) -> None:
        self._stack = stack
        self._kernel = kernel
        self._incarnation = kernel.incarnation
        self._fd = fd
        self._family = family
        self._type = type
        self._proto = proto
        self._timeout: float | None = None
        self._options: dict[tuple[int, int], Any] = {}
        self._local: Any = None
        self._remote: Any = None
        self._state = "new"          # new, connecting, connected, listening, closed
        self._error = 0
        self._dead = False
        self._closed_by_app = False
        self._rst_sent = False
        self._shut_rd = False
        # stream
        self._conn: Connection | None = None
        self._side = 0
        self._backlog = 0
        self._accept_queue: deque[SimSocket] = deque()
        self._syn_timer: Any = None
        self._sndbuf = stack.net.sndbuf
        self._rcvbuf = stack.net.rcvbuf
        # datagram
        self._datagrams: deque[tuple[bytes, Any]] = deque()
        self._datagram_bytes = 0
        # readiness
        self._reader: _Watch | None = None
        self._writer: _Watch | None = None
        self._poll_pending = False
        #: The transport using this socket (crashes silence it).
        self._transport: Any = None
        #: The real socket this one stands in for (closed with it).
        self._real: Any = None

    # -- identity ------------------------------------------------------------

    @property
    def family(self) -> socket.AddressFamily:
        return socket.AddressFamily(self._family)

    @property
    def type(self) -> socket.SocketKind:
        return socket.SocketKind(self._type)

    @property
    def proto(self) -> int:
        return self._proto

    @property
    def host_name(self) -> str:
        return self._kernel.name

    def fileno(self) -> int:
        return -1 if self._state == "closed" else self._fd

    def __repr__(self) -> str:
        parts = [f"<SimSocket host={self._kernel.name!r} fd={self.fileno()}",
                 f"family={self.family.name}", f"type={self.type.name}"]
        if self._local is not None:
            parts.append(f"laddr={self._local!r}")
        if self._remote is not None:
            parts.append(f"raddr={self._remote!r}")
        return " ".join(parts) + ">"

    def __enter__(self) -> SimSocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- options -------------------------------------------------------------

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def settimeout(self, value: float | None) -> None:
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def setsockopt(self, level: int, option: int, value: Any, optlen: Any = None) -> None:
        self._check_open()
        self._options[(level, option)] = value
        if level == socket.SOL_SOCKET and option == socket.SO_SNDBUF:
            self._sndbuf = max(1, int(value))
        elif level == socket.SOL_SOCKET and option == socket.SO_RCVBUF:
            self._rcvbuf = max(1, int(value))

    def getsockopt(self, level: int, option: int, buflen: int = 0) -> Any:
        self._check_open()
        if level == socket.SOL_SOCKET:
            if option == socket.SO_ERROR:
                err, self._error = self._error, 0
                return err
            if option == socket.SO_TYPE:
                return self._type
            if option == socket.SO_SNDBUF:
                return self._sndbuf
            if option == socket.SO_RCVBUF:
                return self._rcvbuf
        value = self._options.get((level, option), 0)
        if isinstance(value, bool):
            value = int(value)
        if buflen:
            return bytes(buflen) if not isinstance(value, bytes) else value
        return value

    # -- names ----------------------------------------------------------------

    def getsockname(self) -> Any:
        self._check_open()
        if self._local is None:
            if self._family == AF_UNIX:
                return ""
            return _dns.sockaddr(self._family,
                                 _dns.ANY4 if self._family == AF_INET else _dns.ANY6, 0)
        return self._local

    def getpeername(self) -> Any:
        self._check_open()
        if self._remote is None or self._state != "connected":
            raise _oserror(errno.ENOTCONN, "Transport endpoint is not connected")
        return self._remote

    def _check_open(self) -> None:
        if self._state == "closed":
            raise _oserror(errno.EBADF, "Bad file descriptor")

    def _would_block(self) -> BlockingIOError:
        if self._timeout != 0.0:
            raise SimulationError(
                f"{self!r} is in blocking mode: a simulated socket cannot block the "
                f"thread; make it non-blocking (setblocking(False)) and use the "
                f"loop's sock_* methods")
        return BlockingIOError(errno.EAGAIN, "Resource temporarily unavailable")

    def _take_error(self) -> None:
        if self._error:
            err, self._error = self._error, 0
            raise _oserror(err)

    # -- binding --------------------------------------------------------------

    def _parse_addr(self, address: Any) -> tuple[str, int]:
        if self._family == AF_UNIX:
            raise TypeError("a Unix socket address is a str")
        if not isinstance(address, tuple) or len(address) < 2:
            raise TypeError(f"{'AF_INET6' if self._family == AF_INET6 else 'AF_INET'} "
                            f"address must be tuple, not {type(address).__name__}")
        host, port = address[0], address[1]
        if isinstance(port, bool) or not isinstance(port, int):
            raise TypeError(f"'{type(port).__name__}' object cannot be interpreted "
                            f"as an integer")
        if not 0 <= port <= 65535:
            raise OverflowError("bind(): port must be 0-65535.")
        if host in ("", None):
            host = _dns.ANY4 if self._family == AF_INET else _dns.ANY6
        parsed = _dns.parse_ip(host)
        if parsed is None or parsed[0] != self._family:
            if self._family == AF_INET and host == "<broadcast>":
                return "255.255.255.255", port
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return parsed[1], port

    def bind(self, address: Any) -> None:
        self._check_open()
        if self._local is not None:
            raise _oserror(errno.EINVAL, "Invalid argument")
        if self._family == AF_UNIX:
            path = os.fsdecode(address) if not isinstance(address, str) else address
            if path and path in self._kernel.unix:
                raise _oserror(errno.EADDRINUSE, "Address already in use")
            self._local = path
            if path:
                self._kernel.unix[path] = self
            return
        host, port = self._parse_addr(address)
        kernel = self._kernel
        if not kernel.owns(self._family, host):
            raise _oserror(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        if port == 0:
            port = kernel.ephemeral_port(self._family, self._type)
        key = (self._family, self._type, port)
        users = kernel.bound.get(key, [])
        reuse = bool(self._options.get((socket.SOL_SOCKET, getattr(socket, "SO_REUSEPORT", -1))))
        for other in users:
            other_reuse = bool(other._options.get(
                (socket.SOL_SOCKET, getattr(socket, "SO_REUSEPORT", -1))))
            other_host = other._local[0]
            if reuse and other_reuse:
                continue
            if other_host == host or _dns.is_any(other_host) or _dns.is_any(host):
                raise _oserror(errno.EADDRINUSE, "Address already in use")
        kernel.bound.setdefault(key, []).append(self)
        self._local = _dns.sockaddr(self._family, host, port)

    def _autobind(self, dst: str) -> None:
        if self._local is not None:
            return
        source = self._kernel.source_address(self._family, dst)
        if source is None:
            raise _oserror(errno.ENETUNREACH, "Network is unreachable")
        port = self._kernel.ephemeral_port(self._family, self._type)
        self._kernel.bound.setdefault((self._family, self._type, port), []).append(self)
        self._local = _dns.sockaddr(self._family, source, port)

    def _unbind(self) -> None:
        if self._family == AF_UNIX:
            if self._local and self._kernel.unix.get(self._local) is self:
                del self._kernel.unix[self._local]
            return
        if self._local is None:
            return
        key = (self._family, self._type, self._local[1])
        users = self._kernel.bound.get(key)
        if users and self in users:
            users.remove(self)
            if not users:
                del self._kernel.bound[key]

    # -- listening and accepting ---------------------------------------------

    def listen(self, backlog: int = 128) -> None:
        self._check_open()
        if self._type != SOCK_STREAM:
            raise _oserror(errno.EOPNOTSUPP, "Operation not supported")
        if self._local is None:
            if self._family == AF_UNIX:
                raise _oserror(errno.EINVAL, "Invalid argument")
            self.bind(("", 0))
        self._backlog = max(1, min(int(backlog), 4096))
        self._state = "listening"

    def accept(self) -> tuple[SimSocket, Any]:
        self._check_open()
        if self._state != "listening":
            raise _oserror(errno.EINVAL, "Invalid argument")
        if not self._accept_queue:
            raise self._would_block()
        conn = self._accept_queue.popleft()
        return conn, conn._remote

    def _syn_arrived(self, conn: Connection, client_addr: Any, server_addr: Any) -> bool:
        """A SYN for this listening socket: queue a connection (False: the
        accept queue is full, the SYN is dropped)."""
        if len(self._accept_queue) >= self._backlog:
            return False
        stack = self._stack
        sock = stack.socket(self._kernel.name, self._family, self._type, self._proto)
        sock._local = server_addr
        sock._remote = client_addr
        sock._state = "connected"
        sock._conn = conn
        sock._side = 1
        sock._options = dict(self._options)
        conn.socks[1] = sock
        self._accept_queue.append(sock)
        self._poll()
        return True

    # -- connecting -----------------------------------------------------------

    def connect(self, address: Any) -> None:
        err = self.connect_ex(address)
        if err == errno.EINPROGRESS:
            raise BlockingIOError(errno.EINPROGRESS, "Operation now in progress")
        if err:
            raise _oserror(err)

    def connect_ex(self, address: Any) -> int:
        self._check_open()
        if self._type == SOCK_DGRAM:
            return self._connect_datagram(address)
        if self._state == "connected":
            return errno.EISCONN
        if self._state == "connecting":
            return errno.EALREADY
        if self._state == "listening":
            return errno.EINVAL
        if self._error:
            err, self._error = self._error, 0
            return err
        stack = self._stack
        if self._family == AF_UNIX:
            path = os.fsdecode(address) if not isinstance(address, str) else address
            listener = self._kernel.unix.get(path)
            if listener is None:
                return errno.ENOENT
            if listener._state != "listening":
                return errno.ECONNREFUSED
            if self._local is None:
                self._local = ""
            conn = Connection(stack, self, self._kernel.name, self._kernel.name,
                              "", path)
            self._conn = conn
            self._remote = path
            if not listener._syn_arrived(conn, "", path):
                return errno.EAGAIN
            self._state = "connected"
            stack.log(self._kernel.name, f"unix c{conn.id} connected to {path}")
            return 0
        host, port = self._parse_addr(address)
        if port == 0:
            return errno.ECONNREFUSED
        self._autobind(host)
        target = stack.route(self._kernel, self._family, host)
        self._remote = _dns.sockaddr(self._family, host, port)
        self._state = "connecting"
        if target is None:
            # Nobody has the address: ARP gets no answer.
            stack.log(self._kernel.name, f"tcp connect {_fmt(self._remote)}: no route")
            self._syn_timer = stack.call_at(stack.now() + 3.0, self._connect_failed,
                                            errno.EHOSTUNREACH)
            return errno.EINPROGRESS
        conn = Connection(stack, self, self._kernel.name, target.name,
                          self._local, self._remote)
        self._conn = conn
        stack.log(self._kernel.name, f"tcp c{conn.id} connect {_fmt(self._local)}>"
                                     f"{_fmt(self._remote)}")
        self._send_syn(target, 0, stack.now())
        return errno.EINPROGRESS

    def _send_syn(self, target: HostKernel, attempt: int, started: float) -> None:
        stack = self._stack
        if self._state != "connecting" or self._dead:
            return
        src = self._kernel.name
        now = stack.now()
        timeout = stack.net.connect_timeout
        if now - started >= timeout - 1e-9:
            self._connect_failed(errno.ETIMEDOUT)
            return
        retry_at = min(now + SYN_RTO * (2 ** attempt), started + timeout)
        self._syn_timer = stack.call_at(retry_at, self._send_syn, target, attempt + 1,
                                        started)
        if attempt:
            stack.log(src, f"tcp c{self._conn.id if self._conn else 0} SYN retry {attempt}")
        if not stack.reachable(src, target.name):
            return
        if src == target.name:
            when = now
        else:
            when = stack.net.link(src, target.name).transit(now, 0, stack.net.choices)
        stack.deliver(src, target.name, when, self._syn_arrives, target)

    def _syn_arrives(self, target: HostKernel) -> None:
        stack = self._stack
        conn = self._conn
        if conn is None or self._state != "connecting" or self._dead:
            return
        if not stack.reachable(self._kernel.name, target.name):
            return      # lost: the SYN timer sends it again
        host, port = self._remote[0], self._remote[1]
        listener = None
        for key in ((self._family, SOCK_STREAM, port),):
            for sock in target.bound.get(key, []):
                if sock._state == "listening" and (
                        sock._local[0] == host or _dns.is_any(sock._local[0])):
                    if listener is None or not _dns.is_any(sock._local[0]):
                        listener = sock
        reply_ok = stack.reachable(target.name, self._kernel.name)
        if listener is None:
            stack.log(target.name, f"tcp c{conn.id} refused (nothing listens on "
                                   f"{_fmt(self._remote)})")
            if reply_ok:
                self._reply(target, self._refused)
            return
        conn.hosts = (self._kernel.name, target.name)
        conn.pipes[0].dst_host = target.name
        conn.pipes[1].src_host = target.name
        server_addr = _dns.sockaddr(self._family, host, port)
        if not listener._syn_arrived(conn, self._local, server_addr):
            stack.log(target.name, f"tcp c{conn.id} SYN dropped (backlog full)")
            return
        stack.log(target.name, f"tcp c{conn.id} accepted on {_fmt(server_addr)}")
        if reply_ok:
            self._reply(target, self._established)

    def _reply(self, target: HostKernel, callback: Callable[[], None]) -> None:
        stack = self._stack
        src = target.name
        dst = self._kernel.name
        now = stack.now()
        when = now if src == dst else stack.net.link(src, dst).transit(
            now, 0, stack.net.choices)
        if self._conn is not None:
            pipe = self._conn.pipes[1]
            when = max(when, pipe.last_arrival)
            pipe.last_arrival = when
        stack.deliver(src, dst, when, callback)

    def _refused(self) -> None:
        self._connect_failed(errno.ECONNREFUSED)

    def _established(self) -> None:
        if self._state != "connecting" or self._dead:
            return
        if self._syn_timer is not None:
            self._syn_timer.cancel()
            self._syn_timer = None
        self._state = "connected"
        conn = self._conn
        if conn is not None:
            self._stack.log(self._kernel.name, f"tcp c{conn.id} established")
            conn.pipes[0].pump()
        self._poll()

    def _connect_failed(self, err: int) -> None:
        if self._state != "connecting" or self._dead:
            return
        if self._syn_timer is not None:
            self._syn_timer.cancel()
            self._syn_timer = None
        self._stack.log(self._kernel.name,
                        f"tcp connect {_fmt(self._remote)} failed: {errno.errorcode[err]}")
        self._state = "new"
        self._error = err
        conn = self._conn
        self._conn = None
        if conn is not None:
            if conn.socks[1] is not None:
                # The server accepted, but the client gave up: the server's
                # end learns nothing (a half-open connection).
                conn.socks[0] = None
            else:
                conn.finish()
        self._poll()

    # -- stream I/O -------------------------------------------------------------

    def _stream_checks(self) -> Connection:
        self._check_open()
        self._take_error()
        if self._state != "connected" or self._conn is None:
            if self._state == "connecting":
                raise self._would_block()
            raise _oserror(errno.ENOTCONN, "Transport endpoint is not connected")
        return self._conn

    def send(self, data: Any, flags: int = 0) -> int:
        if self._type == SOCK_DGRAM:
            if self._remote is None:
                raise _oserror(errno.EDESTADDRREQ, "Destination address required")
            return self.sendto(data, self._remote)
        conn = self._stream_checks()
        pipe = conn.pipes[self._side]
        if pipe.flow.fin_wanted:
            raise _oserror(errno.EPIPE, "Broken pipe")
        view = memoryview(data).cast("B")
        if not len(view):
            return 0
        n = pipe.flow.write(view)
        if not n:
            raise self._would_block()
        pipe.pump()
        return n

    def sendall(self, data: Any, flags: int = 0) -> None:
        view = memoryview(data).cast("B")
        n = self.send(view)
        if n != len(view):
            raise self._would_block()

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if self._type == SOCK_DGRAM:
            return self.recvfrom(bufsize)[0]
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        conn = self._stream_checks()
        flow = conn.pipes[1 - self._side].flow
        if self._shut_rd:
            return b""
        if not flow.readable():
            raise self._would_block()
        data = flow.read(bufsize)
        if flow.unsent or (flow.fin_wanted and not flow.fin_sent):
            conn.pipes[1 - self._side].window_opened()
        return data

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        view = memoryview(buffer).cast("B")
        n = nbytes or len(view)
        data = self.recv(n)
        view[:len(data)] = data
        return len(data)

    def shutdown(self, how: int) -> None:
        self._check_open()
        if self._type == SOCK_DGRAM:
            return
        conn = self._conn
        if conn is None or self._state != "connected":
            raise _oserror(errno.ENOTCONN, "Transport endpoint is not connected")
        if how in (socket.SHUT_RD, socket.SHUT_RDWR):
            self._shut_rd = True
        if how in (socket.SHUT_WR, socket.SHUT_RDWR):
            pipe = conn.pipes[self._side]
            if not pipe.flow.fin_wanted:
                pipe.flow.shutdown()
                pipe.pump()

    def _unread(self) -> int:
        conn = self._conn
        if conn is None:
            return 0
        return conn.pipes[1 - self._side].flow.received_bytes

    # -- closing ----------------------------------------------------------------

    def close(self) -> None:
        if self._state == "closed":
            return
        was = self._state
        self._state = "closed"
        self._reader = self._writer = None
        self._closed_by_app = True
        if self._syn_timer is not None:
            self._syn_timer.cancel()
            self._syn_timer = None
        self._kernel.sockets.pop(self._fd, None)
        self._unbind()
        real = self._real
        if real is not None:
            self._real = None
            self._stack.net._shadow_fds.pop(real.fileno(), None)
            real.close()
        if self._dead:
            return
        conn = self._conn
        if was == "listening":
            # Connections nobody accepted are reset.
            while self._accept_queue:
                pending = self._accept_queue.popleft()
                pending.close_with_reset()
            return
        if conn is None or conn.finished:
            return
        if was == "connecting":
            conn.forget(self._side)
            return
        pipe = conn.pipes[self._side]
        if self._unread():
            # Linux: closing with unread data sends RST, not FIN.
            self.close_with_reset(already_closed=True)
            return
        if not pipe.flow.fin_wanted:
            pipe.flow.shutdown()
            pipe.pump()
        conn.maybe_finish()

    def close_with_reset(self, already_closed: bool = False) -> None:
        """Close and send RST (SO_LINGER 0, or unread data at close)."""
        if not already_closed:
            self._reader = self._writer = None
            self._state = "closed"
            self._closed_by_app = True
            self._kernel.sockets.pop(self._fd, None)
            self._unbind()
        conn = self._conn
        if conn is not None and not conn.finished:
            self._rst_sent = True
            conn.pipes[1 - self._side].flow.discard()
            conn.send_rst_from(self._side, "close with unread data"
                               if already_closed else "abort")

    def detach(self) -> int:
        raise SimulationError("a simulated socket has no file descriptor to detach")

    def _reset(self, err: int) -> None:
        """The connection failed (RST, timeout): the next operation raises."""
        if self._state == "closed" or self._dead:
            return
        conn = self._conn
        if conn is not None:
            conn.pipes[1 - self._side].flow.discard()
        self._error = err
        self._state = "reset"
        self._poll()

    def _vanish(self) -> None:
        """The host crashed: this socket is gone, silently."""
        self._dead = True
        self._reader = self._writer = None
        if self._syn_timer is not None:
            self._syn_timer.cancel()
            self._syn_timer = None
        transport = self._transport
        if transport is not None:
            transport._vanish()

    # -- datagrams ---------------------------------------------------------------

    def _connect_datagram(self, address: Any) -> int:
        if self._family == AF_UNIX:
            self._remote = address
            return 0
        host, port = self._parse_addr(address)
        self._autobind(host)
        self._remote = _dns.sockaddr(self._family, host, port)
        self._state = "connected"
        return 0

    def sendto(self, data: Any, flags_or_address: Any, address: Any = None) -> int:
        self._check_open()
        if address is None:
            address = flags_or_address
        if self._type != SOCK_DGRAM:
            return self.send(data)
        self._take_error()
        view = memoryview(data).cast("B")
        if len(view) > MAX_DATAGRAM:
            raise _oserror(errno.EMSGSIZE, "Message too long")
        if self._family == AF_UNIX:
            raise SimulationError("Unix datagram sockets are not simulated")
        host, port = self._parse_addr(address)
        self._autobind(host)
        stack = self._stack
        target = stack.route(self._kernel, self._family, host)
        payload = view.tobytes()
        src = self._kernel.name
        dst_addr = _dns.sockaddr(self._family, host, port)
        if target is None:
            stack.log(src, f"udp {_fmt(self._local)}>{_fmt(dst_addr)} {len(payload)}B "
                           f"no route")
            return len(payload)
        if not stack.reachable(src, target.name):
            stack.log(src, f"udp {_fmt(self._local)}>{_fmt(dst_addr)} {len(payload)}B lost")
            return len(payload)
        now = stack.now()
        if target.name == src:
            copies = [0.0]
            base = now
        else:
            link = stack.net.link(src, target.name)
            copies = link.datagram_copies(stack.net.choices)
            base = link.transit(now, len(payload), stack.net.choices)
        if not copies:
            stack.log(src, f"udp {_fmt(self._local)}>{_fmt(dst_addr)} {len(payload)}B "
                           f"dropped")
        for extra in copies:
            stack.deliver(src, target.name, base + extra, self._datagram_arrives,
                          target, dst_addr, payload, self._local)
        return len(payload)

    def _datagram_arrives(self, target: HostKernel, dst_addr: Any, payload: bytes,
                          src_addr: Any) -> None:
        stack = self._stack
        if not stack.reachable(self._kernel.name, target.name):
            return
        receiver = None
        host, port = dst_addr[0], dst_addr[1]
        for sock in target.bound.get((self._family, SOCK_DGRAM, port), []):
            if sock._local[0] == host or _dns.is_any(sock._local[0]):
                if sock._remote is not None and sock._remote[:2] != src_addr[:2]:
                    continue
                receiver = sock
                if not _dns.is_any(sock._local[0]):
                    break
        stack.log(target.name, f"udp {_fmt(src_addr)}>{_fmt(dst_addr)} {len(payload)}B"
                               f"{'' if receiver else ' port unreachable'}")
        if receiver is None:
            # ICMP port unreachable: a connected sender learns ECONNREFUSED.
            if stack.reachable(target.name, self._kernel.name) and \
                    self._remote is not None and not self._dead:
                self._error = errno.ECONNREFUSED
                self._poll()
            return
        if receiver._datagram_bytes + len(payload) > receiver._rcvbuf:
            stack.log(target.name, "udp receive buffer full: dropped")
            return
        stack.deliveries += 1
        receiver._datagrams.append((payload, src_addr))
        receiver._datagram_bytes += len(payload)
        receiver._poll()

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, Any]:
        self._check_open()
        if self._type != SOCK_DGRAM:
            return self.recv(bufsize), None
        self._take_error()
        if not self._datagrams:
            raise self._would_block()
        payload, addr = self._datagrams.popleft()
        self._datagram_bytes -= len(payload)
        return payload[:bufsize], addr

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> tuple[int, Any]:
        view = memoryview(buffer).cast("B")
        data, addr = self.recvfrom(nbytes or len(view))
        view[:len(data)] = data
        return len(data), addr

    # -- readiness ---------------------------------------------------------------

    def readable(self) -> bool:
        if self._error or self._state == "reset":
            return True
        if self._state == "listening":
            return bool(self._accept_queue)
        if self._type == SOCK_DGRAM:
            return bool(self._datagrams)
        conn = self._conn
        if conn is None or self._state != "connected":
            return False
        return conn.pipes[1 - self._side].flow.readable() or self._shut_rd

    def writable(self) -> bool:
        if self._error or self._state == "reset":
            return True
        if self._type == SOCK_DGRAM:
            return True
        conn = self._conn
        if self._state != "connected" or conn is None:
            return self._state not in ("connecting", "listening")
        return conn.pipes[self._side].flow.send_space() > 0

    def _watch(self, readable: bool, callback: Callable[..., object] | None,
               *args: Any) -> None:
        """Register (or with None remove) the readiness callback; called
        level-triggered while the socket stays ready, like a loop's reader."""
        watch = None if callback is None else _Watch(callback, args)
        if readable:
            self._reader = watch
        else:
            self._writer = watch
        if watch is not None and (self.readable() if readable else self.writable()):
            self._schedule_poll()

    def _schedule_poll(self) -> None:
        if not self._poll_pending and not self._dead:
            self._poll_pending = True
            self._stack.call_soon(self._poll_later)

    def _poll_later(self) -> None:
        self._poll_pending = False
        self._poll()

    def _poll(self) -> None:
        """Call the readiness callbacks whose condition holds (from a
        network callback only: see the module docstring)."""
        if self._dead:
            return
        reader = self._reader
        if reader is not None and self.readable():
            _run_watch(self._stack, reader)
        writer = self._writer
        if writer is not None and self.writable():
            _run_watch(self._stack, writer)
        # Level-triggered: still ready and still watched -> again next turn.
        if (self._reader is not None and self._reader is reader and self.readable()) or (
                self._writer is not None and self._writer is writer and self.writable()):
            self._schedule_poll()


def _run_watch(stack: Stack, watch: _Watch) -> None:
    try:
        watch.context.run(watch.callback, *watch.args)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        stack.net.loop.call_exception_handler({
            "message": f"Exception in readiness callback {watch.callback!r}",
            "exception": exc,
        })
