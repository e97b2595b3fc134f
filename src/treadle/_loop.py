"""``treadle.EventLoop``: the kernel plus every layer built on it.

Each layer is a class that extends the kernel loop with one concern
(``_net``: sockets, transports, servers, TLS, DNS; ``_proc``: processes,
pipes, signals; ``observe``: the blocking detector and ``treadle ps``/``top``);
this module only stacks them.  Lower layers never import
this module.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import types
from typing import TYPE_CHECKING, Any, Callable

from ._io.backend import IOBackend
from ._kernel.loop import KernelLoop
from ._kernel.seams import Clock
from ._kernel.shutdown import ShutdownMixin
from ._net.loop import NetworkMixin
from ._proc.loop import ProcessMixin
from ._proc.signals import SignalMixin
from .observe._mixin import ObserveMixin


if TYPE_CHECKING:
    # To the type checker each layer is a KernelLoop (see _kernel/layers.py),
    # which no class can name before its subclasses.
    class EventLoop(ObserveMixin, ShutdownMixin, ProcessMixin, NetworkMixin, SignalMixin):
        """treadle's asyncio event loop."""
else:
    class EventLoop(KernelLoop, ObserveMixin, ShutdownMixin, ProcessMixin, NetworkMixin,
                    SignalMixin):
        """treadle's asyncio event loop.  Create it with ``new_event_loop()``.

        The kernel comes first, then the layers, which extend it through
        the hooks of ``LoopLayers`` (``_kernel/loop.py`` says why)."""


def _name_public_methods(cls: type) -> None:
    """Give each public method that a layer defines in Python the name
    asyncio's loop gives it (``BaseEventLoop.create_connection``), or
    *cls*'s for a method asyncio's loop has not.  Python builds "m() got an
    unexpected keyword argument" (and the other signature errors),
    bound-method and coroutine reprs and "coroutine 'm' was never awaited"
    from the function's ``__qualname__``: users call
    ``loop.create_connection()`` and must read what asyncio would say, not
    about the internal layer that happens to define it (``ConnectMixin``);
    and code filters such warnings by asyncio's names (pytest-asyncio
    silences "coroutine 'BaseEventLoop.shutdown_asyncgens' was never
    awaited" after a test closed its loop).  The code objects keep their
    real names, so tracebacks still point to the layer.  (The compiled
    kernel's methods name no class at all.)"""
    for name in dir(cls):
        if name.startswith("_"):
            continue
        function = inspect.getattr_static(cls, name)
        if (isinstance(function, types.FunctionType)
                and function.__module__.startswith("treadle.")):
            asyncios = getattr(asyncio.SelectorEventLoop, name, None)
            function.__qualname__ = (
                asyncios.__qualname__ if isinstance(asyncios, types.FunctionType)
                else f"{cls.__name__}.{name}")


_name_public_methods(EventLoop)


if TYPE_CHECKING:
    from ._kernel.contract import KernelServices
    from ._net.base import NetLoop

    def _keeps_the_contract(kernel: KernelLoop, loop: EventLoop) -> tuple[KernelServices,
                                                                          NetLoop]:
        # mypy checks here that the kernel provides everything the layers
        # are typed against (_kernel/contract.py), and the full loop what
        # the socket transports need: a rename in the kernel fails here.
        return kernel, loop


def new_event_loop(*, clock: Clock | None = None,
                   backend: IOBackend | None = None,
                   seed: int | None = None,
                   task_factory: Callable[..., Any] | None = None) -> EventLoop:
    """A new treadle event loop.

    *clock* replaces ``time.monotonic`` as the loop's time source (see
    ``treadle.testing.VirtualClock``); *backend* replaces the I/O backend
    (epoll on Linux, ``selectors`` elsewhere).  *seed* turns on seeded
    scheduling: tasks ready in the same turn run in an order drawn from
    ``random.Random(seed)`` (callbacks of one task, future or transport keep
    their order); the same seed gives the same order.  *task_factory*
    is set with ``loop.set_task_factory()`` before anything runs (so it
    makes ``asyncio.run()``'s main task too), for example
    ``treadle.c_task_factory``.
    """
    if task_factory is not None and not callable(task_factory):
        raise TypeError("task factory must be a callable or None")
    order = None
    if seed is not None:
        from .testing.order import SeededOrder
        order = SeededOrder(seed)       # validates before the loop exists
    loop = EventLoop(clock=clock, backend=backend)  # type: ignore[abstract, unused-ignore]
    if order is not None:
        order.install(loop)
    if task_factory is not None:
        loop.set_task_factory(task_factory)
    return loop


def selector_event_loop_class(*, clock: Clock | None = None,
                              seed: int | None = None) -> type[EventLoop]:
    """The class ``treadle run`` puts in place of ``asyncio.SelectorEventLoop``
    (and of ``asyncio.EventLoop``, 3.13+), so that programs which build
    that class themselves (uvicorn's ``--loop asyncio`` and ``auto`` without
    uvloop do) get a treadle loop, and every loop of the program is an
    instance of it.  Its loops have *clock* and *seed* (see
    ``new_event_loop``); the constructor takes asyncio's optional
    *selector*, which the loop then polls (instead of epoll)."""
    order_seed = seed
    if order_seed is not None:
        from .testing.order import SeededOrder
        SeededOrder(order_seed)             # a bad seed fails here, not later

    class SelectorEventLoop(EventLoop):
        """A treadle event loop in place of ``asyncio.SelectorEventLoop``
        (installed by ``treadle run``)."""

        def __init__(self, selector: Any = None) -> None:
            backend = None
            if selector is not None:
                from ._io.selector import SelectorBackend
                backend = SelectorBackend(selector)
            super().__init__(clock=clock, backend=backend)
            if order_seed is not None:
                from .testing.order import SeededOrder
                SeededOrder(order_seed).install(self)

    SelectorEventLoop.__qualname__ = "SelectorEventLoop"
    return SelectorEventLoop


def _policy_base() -> type:
    """asyncio's default policy class, without the DeprecationWarning that
    naming ``asyncio.DefaultEventLoopPolicy`` gives on 3.14+."""
    if sys.version_info >= (3, 14):
        from asyncio import unix_events
        return unix_events._DefaultEventLoopPolicy  # type: ignore[no-any-return, attr-defined, unused-ignore]
    return asyncio.DefaultEventLoopPolicy


def _make_policy_class() -> type:
    class EventLoopPolicy(_policy_base()):  # type: ignore[misc]
        """An event loop policy whose loops are treadle's, for code that
        still sets policies
        (``asyncio.set_event_loop_policy(treadle.EventLoopPolicy())``).
        Prefer ``loop_factory=treadle.new_event_loop``: asyncio deprecates
        policies in 3.14 and removes them in 3.16."""

        def __init__(self, *, clock: Clock | None = None,
                     seed: int | None = None) -> None:
            super().__init__()
            # Loop options for every loop this policy makes (``treadle run
            # --virtual-time`` / ``--seed``); one clock shared by all of them.
            self._loop_clock = clock
            self._loop_seed = seed

        def new_event_loop(self) -> Any:
            return new_event_loop(clock=self._loop_clock, seed=self._loop_seed)

    EventLoopPolicy.__module__ = "treadle"
    return EventLoopPolicy


_policy_class: type | None = None


def __getattr__(name: str) -> Any:
    # ``EventLoopPolicy`` is built on first use: defining it at import would
    # touch asyncio's deprecated policy classes in every program.
    global _policy_class
    if name == "EventLoopPolicy":
        if _policy_class is None:
            _policy_class = _make_policy_class()
        return _policy_class
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
