"""The kernel's seams: the three places where the kernel's behaviour can be
changed from outside without touching its code.

Every seam costs nothing when unused: the run loop checks one attribute per
turn (not per callback) and takes its plain path when the seam is empty.

1. **The clock** (``Clock``).  The loop reads all time through it:
   ``loop.time()``, timer deadlines, and how long to block in the poller.
   Default: no clock object at all, ``time.monotonic`` read directly
   (looked up at each read, as asyncio does: tests replace it).
   ``treadle.testing.VirtualClock`` plugs in here.

2. **The ready order** (``ReadyOrder``).  Each turn the loop runs the batch
   of callbacks and tasks that were ready when the turn began.  An order
   function receives that batch as a list and returns it in the order to
   run.  Default: FIFO, no function.  Seeded scheduling plugs in here; the
   order function must keep the relative order of items that come from one
   source (one transport, future or task), which ``treadle.testing``'s
   shuffler does.

3. **Instruments** (``Instrument``).  Objects with any of the hook methods
   below, added with ``loop.add_instrument()``.  The loop calls:

   ``before_callback(handle)`` / ``after_callback(handle)``
       around every callback that is not a task step;
   ``before_task_step(task)`` / ``after_task_step(task)``
       around every step of a treadle task (including eager first steps);
   ``task_spawned(task)`` / ``task_exited(task)``
       when a treadle task is created / finishes;
   ``before_io_wait(timeout)`` / ``after_io_wait(timeout)``
       around every poll of the I/O backend (*timeout* in real seconds,
       None for "until something happens").

   A hook that raises is reported through the loop's exception handler
   and removed, so a broken instrument cannot wedge the loop.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

HOOK_NAMES = (
    "before_callback", "after_callback",
    "before_task_step", "after_task_step",
    "task_spawned", "task_exited",
    "before_io_wait", "after_io_wait",
)


class Clock(Protocol):
    """Where a loop reads its time.

    ``time()`` is ``loop.time()``.  ``sleep_time(deadline)`` converts a
    deadline on this clock into the real seconds the loop may block in its
    poller (None: block until I/O).  ``idle(deadline)`` is called when the
    loop blocked for that long and nothing at all happened (no I/O, nothing
    ready); a clock may move its time there (autojump) and return True.
    """

    def time(self) -> float: ...

    def sleep_time(self, deadline: float | None) -> float | None: ...

    def idle(self, deadline: float | None) -> bool: ...


ReadyOrder = Callable[[list[Any]], list[Any]]


class Instrument(Protocol):
    """Any object with some of the methods named in ``HOOK_NAMES``."""


def hooks_of(instrument: object) -> dict[str, Callable[..., object]]:
    """The hook methods an instrument defines, by name."""
    found = {}
    for name in HOOK_NAMES:
        fn = getattr(instrument, name, None)
        if fn is not None and callable(fn):
            found[name] = fn
    return found
