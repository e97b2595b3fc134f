"""``SimNetwork``: the public face of the simulation.

Owns: the hosts and their addresses, the DNS, the links between hosts and
the faults applied to them (scripted, scheduled or drawn from the seed),
attaching to a ``SimEventLoop`` (virtual clock, the recorded ready order,
the instrument that tracks which tasks run on which host), the event log,
and ``run()``, which runs a whole scenario on a loop of its own.
Never: moves packets (``_stack.py``) or implements a loop method
(``_loop.py``).  Checks every name it is given: an unknown host, a link
from a host to itself, two hosts claiming one address are ``ValueError``s
that say which.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
import weakref
from typing import Any, Awaitable, Callable, Coroutine, Iterable

from ..clock import VirtualClock
from . import _dns, _link
from ._choices import Choices, RandomSource, Source, format_deviations
from ._events import EventLog, format_events
from ._faults import Fault, FaultSchedule
from ._host import Disk, Host, Incarnation, current_host
from ._nondet import Patches, run_in_thread
from ._order import SimOrder
from ._stack import HostKernel, SimSocket, SimulationError, Stack

#: Where automatic addresses come from: 10.0.0.1, 10.0.0.2, ...
_AUTO_PREFIX = "10.0"


class SimNetwork:
    """A simulated network of hosts, on virtual time, driven by one seed.

    ``SimNetwork(seed=0, **options)``; the options (all keywords):

    * link defaults: ``latency`` (0.001 s), ``jitter``, ``bandwidth``
      (bytes/s, None: unlimited), ``loss``, ``duplicate``, ``reorder``,
      ``reorder_delay`` (datagram faults; TCP turns loss into
      retransmission delays);
    * TCP: ``tcp_timeout`` (900 s: how long unacknowledged data is retried
      before the connection fails with ``TimeoutError``),
      ``connect_timeout`` (127 s, Linux's SYN retries), ``sndbuf``/
      ``rcvbuf`` (kernel buffer sizes);
    * ``dns_latency`` (0): how long a name lookup takes;
    * ``shuffle`` (True): the seed also orders tasks that are ready
      together (seeded scheduling); False keeps the canonical order;
    * ``source``: a ``_choices.Source`` that answers every decision
      instead of the seed (replay, PCT, systematic search);
    * ``fake_time``/``fake_random`` (True): inside the run, wall clocks,
      ``time.monotonic``, ``datetime.now()``, ``random``, ``os.urandom``
      and ``uuid4()`` follow the simulation; ``wall_clock``: the time
      ``time.time()`` shows at the start;
    * ``deterministic_threads`` (True): executor work completes at a
      deterministic point (see ``_nondet.py``);
    * ``log_tail`` (50), ``keep_events`` (False), ``log_steps`` (False):
      what the event log keeps.
    """

    def __init__(self, seed: int = 0, *, latency: float = 0.001, jitter: float = 0.0,
                 bandwidth: float | None = None, loss: float = 0.0,
                 duplicate: float = 0.0, reorder: float = 0.0,
                 reorder_delay: float = 0.01, tcp_timeout: float = 900.0,
                 connect_timeout: float = 127.0, sndbuf: int = 64 * 1024,
                 rcvbuf: int = 128 * 1024, dns_latency: float = 0.0,
                 shuffle: bool = True, source: Source | None = None,
                 fake_time: bool = True, fake_random: bool = True,
                 wall_clock: float = 1_700_000_000.0,
                 deterministic_threads: bool = True, thread_timeout: float = 30.0,
                 log_tail: int = 50, keep_events: bool = False,
                 log_steps: bool = False) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self.seed = seed
        self.link_defaults = _link.check_params(dict(
            latency=latency, jitter=jitter, bandwidth=bandwidth, loss=loss,
            duplicate=duplicate, reorder=reorder, reorder_delay=reorder_delay))
        for name, value in (("tcp_timeout", tcp_timeout),
                            ("connect_timeout", connect_timeout),
                            ("dns_latency", dns_latency)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not value >= 0:
                raise ValueError(f"{name} must be a number >= 0, got {value!r}")
        self.tcp_timeout = float(tcp_timeout)
        self.connect_timeout = float(connect_timeout)
        self.sndbuf = int(sndbuf)
        self.rcvbuf = int(rcvbuf)
        self.dns_latency = float(dns_latency)
        self.source = source if source is not None else RandomSource(seed, shuffle=shuffle)
        self.choices = Choices(self.source)
        self.fake_time = fake_time
        self.fake_random = fake_random
        self.wall_clock = float(wall_clock)
        self.deterministic_threads = deterministic_threads
        self.thread_timeout = thread_timeout
        self.log = EventLog(tail=log_tail, keep_all=keep_events)
        self.log_steps = log_steps
        self.hosts: dict[str, Host] = {}
        self.dns = _dns.Resolver()
        self._links: dict[tuple[str, str], _link.Link] = {}
        self._dns_faults: dict[str | None, tuple[bool, float]] = {}
        self._stack = Stack(self)
        #: The run is over (see _power_off).
        self._powered_off = False
        self._applied = FaultSchedule()
        self._timers: list[Any] = []
        self._auto = 0
        self.loop: Any = None
        #: The network's own context: packets are handled in it, never in a
        #: host's (see _stack.py).
        self.net_context = contextvars.copy_context()
        self._order: SimOrder | None = None
        self._patches: Patches | None = None
        self._serials: dict[int, int] = {}
        self._next_serial = 0
        self._t0 = 0.0
        self._steps: _StepLog | None = None
        #: Real sockets adopted by the simulation -> their stand-ins.
        self._shadows: weakref.WeakKeyDictionary[Any, SimSocket] = \
            weakref.WeakKeyDictionary()
        self._shadow_fds: dict[int, SimSocket] = {}

    def __repr__(self) -> str:
        return (f"<SimNetwork seed={self.seed} hosts={list(self.hosts)} "
                f"events={self.log.count}>")

    # -- hosts ----------------------------------------------------------------------

    def add_host(self, name: str, addresses: str | Iterable[str] | None = None, *,
                 disk: Disk | None = None) -> Host:
        """A new host called *name* (also its DNS name) with *addresses*
        (one IP address, or several; default: the next free 10.0.x.y)."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"a host needs a non-empty name, got {name!r}")
        if name in self.hosts:
            raise ValueError(f"there is already a host named {name!r}")
        if _dns.parse_ip(name) is not None:
            raise ValueError(f"a host name cannot be an IP address: {name!r}")
        if addresses is None:
            addresses = [self._next_auto_address()]
        elif isinstance(addresses, str):
            addresses = [addresses]
        parsed: list[tuple[int, str]] = []
        for address in addresses:
            ip = _dns.parse_ip(address)
            if ip is None:
                raise ValueError(f"host {name!r}: {address!r} is not an IP address")
            if _dns.is_loopback(ip[1]) or _dns.is_any(ip[1]):
                raise ValueError(f"host {name!r}: {address!r} is not a host address "
                                 f"(every host has its own loopback)")
            owner = self._stack.owners.get(ip)
            if owner is not None or ip in parsed:
                raise ValueError(f"address {ip[1]} already belongs to host "
                                 f"{owner or name!r}")
            parsed.append(ip)
        if not parsed:
            raise ValueError(f"host {name!r} needs at least one address")
        host = Host(self, name, [a for _, a in parsed], disk)
        self.hosts[name] = host
        self._stack.kernels[name] = HostKernel(name, parsed)
        for ip in parsed:
            self._stack.owners[ip] = name
        self.dns.add(name, host.addresses)
        host.incarnation.alive = True
        self.log_event(name, f"host added {' '.join(host.addresses)}")
        return host

    def _next_auto_address(self) -> str:
        while True:
            n = self._auto
            self._auto += 1
            address = f"{_AUTO_PREFIX}.{n // 250}.{n % 250 + 1}"
            if (socket.AF_INET, address) not in self._stack.owners:
                return address

    def host(self, name: str | Host) -> Host:
        """The host called *name* (``ValueError`` naming the hosts there are)."""
        if isinstance(name, Host):
            if self.hosts.get(name.name) is not name:
                raise ValueError(f"{name!r} is not a host of this network")
            return name
        host = self.hosts.get(name)
        if host is None:
            known = ", ".join(repr(h) for h in self.hosts) or "none yet"
            raise ValueError(f"no host named {name!r} (hosts: {known})")
        return host

    def add_dns(self, name: str, *targets: str) -> None:
        """A DNS name for addresses or hosts: ``add_dns("api", "a", "b")``
        (round robin is the caller's: answers keep this order)."""
        addresses: list[str] = []
        for target in targets:
            ip = _dns.parse_ip(target)
            if ip is not None:
                addresses.append(ip[1])
            else:
                addresses.extend(self.host(target).addresses)
        if not addresses:
            raise ValueError(f"add_dns({name!r}) needs at least one host or address")
        self.dns.add(name, addresses)

    def remove_dns(self, name: str) -> None:
        self.dns.remove(name)

    # -- links ----------------------------------------------------------------------

    def link(self, src: str | Host, dst: str | Host) -> _link.Link:
        """The link carrying packets from *src* to *dst*."""
        found = self._links.get((src, dst))  # type: ignore[arg-type]
        if found is not None:
            return found
        a = self.host(src).name
        b = self.host(dst).name
        if a == b:
            raise ValueError(f"there is no link from host {a!r} to itself "
                             f"(its loopback cannot fail)")
        found = self._links.get((a, b))
        if found is None:
            found = self._links[(a, b)] = _link.Link(a, b, self.link_defaults)
        return found

    def _pairs(self, a: str | Host | None, b: str | Host | None,
               one_way: bool) -> list[tuple[str, str]]:
        if a is None:
            if b is not None:
                raise ValueError("name the first host when naming the second")
            names = list(self.hosts)
            return [(x, y) for x in names for y in names if x != y]
        first = self.host(a).name
        if b is None:
            others = [n for n in self.hosts if n != first]
            pairs = [(first, o) for o in others]
            return pairs if one_way else pairs + [(o, first) for o in others]
        second = self.host(b).name
        if first == second:
            raise ValueError(f"there is no link from host {first!r} to itself")
        return [(first, second)] if one_way else [(first, second), (second, first)]

    def configure_link(self, a: str | Host, b: str | Host, *, one_way: bool = False,
                       **params: Any) -> None:
        """Set link parameters (``latency``, ``jitter``, ``bandwidth``,
        ``loss``, ``duplicate``, ``reorder``, ``reorder_delay``) on the link
        between *a* and *b* (both ways unless *one_way*)."""
        checked = _link.check_params(params)
        for x, y in self._pairs(a, b, one_way):
            self.link(x, y).configure(checked)
        self._record(Fault(self._now(), "link", self.host(a).name, self.host(b).name,
                           one_way=one_way, **params))

    def partition(self, a: str | Host, b: str | Host | None = None, *,
                  one_way: bool = False) -> None:
        """Cut the links between *a* and *b* (between *a* and every other host
        when *b* is None); *one_way*: only packets from *a* are lost."""
        for x, y in self._pairs(a, b, one_way):
            self.link(x, y).blocked = True
        names = [self.host(a).name] + ([self.host(b).name] if b is not None else [])
        self._record(Fault(self._now(), "partition", *names, one_way=one_way))

    def heal(self, a: str | Host | None = None, b: str | Host | None = None, *,
             one_way: bool = False) -> None:
        """Undo partitions: all of them, those of *a*, or between *a* and *b*."""
        for x, y in self._pairs(a, b, one_way):
            self.link(x, y).blocked = False
        names = [self.host(n).name for n in (a, b) if n is not None]
        self._record(Fault(self._now(), "heal", *names, one_way=one_way))
        self._stack.path_healed()

    def hold(self, a: str | Host, b: str | Host, *, one_way: bool = False) -> None:
        """Hold packets between *a* and *b* in flight (not lost: delivered,
        in order, on ``release``)."""
        for x, y in self._pairs(a, b, one_way):
            self.link(x, y).held = True
        self._record(Fault(self._now(), "hold", self.host(a).name, self.host(b).name,
                           one_way=one_way))

    def release(self, a: str | Host, b: str | Host, *, one_way: bool = False) -> int:
        """Deliver what ``hold`` kept; how many packets."""
        n = 0
        for x, y in self._pairs(a, b, one_way):
            self.link(x, y).held = False
            n += self._stack.release(x, y)
        self._record(Fault(self._now(), "release", self.host(a).name,
                           self.host(b).name, one_way=one_way))
        self._stack.path_healed()
        return n

    # -- hosts failing --------------------------------------------------------------

    def crash(self, host: str | Host) -> None:
        """Crash *host*: its tasks are cancelled, its sockets vanish (peers
        see nothing until they send: then timeouts), unsynced disk writes
        are lost.  ``restart()`` brings it back."""
        h = self.host(host)
        if not h.up:
            raise RuntimeError(f"host {h.name!r} is already down")
        self._record(Fault(self._now(), "crash", h.name))
        self._stack.crash(h.name)
        for task in h._crash():
            task.cancel()

    def restart(self, host: str | Host) -> None:
        """Bring a crashed host back: its main coroutine runs again."""
        h = self.host(host)
        if h.up:
            raise RuntimeError(f"host {h.name!r} is up; crash it first")
        self._record(Fault(self._now(), "restart", h.name))
        self._stack.restart(h.name)
        if self.loop is None:
            h.incarnation.alive = True
        else:
            h._restart()

    def reset(self, host: str | Host) -> int:
        """Reset every TCP connection of *host* (both ends get
        ``ConnectionResetError``); how many."""
        h = self.host(host)
        self._record(Fault(self._now(), "reset", h.name))
        return self._stack.reset_all(h.name)

    def dns_fail(self, name: str | None = None) -> None:
        """Lookups of *name* (every name when None) fail with
        ``socket.gaierror`` EAI_AGAIN until ``dns_heal``."""
        key = None if name is None else _dns.normalise_name(name)
        self._dns_faults[key] = (True, self._dns_faults.get(key, (False, 0.0))[1])
        self._record(Fault(self._now(), "dns_fail", *([name] if name else [])))

    def dns_delay(self, name: str | None = None, *, seconds: float) -> None:
        """Lookups of *name* (every name when None) take *seconds*."""
        key = None if name is None else _dns.normalise_name(name)
        self._dns_faults[key] = (self._dns_faults.get(key, (False, 0.0))[0], float(seconds))
        self._record(Fault(self._now(), "dns_delay", *([name] if name else []),
                           seconds=float(seconds)))

    def dns_heal(self, name: str | None = None) -> None:
        if name is None:
            self._dns_faults.clear()
        else:
            self._dns_faults.pop(_dns.normalise_name(name), None)
        self._record(Fault(self._now(), "dns_heal", *([name] if name else [])))

    # -- schedules ---------------------------------------------------------------------

    def schedule(self, faults: FaultSchedule | Iterable[Any] | str) -> FaultSchedule:
        """Apply each fault of *faults* (a ``FaultSchedule``, its text, or a
        list of faults) at its time.  Every host it names must exist."""
        if isinstance(faults, str):
            faults = FaultSchedule.parse(faults)
        elif not isinstance(faults, FaultSchedule):
            faults = FaultSchedule(faults)
        for fault in faults:
            for name in fault.args:
                if fault.action.startswith("dns"):
                    continue
                self.host(name)
            if fault.action in ("partition", "hold", "release", "link") \
                    and len(fault.args) == 2 and fault.args[0] == fault.args[1]:
                raise ValueError(f"fault {fault}: there is no link from a host to itself")
        loop = self._need_loop()
        start = loop.time()
        for fault in faults:
            self._timers.append(loop.call_at(start + fault.time, self.apply, fault,
                                             context=self.net_context))
        return faults

    def apply(self, fault: Fault | str) -> None:
        """Apply one fault now."""
        if isinstance(fault, str):
            from ._faults import parse_fault
            fault = parse_fault(fault)
        args = fault.args
        options = fault.options()
        action = fault.action
        if action == "partition":
            self.partition(args[0], args[1] if len(args) > 1 else None, **options)
        elif action == "heal":
            self.heal(*args, **options)
        elif action == "hold":
            self.hold(args[0], args[1], **options)
        elif action == "release":
            self.release(args[0], args[1], **options)
        elif action == "crash":
            self.crash(args[0])
        elif action == "restart":
            self.restart(args[0])
        elif action == "reset":
            self.reset(args[0])
        elif action == "link":
            self.configure_link(args[0], args[1], **options)
        elif action == "dns_fail":
            self.dns_fail(*args)
        elif action == "dns_delay":
            self.dns_delay(*args, **options)
        elif action == "dns_heal":
            self.dns_heal(*args)

    def random_faults(self, *, every: float = 1.0, probability: float = 0.05,
                      kinds: Iterable[str] = ("partition", "crash", "reset"),
                      duration: float = 5.0, until: float | None = None,
                      hosts: Iterable[str] | None = None) -> None:
        """Draw faults from the seed: every *every* virtual seconds, with
        *probability*, one of *kinds* strikes hosts picked from the seed, and
        is undone *duration* later (a partition heals, a crashed host
        restarts).  Each is a recorded choice: shrinking can remove it.
        The faults that struck are in ``applied_faults()``."""
        kinds = tuple(kinds)
        for kind in kinds:
            if kind not in ("partition", "crash", "reset", "hold"):
                raise ValueError(f"random fault kind must be partition, crash, reset "
                                 f"or hold, not {kind!r}")
        names = [self.host(h).name for h in (hosts if hosts is not None else self.hosts)]
        if len(names) < 2 and any(k in ("partition", "hold") for k in kinds):
            raise ValueError("partitions need at least two hosts")
        loop = self._need_loop()
        end = None if until is None else loop.time() + until

        def tick() -> None:
            now = loop.time()
            if end is not None and now >= end:
                return
            self._timers.append(loop.call_at(now + every, tick, context=self.net_context))
            if not self.choices.flip(probability):
                return
            kind = kinds[self.choices.pick(len(kinds))] if len(kinds) > 1 else kinds[0]
            a = names[self.choices.pick(len(names))] if len(names) > 1 else names[0]
            if kind in ("partition", "hold"):
                others = [n for n in names if n != a]
                b = others[self.choices.pick(len(others))] if len(others) > 1 else others[0]
                if kind == "partition":
                    self.partition(a, b)
                    undo: Fault = Fault(0, "heal", a, b)
                else:
                    self.hold(a, b)
                    undo = Fault(0, "release", a, b)
            elif kind == "crash":
                if not self.hosts[a].up:
                    return
                self.crash(a)
                undo = Fault(0, "restart", a)
            else:
                self.reset(a)
                return
            self._timers.append(loop.call_at(now + duration, self._undo, undo,
                                             context=self.net_context))

        self._timers.append(loop.call_at(loop.time() + every, tick,
                                         context=self.net_context))

    def _undo(self, fault: Fault) -> None:
        if fault.action == "restart" and self.hosts[fault.args[0]].up:
            return
        self.apply(fault)

    def applied_faults(self) -> FaultSchedule:
        """Every fault applied so far (scripted and drawn), as a schedule
        with times since the network was attached: scripting it replays
        the same faults."""
        return FaultSchedule(self._applied.faults)

    def _record(self, fault: Fault) -> None:
        self._applied.faults.append(fault)
        self.log_event("", f"fault: {fault}")

    def _now(self) -> float:
        return 0.0 if self.loop is None else self.loop.time() - self._t0

    # -- DNS on a host -------------------------------------------------------------------

    async def _dns_wait(self, inc: Incarnation | None, name: str | None) -> None:
        fail, delay = self._dns_faults.get(None, (False, 0.0))
        if name is not None:
            f2, d2 = self._dns_faults.get(name, (False, 0.0))
            fail = fail or f2
            delay = max(delay, d2)
        delay = max(delay, self.dns_latency)
        if delay:
            await asyncio.sleep(delay)
        if fail:
            host = inc.host.name if inc is not None else ""
            self.log_event(host, f"dns {name} failed (fault)")
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    async def _resolve(self, inc: Incarnation | None, host: Any, port: Any, family: int,
                       type: int, proto: int, flags: int) -> list[Any]:
        if _dns.parse_ip(host) is None and host not in (None, "", b""):
            name = _dns.normalise_name(host)
            await self._dns_wait(inc, name)
            try:
                infos = self.dns.getaddrinfo(host, port, family, type, proto, flags)
            except socket.gaierror as exc:
                self.log_event(inc.host.name if inc else "", f"dns {name}: {exc}")
                raise
            self.log_event(inc.host.name if inc else "",
                           f"dns {name} -> {' '.join(dict.fromkeys(i[4][0] for i in infos))}")
            return infos
        return self.dns.getaddrinfo(host, port, family, type, proto, flags)

    def _new_socket(self, inc: Incarnation | None, family: int, type: int,
                    proto: int) -> SimSocket:
        if inc is None:
            raise SimulationError("simulated sockets are made on a host (host.socket())")
        sock = self._stack.socket(inc.host.name, family, type, proto)
        sock.setblocking(False)
        return sock

    def _adopt(self, inc: Incarnation, real: socket.socket) -> SimSocket:
        """Stand in for a fresh real socket made by code on a host."""
        shadow = self._new_socket(inc, real.family, real.type, real.proto)
        shadow._real = real
        self._shadows[real] = shadow
        self._shadow_fds[real.fileno()] = shadow
        return shadow

    def _socket_by_fd(self, fd: int) -> SimSocket | None:
        for kernel in self._stack.kernels.values():
            sock = kernel.sockets.get(fd)
            if sock is not None:
                return sock
        return None

    def _run_in_thread(self, loop: Any, executor: Any, func: Callable[..., Any],
                       args: tuple[Any, ...]) -> asyncio.Future[Any]:
        return run_in_thread(loop, executor, func, args, self.thread_timeout)

    # -- the event log -------------------------------------------------------------------

    def log_event(self, host: str, text: str) -> None:
        self.log.add(self._now(), host, text)

    def last_events(self, n: int = 20) -> str:
        """The last *n* events, one per line."""
        return format_events(self.log.tail(n))

    @property
    def deliveries(self) -> int:
        """Segments and datagrams delivered so far."""
        return self._stack.deliveries

    def replay_string(self) -> str:
        """This run's decisions that were not the default, as the text
        ``--treadle-replay`` takes."""
        return format_deviations(self.choices.deviations())

    # -- attaching to a loop ------------------------------------------------------------

    def attach(self, loop: Any) -> None:
        """Run on *loop* (a ``SimEventLoop`` with a virtual clock): install
        the recorded ready order, the task tracker and the time/random
        replacements.  ``detach()`` undoes it."""
        from ._loop import SimEventLoop
        if not isinstance(loop, SimEventLoop):
            raise TypeError(
                f"a SimNetwork runs on a SimEventLoop (SimNetwork.run(), the "
                f"treadle_net fixture or SimNetwork.new_loop()), not {loop!r}")
        if self.loop is not None:
            raise RuntimeError("this network is already attached to a loop")
        if loop._simnet is not None:
            raise RuntimeError("this loop already runs another network")
        if not isinstance(loop.get_clock(), VirtualClock):
            raise ValueError("a simulated network needs the loop to run on a VirtualClock")
        self.loop = loop
        loop._simnet = self
        self._t0 = loop.time()
        previous = loop.get_ready_order()
        if previous is not None and hasattr(previous, "uninstall"):
            previous.uninstall(loop)
        self._order = SimOrder(self.choices)
        self._order.install(loop)
        loop.add_instrument(self)
        if self.log_steps:
            self._steps = _StepLog(self)
            loop.add_instrument(self._steps)
        if self.fake_time or self.fake_random:
            self._patches = Patches(loop.time, self.wall_clock, self.seed,
                                    self.fake_time, self.fake_random)
            self._patches.install()
        for host in self.hosts.values():
            if host._main is not None and host.main_task is None and host.up:
                host._start_main()

    def detach(self) -> None:
        loop = self.loop
        if loop is None:
            return
        if self._patches is not None:
            self._patches.uninstall()
            self._patches = None
        # Real sockets the simulation stood in for hold a descriptor each;
        # with the simulation over they are of no use.
        for shadow in list(self._shadow_fds.values()):
            if shadow._real is not None:
                shadow._real.close()
                shadow._real = None
        self._shadow_fds.clear()
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        if self._order is not None:
            self._order.uninstall(loop)
            self._order = None
        for instrument in (self, self._steps):
            try:
                loop.remove_instrument(instrument)
            except KeyError:
                pass
        self._steps = None
        loop._simnet = None

    @staticmethod
    def new_loop() -> Any:
        """A ``SimEventLoop`` on an autojump ``VirtualClock``."""
        from ._loop import SimEventLoop
        return SimEventLoop(clock=VirtualClock())

    def _need_loop(self) -> Any:
        if self.loop is None:
            raise RuntimeError("the network is not running yet: call this from the "
                               "scenario (inside SimNetwork.run() or a treadle_net test)")
        return self.loop

    # -- the instrument: which task runs on which host -------------------------------------

    def task_spawned(self, task: Any) -> None:
        self._next_serial += 1
        self._serials[id(task)] = self._next_serial
        try:
            context = task.get_context()
        except AttributeError:
            return
        from ._host import _current
        inc = context.get(_current)
        if inc is None:
            return
        if not inc.alive and not self._powered_off:
            task.cancel()       # started by code of a crashed life
            return
        inc.tasks[id(task)] = task
        if self.log_steps:
            self.log_event(inc.host.name, f"task {self._next_serial} spawned")

    def task_exited(self, task: Any) -> None:
        serial = self._serials.pop(id(task), 0)
        try:
            context = task.get_context()
        except AttributeError:
            return
        from ._host import _current
        inc = context.get(_current)
        if inc is not None:
            inc.tasks.pop(id(task), None)
            if self.log_steps:
                self.log_event(inc.host.name, f"task {serial} exited")


    # -- running a whole scenario -------------------------------------------------------------

    def run(self, main: Callable[[SimNetwork], Awaitable[Any]] | Coroutine[Any, Any, Any],
            *, timeout: float | None = None) -> Any:
        """Run a scenario on a loop of its own and return its result:
        *main* is ``async def main(net)`` (or a coroutine), run off any host
        (it starts hosts and drives faults).  *timeout*: virtual seconds
        after which it is cancelled (``TimeoutError``)."""
        if asyncio.iscoroutine(main):
            coro: Any = main
        elif callable(main):
            coro = main(self)
        else:
            raise TypeError(f"run() needs async def main(net) or a coroutine, got {main!r}")
        loop = self.new_loop()
        try:
            self.attach(loop)
        except BaseException:
            coro.close()
            loop.close()
            raise

        async def scenario() -> Any:
            if timeout is None:
                return await coro
            return await asyncio.wait_for(coro, timeout)

        try:
            return _run_to_end(loop, scenario(), self._serials, self._power_off)
        finally:
            self.detach()

    def _power_off(self) -> None:
        """The scenario is over: every host stops (what is still running on
        them is cancelled as after a crash, and reports nothing).  Their
        sockets vanish too, as in a crash: a server's ``wait_closed()``
        waits for its connections (3.12 and 3.13 await it when
        ``serve_forever()`` is cancelled), and no peer is left to close
        them."""
        # Tasks that the cancelled ones start to clean up (websockets' close,
        # ...) run, as under asyncio.run's shutdown: cancelling them at birth
        # as after a crash would leave their starters waiting forever.
        self._powered_off = True
        for name, host in self.hosts.items():
            host.incarnation.alive = False
            if self._stack.kernels[name].up:
                self._stack.crash(name)


def _run_to_end(loop: Any, coro: Coroutine[Any, Any, Any], serials: dict[int, int],
                power_off: Callable[[], None]) -> Any:
    """``asyncio.run`` on *loop*: cancel what is left, shut down, close."""
    try:
        task = loop.create_task(coro)
        return loop.run_until_complete(task)
    finally:
        power_off()
        try:
            # (in creation order: all_tasks() is a set, ordered by address)
            pending = sorted((t for t in asyncio.all_tasks(loop) if not t.done()),
                             key=lambda t: serials.get(id(t), 0))
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            loop.close()


class _StepLog:
    """An instrument that logs every task step (``log_steps``): the
    determinism check's finest grain."""

    def __init__(self, net: SimNetwork) -> None:
        self.net = net

    def before_task_step(self, task: Any) -> None:
        net = self.net
        net.log_event("", f"step task {net._serials.get(id(task), 0)}")


def current_network() -> SimNetwork | None:
    """The network of the running loop, if it is simulated."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return getattr(loop, "_simnet", None)


__all__ = ["SimNetwork", "current_host", "current_network"]
