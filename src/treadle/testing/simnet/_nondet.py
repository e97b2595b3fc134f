"""Closing the sources of nondeterminism a simulated program can reach.

Owns: for the length of a simulated run, making the program's clocks and
randomness follow the simulation - ``time.time()``/``time_ns()``,
``time.monotonic()``, ``time.perf_counter()``, ``datetime.now()``/
``utcnow()``/``today()``, ``date.today()``, the ``random`` module's shared
generator, ``os.urandom`` (and so ``uuid.uuid4()``, ``secrets``,
``random.SystemRandom``) - and putting everything back afterwards; and
running executor work (``run_in_executor``, ``asyncio.to_thread``) so that
its completion lands at a deterministic point of the run.
Never: touches the loop's own clock (the kernel and ``VirtualClock`` read
``time.monotonic`` through references taken at import, which this module
leaves alone), threading, queues, or the test runner: those must keep real
time.

How: module attributes are replaced (``time.time``...), and so are the
references other modules took with ``from time import time`` - every
loaded module whose global *is* one of the originals, except the
infrastructure listed in ``_KEEP_REAL``.  ``datetime.datetime`` and
``datetime.date`` become subclasses whose ``now()``/``today()`` read the
simulation and whose ``isinstance`` accepts every real datetime/date.
The wall clock starts at a fixed instant (``wall_clock``, by default
2023-11-14 22:13:20 UTC), so two runs see the same times.

Executors: the work is handed to the executor's thread as usual (so it runs
in a real thread, with thread-local state and names as code expects), but
the loop waits for it to finish before going on, and the future completes
on the next turn.  The run does not depend on how fast the thread is.  A
function that waits for the event loop itself (``run_coroutine_threadsafe
(...).result()``) would wait forever: it gets ``SimulationError`` after
``thread_timeout`` real seconds.  ``SimNetwork(deterministic_threads=
False)`` switches this off.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as _datetime
import os
import random
import sys
import time
import uuid
from typing import Any, Callable

#: Modules whose references to the real clocks stay real: the runtime, the
#: threads and queues it waits on, and the test runner.
_KEEP_REAL = ("treadle._kernel", "treadle._io", "treadle.testing.clock",
              "treadle.testing.simnet", "threading", "queue", "concurrent",
              "asyncio", "selectors", "subprocess", "_pytest", "pytest", "pluggy",
              "pytest_timeout", "signal", "sched", "socket", "ssl", "_thread", "time",
              "datetime", "_datetime", "_pydatetime", "os", "uuid", "random")


class _Meta(type):
    """isinstance(real_datetime, SimDatetime) is True (code holds both)."""

    _real: type

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, cls._real)

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, cls._real)


class Patches:
    """The replaced functions of one run; ``install()``/``uninstall()``."""

    def __init__(self, now: Callable[[], float], wall_start: float, seed: int,
                 fake_time: bool, fake_random: bool) -> None:
        self.now = now
        self.wall_start = wall_start
        self.t0 = 0.0
        self.fake_time = fake_time
        self.fake_random = fake_random
        self.rng = random.Random(seed ^ 0x5EED)
        self.saved_random_state: Any = None
        #: (module dict, name, original) for everything replaced.
        self.undo: list[tuple[dict[str, Any], str, Any]] = []

    # -- the simulated readings ---------------------------------------------

    def wall(self) -> float:
        return self.wall_start + (self.now() - self.t0)

    def _urandom(self, n: int) -> bytes:
        if n < 0:
            raise ValueError("negative argument not allowed")
        if not n:
            return b""
        return self.rng.getrandbits(8 * n).to_bytes(n, "little")

    def replacements(self) -> dict[int, Any]:
        """id(original) -> replacement."""
        out: dict[Any, Any] = {}
        if self.fake_time:
            wall = self.wall
            virtual = self.now
            t0 = self.t0
            out[time.time] = wall
            out[time.time_ns] = lambda: int(round(wall() * 1e9))
            out[time.monotonic] = lambda: 1000.0 + virtual() - t0
            out[time.monotonic_ns] = lambda: int(round((1000.0 + virtual() - t0) * 1e9))
            out[time.perf_counter] = out[time.monotonic]
            out[time.perf_counter_ns] = out[time.monotonic_ns]
            out[_datetime.datetime] = _fake_datetime(wall)
            out[_datetime.date] = _fake_date(wall)
        if self.fake_random:
            out[os.urandom] = self._urandom
        return {id(k): (k, v) for k, v in out.items()}

    # -- installing ---------------------------------------------------------

    def install(self) -> None:
        self.t0 = self.now()
        table = self.replacements()
        if self.fake_random:
            self.saved_random_state = random.getstate()
            random.seed(self.rng.getrandbits(64))
        modules = [(time.__dict__, True), (_datetime.__dict__, True),
                   (os.__dict__, True), (uuid.__dict__, True), (random.__dict__, True)]
        for name, module in list(sys.modules.items()):
            if module is None or name.startswith(_KEEP_REAL) and (
                    name in _KEEP_REAL or name.startswith(tuple(k + "." for k in _KEEP_REAL))):
                continue
            namespace = getattr(module, "__dict__", None)
            if isinstance(namespace, dict):
                modules.append((namespace, False))
        for namespace, _ in modules:
            for key, value in list(namespace.items()):
                hit = table.get(id(value))
                if hit is not None and hit[0] is value:
                    self.undo.append((namespace, key, value))
                    namespace[key] = hit[1]

    def uninstall(self) -> None:
        for namespace, key, value in reversed(self.undo):
            namespace[key] = value
        self.undo.clear()
        if self.saved_random_state is not None:
            random.setstate(self.saved_random_state)
            self.saved_random_state = None


def _fake_datetime(wall: Callable[[], float]) -> type:
    real = _datetime.datetime

    class datetime(real, metaclass=_Meta):  # type: ignore[misc, valid-type]
        _real = real

        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real.fromtimestamp(wall(), tz)

        @classmethod
        def utcnow(cls) -> Any:
            return real.fromtimestamp(wall(), _datetime.timezone.utc).replace(tzinfo=None)

        @classmethod
        def today(cls) -> Any:
            return real.fromtimestamp(wall())

    datetime.__module__ = "datetime"
    return datetime


def _fake_date(wall: Callable[[], float]) -> type:
    real = _datetime.date

    class date(real, metaclass=_Meta):  # type: ignore[misc, valid-type]
        _real = real

        @classmethod
        def today(cls) -> Any:
            return real.fromtimestamp(wall())

    date.__module__ = "datetime"
    return date


def run_in_thread(loop: Any, executor: Any, func: Callable[..., Any],
                  args: tuple[Any, ...], timeout: float) -> asyncio.Future[Any]:
    """``loop.run_in_executor`` with the completion at a deterministic point:
    the work runs in the executor's thread while the loop waits for it, and
    the future completes on the next turn."""
    from ._stack import SimulationError
    loop._check_closed()
    if executor is None:
        executor = loop._default_executor
        if loop._executor_shutdown_called:
            raise RuntimeError("Executor shutdown has been called")
        if executor is None:
            executor = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="asyncio")
            loop._default_executor = executor
    future: asyncio.Future[Any] = loop.create_future()
    work = executor.submit(func, *args)
    try:
        result = work.result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        loop.call_soon(_fail, future, SimulationError(
            f"{func!r} ran in an executor for more than {timeout} real seconds: "
            f"inside a simulation the loop waits for executor work to finish (so "
            f"that the run is deterministic); work that waits for the loop "
            f"cannot finish.  SimNetwork(deterministic_threads=False) runs "
            f"executors freely, nondeterministically"))
        return future
    except BaseException as exc:
        loop.call_soon(_fail, future, exc)
        return future
    loop.call_soon(_succeed, future, result)
    return future


def _succeed(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
