"""``treadle.EventLoop``: the kernel plus every layer built on it.

Each layer is a class that extends the kernel loop with one concern
(``_net``: sockets, transports, servers, TLS, DNS; ``_proc``: processes,
pipes, signals); this module only stacks them.  Lower layers never import
this module.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ._io.backend import IOBackend
from ._kernel.seams import Clock
from ._kernel.shutdown import ShutdownMixin
from ._net.loop import NetworkMixin
from ._proc.loop import ProcessMixin
from ._proc.signals import SignalMixin


class EventLoop(ShutdownMixin, ProcessMixin, NetworkMixin, SignalMixin):
    """treadle's asyncio event loop.  Create it with ``new_event_loop()``."""


def new_event_loop(*, clock: Clock | None = None,
                   backend: IOBackend | None = None,
                   seed: int | None = None) -> EventLoop:
    """A new treadle event loop.

    *clock* replaces ``time.monotonic`` as the loop's time source (see
    ``treadle.testing.VirtualClock``); *backend* replaces the I/O backend
    (epoll on Linux, ``selectors`` elsewhere).  *seed* turns on seeded
    scheduling: tasks ready in the same turn run in an order drawn from
    ``random.Random(seed)`` (callbacks of one task, future or transport keep
    their order); the same seed gives the same order.
    """
    order = None
    if seed is not None:
        from .testing.order import SeededOrder
        order = SeededOrder(seed)       # validates before the loop exists
    loop = EventLoop(clock=clock, backend=backend)  # type: ignore[abstract, unused-ignore]
    if order is not None:
        order.install(loop)
    return loop


class EventLoopPolicy(asyncio.DefaultEventLoopPolicy):
    """An event loop policy whose loops are treadle's, for code that still
    sets policies (``asyncio.set_event_loop_policy(treadle.EventLoopPolicy())``).
    Prefer ``loop_factory=treadle.new_event_loop``: policies are deprecated
    from Python 3.14."""

    def __init__(self, *, clock: Clock | None = None, seed: int | None = None) -> None:
        super().__init__()
        # Loop options for every loop this policy makes (``treadle run
        # --virtual-time`` / ``--seed``); one clock shared by all of them.
        self._loop_clock = clock
        self._loop_seed = seed

    def new_event_loop(self) -> Any:
        return new_event_loop(clock=self._loop_clock, seed=self._loop_seed)
