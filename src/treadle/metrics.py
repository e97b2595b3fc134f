"""Numbers about a running treadle loop and its tasks, for your monitoring.

    import treadle.metrics as metrics

    stats = metrics.loop_stats(loop)           # any thread, any time
    stats.turns, stats.callbacks, stats.io_wait, stats.busy_time
    stats.lateness_percentile(0.99)            # timer lateness, seconds
    metrics.track_tasks(loop)                  # per-task timing on
    metrics.task_stats(task).busy              # seconds its steps ran

Loop counters are always on (they cost the loop nothing per callback);
per-task timing is collected only while switched on here, by
``TREADLE_TRACK_TASKS=1``, or while ``treadle top`` watches the process.
These are the numbers ``treadle top`` shows.  Counters are totals since the
loop was created: export them as they are (monotonic counters) and let
your monitoring take rates.
"""

from __future__ import annotations

from ._kernel.loop import KernelLoop

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

from ._kernel.timers import LATENESS_BOUNDS

__all__ = ["LATENESS_BOUNDS", "LoopStats", "TaskStats", "loop_stats", "task_stats",
           "track_tasks", "tracking"]


@dataclass(frozen=True)
class LoopStats:
    """Counters of one loop (``loop_stats``)."""

    #: True while the loop runs (``run_forever``/``run_until_complete``).
    running: bool
    #: Loop iterations that ran at least one callback or task step.
    turns: int
    #: Callbacks and task steps run.
    callbacks: int
    #: Seconds the loop has been running, in total (all runs).
    run_time: float
    #: Seconds of that spent blocked waiting for I/O or the next timer.
    io_wait: float
    #: Callbacks and tasks ready to run now (the ready queue's length).
    ready: int
    #: Timers pending.
    timers: int
    #: Pending tasks.
    tasks: int
    #: Fired timers per lateness bucket: ``timer_lateness[i]`` counts timers
    #: handed to the ready queue at most ``LATENESS_BOUNDS[i]`` seconds after
    #: their deadline (the last entry: later than every bound).
    timer_lateness: tuple[int, ...]
    #: The blocking detector's threshold in seconds (None: off).
    blocking_threshold: float | None
    #: Callbacks and task steps that held the loop past the threshold.
    blocked: int
    #: Loop iterations that ran past the threshold through many items.
    slow_turns: int
    #: The longest any of those held the loop (seconds).
    longest_block: float
    #: True while per-task timing is collected.
    tracking: bool

    @property
    def busy_time(self) -> float:
        """Seconds the loop spent running callbacks (not waiting)."""
        return max(0.0, self.run_time - self.io_wait)

    @property
    def timers_fired(self) -> int:
        return sum(self.timer_lateness)

    def lateness_percentile(self, fraction: float) -> float | None:
        """The upper bound of the lateness bucket holding the *fraction*
        quantile of fired timers (``math.inf`` past the last bound; None
        when no timer fired)."""
        return lateness_percentile(self.timer_lateness, fraction)


@dataclass(frozen=True)
class TaskStats:
    """Per-task timing (``task_stats``); seconds from ``time.perf_counter``,
    counted since tracking started (or since the task was created)."""

    id: int
    name: str
    #: Steps run.
    steps: int
    #: Seconds its steps ran.
    busy: float
    #: Seconds it was ready to run but waiting for the loop to get to it.
    scheduled: float
    #: Seconds it was waiting for something (a future, I/O, a timer).
    idle: float
    #: Times it was woken (put on the ready queue).
    wakes: int
    #: Wakes that happened during its own step (``sleep(0)``, a bare yield).
    self_wakes: int
    #: The longest single step (the current one included, if running).
    longest_step: float
    #: Where it was created ("file:line in function"), if tracked then.
    spawned_at: str | None
    #: Seconds since tracking of this task began.
    tracked_for: float
    #: How long the current step has run, if it is running now.
    running_for: float | None


def lateness_percentile(histogram: tuple[int, ...] | list[int],
                        fraction: float) -> float | None:
    total = sum(histogram)
    if not total:
        return None
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction!r}")
    rank = max(1, round(fraction * total))
    seen = 0
    for i, count in enumerate(histogram):
        seen += count
        if seen >= rank:
            return LATENESS_BOUNDS[i] if i < len(LATENESS_BOUNDS) else float("inf")
    return float("inf")


def _treadle_loop(loop: Any) -> Any:
    if loop is None:
        loop = asyncio.get_running_loop()
    if getattr(loop, "_observation", None) is None:
        raise TypeError(
            f"treadle.metrics needs a treadle event loop, not "
            f"{type(loop).__module__}.{type(loop).__qualname__}")
    return loop


def loop_stats(loop: Any = None) -> LoopStats:
    """The counters of *loop* (default: the running loop).  Safe from any
    thread."""
    loop = _treadle_loop(loop)
    from .observe._snapshot import loop_tasks
    obs = loop._observation
    with obs.lock:
        blocked, slow, longest = obs.blocked, obs.slow_turns, obs.longest_block
    tracker = obs.tracker
    return LoopStats(
        running=loop._thread_id is not None,
        turns=loop._batch_serial,
        callbacks=KernelLoop._items_run(loop),
        run_time=obs.run_time(),
        io_wait=loop._io_wait_time,
        ready=len(loop._ready),
        timers=len(loop._timers),
        tasks=len(loop_tasks(loop)),
        timer_lateness=tuple(loop._timers.lateness),
        blocking_threshold=obs.threshold,
        blocked=blocked, slow_turns=slow, longest_block=longest,
        tracking=tracker is not None and tracker.attached,
    )


def task_stats(task: Any) -> TaskStats | None:
    """Per-task timing of *task*, or None when it is not tracked (tracking
    is off for its loop, or the task is not a treadle task)."""
    loop = task.get_loop()
    obs = getattr(loop, "_observation", None)
    tracker = obs.tracker if obs is not None else None
    if tracker is None:
        return None
    stats = tracker.stats_of(task)
    if stats is None:
        return None
    import time
    numbers = stats.as_dict(time.perf_counter())
    return TaskStats(id=id(task), name=str(task.get_name()), **numbers)


def track_tasks(loop: Any = None, enabled: bool = True) -> None:
    """Switch per-task timing on (or off) for *loop* (default: the running
    loop).  It puts the loop on its instrumented path: every callback and
    task step then costs more (see the README for how much).  From another
    thread the switch happens on the loop's next turn."""
    loop = _treadle_loop(loop)
    from .observe._observer import observer, tracker_off, tracker_on
    obs = loop._observation
    obs.track_requested = bool(enabled)
    if not enabled and observer.has_viewers():
        return                     # a ``treadle top`` viewer still wants it
    fn = tracker_on if enabled else tracker_off
    owner = loop._thread_id
    if owner is None or owner == threading.get_ident():
        fn(loop)
    else:
        loop.call_soon_threadsafe(fn, loop)


class tracking:
    """``with treadle.metrics.tracking(loop):`` per-task timing inside."""

    def __init__(self, loop: Any = None) -> None:
        self._loop = loop

    def __enter__(self) -> tracking:
        self._loop = _treadle_loop(self._loop)
        track_tasks(self._loop, True)
        return self

    def __exit__(self, *exc: object) -> None:
        track_tasks(self._loop, False)
