"""Hosts: what "code running on a host" means, crash and restart, and the
simulated disk.

Owns: ``Host`` (a name, addresses, a main coroutine function that runs
again on every restart, the tasks running on it), ``Incarnation`` (one life
of a host between crashes: code and sockets of an earlier life are dead),
the context variable that says which host the running code is on, and
``Disk`` (files that survive a crash once synced).
Never: moves packets (``_stack.py``) or decides faults (``_network.py``).

On a host.  Code is on a host when the context it runs in says so: a task
started with ``host.spawn()``/``host.run()``/``host.start()`` runs in a
context where ``current_host()`` is that host, and everything it starts -
tasks (``create_task`` copies the context), callbacks, the protocols of its
connections - inherits it.  The simulated loop (``_loop.py``) reads it at
each networking call.
"""

from __future__ import annotations

import asyncio
import contextvars
import socket
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine

if TYPE_CHECKING:
    from ._network import SimNetwork
    from ._stack import SimSocket

_current: contextvars.ContextVar[Incarnation | None] = contextvars.ContextVar(
    "treadle_simnet_host", default=None)


def current_incarnation() -> Incarnation | None:
    return _current.get()


def current_host() -> Host | None:
    """The simulated host the running code is on (None: off any host)."""
    incarnation = _current.get()
    return None if incarnation is None else incarnation.host


class Incarnation:
    """One life of a host, from a start or restart to the next crash."""

    __slots__ = ("host", "number", "alive", "tasks", "context")

    def __init__(self, host: Host, number: int) -> None:
        self.host = host
        self.number = number
        self.alive = True
        #: Tasks started in this life, pending ones only, in creation order.
        self.tasks: dict[int, Any] = {}
        context = contextvars.copy_context()
        context.run(_current.set, self)
        self.context = context

    def __repr__(self) -> str:
        return f"<Incarnation {self.host.name}#{self.number}{'' if self.alive else ' dead'}>"


class Disk:
    """A host's disk: named files (bytes) that survive a crash - once synced.

    ``write()`` goes to the page cache; ``sync()`` (``fsync``) makes
    everything written so far durable.  A crash loses what was not synced
    (``Disk(lose_unsynced=False)``: nothing is lost).  Reads see the latest
    write.  Writes made by a crashed life of the host (its tasks' cleanup
    code) are dropped: that program is gone."""

    def __init__(self, *, lose_unsynced: bool = True) -> None:
        self.lose_unsynced = lose_unsynced
        self._durable: dict[str, bytes | None] = {}
        self._cached: dict[str, bytes | None] = {}
        self._owner: Host | None = None

    def __repr__(self) -> str:
        return f"<Disk files={self.names()} unsynced={len(self._cached)}>"

    def _writable(self) -> bool:
        owner = self._owner
        if owner is None:
            return True
        incarnation = _current.get()
        if incarnation is not None and incarnation.host is owner and not incarnation.alive:
            return False
        return owner.up

    def read(self, name: str, default: bytes | None = None) -> bytes | None:
        if name in self._cached:
            value = self._cached[name]
        else:
            value = self._durable.get(name)
        return default if value is None else value

    def write(self, name: str, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"a disk file holds bytes, not {type(data).__name__}")
        if self._writable():
            self._cached[name] = bytes(data)

    def delete(self, name: str) -> None:
        if self._writable():
            self._cached[name] = None

    def sync(self) -> None:
        if self._writable():
            self._durable.update(self._cached)
            self._cached.clear()
            for name in [n for n, v in self._durable.items() if v is None]:
                del self._durable[name]

    def names(self) -> list[str]:
        merged = dict(self._durable)
        merged.update(self._cached)
        return sorted(n for n, v in merged.items() if v is not None)

    def _crash(self) -> None:
        if self.lose_unsynced:
            self._cached.clear()
        else:
            self.sync()


class Host:
    """A simulated machine: ``net.add_host(name, addresses)``."""

    def __init__(self, net: SimNetwork, name: str, addresses: list[str],
                 disk: Disk | None) -> None:
        self.net = net
        self.name = name
        self.addresses = addresses
        self.disk = disk if disk is not None else Disk()
        self.disk._owner = self
        self._main: Callable[..., Awaitable[Any]] | None = None
        self._main_args: tuple[Any, ...] = ()
        self.main_task: Any = None
        self.incarnation = Incarnation(self, 0)
        self.crashes = 0

    def __repr__(self) -> str:
        return (f"<Host {self.name!r} {', '.join(self.addresses)}"
                f"{'' if self.up else ' (down)'}>")

    @property
    def up(self) -> bool:
        return self.incarnation.alive

    @property
    def address(self) -> str:
        """The host's first address."""
        return self.addresses[0]

    # -- running code on it ---------------------------------------------------

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str | None = None) -> Any:
        """A task running *coro* on this host (a crash cancels it)."""
        if not asyncio.iscoroutine(coro):
            raise TypeError(f"spawn() needs a coroutine, got {type(coro).__name__}")
        if not self.up:
            coro.close()
            raise RuntimeError(f"host {self.name!r} is down (crashed); restart it first")
        loop = self.net.loop
        return loop.create_task(coro, name=name, context=self.incarnation.context.copy())

    async def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        """Run *coro* on this host and return its result."""
        return await self.spawn(coro)

    def start(self, main: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run ``main(*args)`` on this host as its main task; it runs again
        after every restart (state it keeps in ``host.disk`` survives)."""
        if not callable(main):
            raise TypeError(f"start() needs a coroutine function, got {main!r}")
        self._main = main
        self._main_args = args
        if self.net.loop is None:
            return None     # started when the network starts running
        return self._start_main()

    def _start_main(self) -> Any:
        assert self._main is not None
        coro = self._main(*self._main_args)
        self.main_task = self.spawn(coro, name=f"{self.name} main")  # type: ignore[arg-type]
        return self.main_task

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM,
               proto: int = 0) -> SimSocket:
        """A new (non-blocking) socket on this host, for the ``sock_*``
        methods."""
        sock = self.net._stack.socket(self.name, family, type, proto)
        sock.setblocking(False)
        return sock

    # -- life and death ----------------------------------------------------------

    def _crash(self) -> list[Any]:
        """End this life: returns its pending tasks, to be cancelled."""
        incarnation = self.incarnation
        incarnation.alive = False
        self.crashes += 1
        self.disk._crash()
        tasks = [t for t in incarnation.tasks.values() if not t.done()]
        incarnation.tasks.clear()
        self.incarnation = Incarnation(self, incarnation.number + 1)
        self.incarnation.alive = False
        return tasks

    def _restart(self) -> None:
        self.incarnation.alive = True
        if self._main is not None:
            self._start_main()

