"""Virtual time: ``VirtualClock`` and what a loop needs to use it well.

Owns: a clock object for the kernel's clock seam (``time()``,
``sleep_time()``, ``idle()``; see ``treadle._kernel.seams``), and the switch
``treadle run --virtual-time`` uses to show virtual time to ``time.monotonic``
and friends.
Never: touches a loop, a task or the ready queue.  The kernel decides when
the loop is idle; the clock only answers "how long may the loop block for
this deadline?" and "the loop was idle that long: may time move?".  That
keeps the clock a pure state machine that can be tested without a loop.

Why the pieces fit: the kernel calls ``idle(deadline)`` after any poll of a
turn that had nothing ready and saw nothing, whatever its timeout; so an
autojump threshold of 0 asks for a zero wait, a non-blocking poll, and a
jump costs no real time.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any, Callable, Iterator

from .._kernel.loop import MAX_POLL_TIMEOUT


#: The longest single wait the clock asks for (the kernel's, asyncio's
#: select limit): a longer real wait is made of several polls, and time jumps
#: only after the last one.
MAX_WAIT = MAX_POLL_TIMEOUT

# Read once: ``--virtual-time`` may replace the ``time`` module's functions,
# and the clock itself must always read real time.
_real_monotonic = time.monotonic


def _check_seconds(value: object, what: str, *, allow_inf: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{what} must not be NaN")
    if number < 0:
        raise ValueError(f"{what} must be >= 0, got {value!r}")
    if math.isinf(number) and not allow_inf:
        raise ValueError(f"{what} must be finite")
    return number


class VirtualClock:
    """A clock for ``treadle.new_event_loop(clock=...)`` whose time is virtual.

    ``loop.time()`` reads it, so ``asyncio.sleep``, ``wait_for``,
    ``asyncio.timeout``, ``call_later``/``call_at`` and treadle's deadlines
    all follow it.

    *start*: the time the clock shows at first (``loop.time()``).
    *rate*: virtual seconds that pass per real second (0: time moves only by
    jumps; 1: real time, plus jumps).
    *autojump_threshold*: when the loop has been idle for this many real
    seconds (no task ready, no I/O) and a timer is pending, time jumps to the
    next timer's deadline at once.  0 jumps as soon as every task is
    blocked; ``math.inf`` never jumps.  A loop with no timer pending waits
    for its I/O in real time: there is nothing to jump to.

    Time never moves backwards.  ``rate`` and ``autojump_threshold`` may be
    changed at any time; from another thread the change takes effect when the
    loop next wakes.
    """

    __slots__ = ("_virtual_base", "_real_base", "_rate", "_autojump_threshold",
                 "_armed")

    _virtual_base: float
    _real_base: float
    _rate: float
    _autojump_threshold: float
    _armed: float | None

    def __init__(self, *, autojump_threshold: float = 0.0, rate: float = 0.0,
                 start: float = 0.0) -> None:
        if isinstance(start, bool) or not isinstance(start, (int, float)):
            raise TypeError(f"start must be a number, got {type(start).__name__}")
        if not math.isfinite(start):
            raise ValueError(f"start must be finite, got {start!r}")
        self._rate = _check_seconds(rate, "rate", allow_inf=False)
        self._autojump_threshold = _check_seconds(
            autojump_threshold, "autojump_threshold", allow_inf=True)
        self._virtual_base = float(start)
        self._real_base = _real_monotonic()
        # The deadline the last sleep_time() agreed to reach when its wait
        # ends quietly (None: the wait was cut short, so don't jump).
        self._armed = None

    def __repr__(self) -> str:
        return (f"<VirtualClock time={self.time():.6f} rate={self._rate} "
                f"autojump_threshold={self._autojump_threshold}>")

    # -- the clock seam ---------------------------------------------------

    def time(self) -> float:
        """The current virtual time (what ``loop.time()`` returns)."""
        if self._rate == 0.0:
            return self._virtual_base
        return self._virtual_base + self._rate * (_real_monotonic() - self._real_base)

    def sleep_time(self, deadline: float | None) -> float | None:
        """Real seconds the loop may block for the timer due at *deadline*
        (None: no timer, block until I/O)."""
        self._armed = None
        if deadline is None:
            return None
        now = self.time()
        if deadline <= now:
            return 0.0
        real = (deadline - now) / self._rate if self._rate > 0.0 else math.inf
        threshold = self._autojump_threshold
        if threshold < real:
            # Autojump: wait only the threshold, then jump if nothing happened.
            wait = threshold
        elif math.isinf(real):
            # No rate and no autojump: only jump() or I/O can move things on.
            return None
        else:
            wait = real
        if wait > MAX_WAIT:
            return MAX_WAIT
        self._armed = deadline
        return wait

    def idle(self, deadline: float | None) -> bool:
        """The loop waited as long as ``sleep_time(deadline)`` said and
        nothing happened: move time to *deadline* (the autojump).  Returns
        True if time moved."""
        armed = self._armed
        self._armed = None
        if deadline is None or armed is None or deadline != armed:
            return False
        if deadline <= self.time():
            return False
        self._set(deadline)
        return True

    # -- public controls --------------------------------------------------

    def jump(self, seconds: float) -> None:
        """Move time forward by *seconds* (>= 0) at once.

        Timers that become due run on the loop's next turn.  Call it from the
        loop's thread (a task or a callback); from another thread, the loop
        notices when it next wakes.
        """
        seconds = _check_seconds(seconds, "jump", allow_inf=False)
        if seconds:
            self._set(self.time() + seconds)

    @property
    def rate(self) -> float:
        """Virtual seconds per real second (>= 0)."""
        return self._rate

    @rate.setter
    def rate(self, value: float) -> None:
        value = _check_seconds(value, "rate", allow_inf=False)
        # Rebase first, so time is continuous across the change.
        self._set(self.time())
        self._rate = value

    @property
    def autojump_threshold(self) -> float:
        """Real seconds of idleness after which time jumps to the next timer
        (``math.inf``: never)."""
        return self._autojump_threshold

    @autojump_threshold.setter
    def autojump_threshold(self, value: float) -> None:
        self._autojump_threshold = _check_seconds(
            value, "autojump_threshold", allow_inf=True)

    # -- internals --------------------------------------------------------

    def _set(self, virtual: float) -> None:
        # Setting the base (rather than adding to it) keeps exact values:
        # a jump to a timer's deadline lands exactly on it.
        self._virtual_base = virtual
        self._real_base = _real_monotonic()


# ---------------------------------------------------------------------------
# ``treadle run --virtual-time``: the program's own clocks follow the loop's.
# ---------------------------------------------------------------------------

_TIME_FUNCTIONS = ("monotonic", "perf_counter", "time")


@contextlib.contextmanager
def virtual_time_functions(clock: VirtualClock) -> Iterator[None]:
    """While active, ``time.monotonic()``, ``time.perf_counter()``,
    ``time.time()`` (and their ``_ns`` forms) advance with *clock* instead
    of real time: each keeps its real reading at entry and adds the virtual
    seconds elapsed since.  A program that measures durations with them sees
    the durations its sleeps and timeouts took in virtual time.

    Process-wide and not for libraries: it replaces functions of the
    ``time`` module, which code that did ``from time import monotonic``
    before entry (``threading``, ``queue``, treadle's kernel) does not see.
    ``datetime.now()`` and ``time.sleep()`` stay real.
    """
    saved: dict[str, Any] = {}
    start = clock.time()
    for name in _TIME_FUNCTIONS:
        real = getattr(time, name)
        real_ns = getattr(time, name + "_ns")
        saved[name] = real
        saved[name + "_ns"] = real_ns
        base = real()
        base_ns = real_ns()
        setattr(time, name, _virtual_float(clock, start, base))
        setattr(time, name + "_ns", _virtual_ns(clock, start, base_ns))
    try:
        yield
    finally:
        for name, fn in saved.items():
            setattr(time, name, fn)


def _virtual_float(clock: VirtualClock, start: float,
                   base: float) -> Callable[[], float]:
    def reading() -> float:
        return base + (clock.time() - start)
    return reading


def _virtual_ns(clock: VirtualClock, start: float,
                base_ns: int) -> Callable[[], int]:
    def reading_ns() -> int:
        return base_ns + round((clock.time() - start) * 1e9)
    return reading_ns
