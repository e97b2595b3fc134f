"""The blocking detector: a watchdog thread that notices when something
holds a loop too long, and says what and where while it still does.

Owns: one thread per process that looks at every running treadle loop
twice per threshold while the loop is healthy and five times per threshold
while something holds it (see "How often" below), the reports it logs on
the ``treadle.blocking`` logger, and ``coarse_clock.now``, the time it
publishes for tasks to stamp their waits with.

Never: costs the loop a clock read.  The loop only leaves, per callback,
which item it is running (``_running_item``) and, per batch, a serial
number (``_batch_serial``); this thread does all the timing.  If the same
item is running at two ticks in a row, in the same batch, it has held the
loop at least for the time between them.  Once that reaches the threshold,
the loop thread's current frame is sampled (``sys._current_frames()``), so
the stack in the report is where the code *is*, not where it was scheduled;
when the item finally ends, a second report gives its total.  A batch that
goes on past the threshold through many short items is reported once, as a
slow loop iteration, with the items caught running in it.

Precision is one tick: an item is reported once it has certainly held the
loop for the threshold, and times are estimated to within a tick.  An item
that holds the GIL without ever releasing it (a long C call) cannot be
sampled until it returns: it is then reported with its total alone.

How often: every tick takes the GIL from the loop thread it watches, which
is what the detector costs a busy loop (two thread switches and the tick
itself, a few percent of a core at fifty ticks a second).  So the watchdog
ticks slowly while each tick finds the loop has moved on (a new batch, or
waiting in its poll) -- nothing there can have held it for a whole tick --
and fast only once a tick finds the same batch still running: that batch is
the one that may cross the threshold, and the fast ticks report it close to
the threshold and time it to within a fifth of it.  A step that starts just
after a slow tick is reported after at most ``threshold * 1.5``.
"""

from __future__ import annotations

from .._kernel.loop import KernelLoop

import _thread
import logging
import os
import sys
import time
import traceback
import weakref
from typing import Any, Callable

from .._kernel.task import coarse_clock
from ._threads import HiddenThread, forget_stand_in
from ._state import BlockEvent, LoopObservation, WatchState

# ``_snapshot`` (stacks, labels) is imported when there is something to
# report: a program that never blocks never loads it.

logger = logging.getLogger("treadle.blocking")

_TREADLE_DIR = os.path.dirname(os.path.dirname(__file__))
_KERNEL_DIR = os.path.join(_TREADLE_DIR, "_kernel")

#: Ticks per threshold while the loop moves on between ticks, and while a
#: batch has been running since the last tick (see "How often" above); the
#: bound on the tick.
TICKS_WHILE_HEALTHY = 2
TICKS_WHILE_HELD = 5
MIN_TICK = 0.002
#: How often the coarse clock is refreshed when no loop asks for detection.
IDLE_TICK = 0.25

#: Ticks done by every watchdog of this process so far (what its cost is
#: measured per).
ticks = 0


def _let_go(*_: Any) -> None:
    """A callback that does nothing: its handle holds the objects, and the
    loop's thread drops them with it."""


def _drop_on_loop_thread(loop: Any, obj: Any) -> None:
    """Have *loop*'s thread drop the last references to *obj*."""
    try:
        loop.call_soon_threadsafe(_let_go, obj)
    except RuntimeError:
        pass                            # closed: nothing runs there any more


class _Wake:
    """``threading.Event``'s set/clear/wait for the watchdog's own thread,
    on a bare lock (held while clear).  Why not an Event: its ``wait()``
    leaves a fresh tuple (``acquire``'s arguments) alive while the thread
    sleeps, and a program that counts ``gc.get_objects()`` to find leaks
    (psycopg's suite does, after each of several identical runs) would see
    the count move with the ticks.  Keyword arguments make no such tuple."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = _thread.allocate_lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:            # set already
            pass

    def clear(self) -> None:
        self._lock.acquire(blocking=False)

    def wait(self, timeout: float | None) -> None:
        """Until set() or *timeout* seconds (None: no limit); set stays set."""
        if self._lock.acquire(timeout=-1 if timeout is None else timeout):
            try:
                self._lock.release()
            except RuntimeError:        # a set() in between released it: set
                pass


class Watchdog:
    """The watchdog thread.  *running_loops* returns the loops to watch."""

    def __init__(self, running_loops: Callable[[], list[tuple[Any, LoopObservation]]]) -> None:
        self._running_loops = running_loops
        self._wake = _Wake()
        self._stopping = False
        self._thread = HiddenThread(self._run, "treadle-watchdog")
        self._failed: set[str] = set()
        #: Loops looked at in the last tick (to finish their reports when
        #: they stop running).
        self._watched: dict[int, LoopObservation] = {}

    def start(self) -> None:
        self._thread.start()

    def request_stop(self) -> None:
        """Tell the thread to end, without waiting for it."""
        self._stopping = True
        self._wake.set()

    def join(self) -> None:
        """Wait for the thread to end (after ``request_stop()``)."""
        self._thread.join()
        coarse_clock.now = 0.0

    def stop(self) -> None:
        self.request_stop()
        self.join()

    def wake(self) -> None:
        """Look at the loops again now (one started, or its threshold
        changed)."""
        self._wake.set()

    def _run(self) -> None:
        try:
            self._watch()
        finally:
            for observation in self._watched.values():
                self._stopped(observation)
            self._watched.clear()

    def _stopped(self, obs: LoopObservation) -> None:
        """The loop stopped running: what was reported has ended."""
        when = obs.stopped_at or time.monotonic()
        self._end_item(obs, obs.watch, when)
        self._end_turn(obs, obs.watch, when)
        obs.watch.serial = -1
        settled, obs.watch.settled = obs.watch.settled, None
        if settled is not None:
            settled.set()

    def _watch(self) -> None:
        global ticks
        while True:
            # Clear, then look at the flag: stop() sets the flag before the
            # event, so either this sees the flag or the wait below sees the
            # event.  (Looking first and clearing after loses a stop() that
            # lands in between, and with no loop running the wait below has
            # no timeout: close() then waits for this thread forever.)
            self._wake.clear()
            if self._stopping:
                return
            ticks += 1
            loops = self._running_loops()
            now = time.monotonic()
            coarse_clock.now = now
            current = {id(obs): obs for _, obs in loops}
            for key, observation in list(self._watched.items()):
                if key not in current:
                    self._stopped(observation)
            self._watched = current
            del current
            # (in a call of its own: no local of this frame, which lives as
            # long as the thread, may hold a loop while the thread waits;
            # an unclosed loop would outlive its last reference)
            tick = self._tick_all(loops, now)
            del loops
            forget_stand_in()           # (a report was logged)
            self._wake.wait(tick)

    def _tick_all(self, loops: list[tuple[Any, LoopObservation]], now: float) -> float | None:
        """Tick each running loop; how long to sleep before the next tick
        (None: no loop runs)."""
        tick: float | None = None
        for loop, observation in loops:
            threshold = observation.threshold
            if threshold is None:
                continue
            held = False
            try:
                held = self._tick(loop, observation, threshold, now)
            except Exception as exc:   # never let the thread die
                reason = f"{type(exc).__name__}: {exc}"
                if reason not in self._failed:
                    self._failed.add(reason)
                    logger.exception("treadle's blocking detector failed")
            ticks_per = TICKS_WHILE_HELD if held else TICKS_WHILE_HEALTHY
            step = max(MIN_TICK, threshold / ticks_per)
            tick = step if tick is None else min(tick, step)
        if loops and tick is None:
            tick = IDLE_TICK
        return tick

    # ------------------------------------------------------------------

    def _tick(self, loop: Any, obs: LoopObservation, threshold: float, now: float) -> bool:
        """Look at *loop* once; True if the batch it runs was already
        running at the last tick (it is being held)."""
        st = obs.watch
        ident = loop._thread_id
        if ident is None or loop._waiting:
            self._end_item(obs, st, now)
            self._end_turn(obs, st, now)
            st.serial = -1
            st.last_tick = now
            return False
        serial: int = loop._batch_serial
        held = serial == st.serial
        item = loop._running_item
        items_run = KernelLoop._items_run(loop)
        if not held:
            self._end_item(obs, st, now)
            self._end_turn(obs, st, now)
            if serial == st.serial + 1:
                st.turn_size, st.turn_exact = items_run - st.items_run, True
            else:
                # Items since the last poll: this batch, plus fewer than
                # POLL_EVERY from the batches before it when the loop skips
                # polls (it watches no fd of its users).
                st.turn_size, st.turn_exact = loop._since_poll, False
            st.serial = serial
            st.turn_first = now
            st.turn_prev = st.last_tick or now
            st.turn_items = 0
            st.turn_samples = {}
        st.items_run = items_run
        if item is None:
            self._end_item(obs, st, now)
        elif not st.same_item(item):
            self._end_item(obs, st, now)
            st.item_id = id(item)
            st.item_first = st.item_last = now
            st.item_prev = st.last_tick if st.last_tick >= st.turn_prev else now
            st.turn_items += 1
        else:
            st.item_last = now
            if st.item_reported is None and now - st.item_first >= threshold:
                self._report_item(loop, obs, st, item, now, threshold)
        turn_held = now - st.turn_first
        if st.turn_reported is None and st.item_reported is None:
            if turn_held >= threshold and (st.turn_items >= 2 or item is None):
                self._report_turn(obs, st, now, threshold)
            elif turn_held >= threshold / 2 and item is not None:
                from ._snapshot import item_label
                label = item_label(item)
                if label in st.turn_samples or len(st.turn_samples) < 8:
                    st.turn_samples[label] = st.turn_samples.get(label, 0) + 1
        st.last_tick = now
        if item is not None and loop._running_item is not item:
            # The loop moved on while this tick had lost the GIL, and may
            # have dropped the item since: whoever lets go of it last frees
            # it and runs its finalizers (a pending Task's report, through
            # the loop's exception handler), which must happen on the
            # loop's thread.  While the loop still runs the item it holds
            # it, and the test above and the `del` below have no switch
            # between them, so the common tick lets go safely here.
            _drop_on_loop_thread(loop, item)
        del item
        return held

    def _report_item(self, loop: Any, obs: LoopObservation, st: WatchState, item: Any,
                     now: float, threshold: float) -> None:
        from ._snapshot import _current_task, _safe_name, item_label, item_task
        frames = sys._current_frames()
        top = frames.get(loop._thread_id)
        del frames
        task = item_task(item)
        current = _current_task(loop)
        if current is not None and current is not task:
            task = current               # an eager task's first step, inside item
        stack = stack_lines(item, task, top)
        del top
        held = now - st.item_first
        label = (describe_task(task, loop) if task is not None
                 else item_label(item))
        event = BlockEvent(kind="step" if task is not None else "callback",
                           label=label, task_id=id(task) if task is not None else None,
                           task_name=_safe_name(task) if task is not None else None,
                           noticed_at=time.time(), held=held, stack=stack)
        obs.record(event, task)
        st.item_reported = event
        st.item_task = weakref.ref(task) if task is not None else None
        what = label[:1].upper() + label[1:]
        logger.warning(
            "%s has held the event loop for %s and is still running (threshold %s); "
            "where it is now (most recent call last):\n%s",
            what, _seconds(held), _seconds(threshold), "".join(stack).rstrip())

    def _end_item(self, obs: LoopObservation, st: WatchState, now: float) -> None:
        event = st.item_reported
        if event is not None:
            start = (st.item_prev + st.item_first) / 2 if st.item_prev else st.item_first
            total = max(event.held, (st.item_last + now) / 2 - start)
            task = st.item_task() if st.item_task is not None else None
            obs.finished(event, total, task)
            del task
            what = event.label[:1].upper() + event.label[1:]
            logger.warning("%s held the event loop for %s in total (reported after %s)",
                           what, _seconds(total), _seconds(event.held))
        st.item_id = None
        st.item_task = None
        st.item_reported = None

    def _report_turn(self, obs: LoopObservation, st: WatchState, now: float,
                     threshold: float) -> None:
        held = now - st.turn_first
        size = (f"{'' if st.turn_exact else 'about '}{st.turn_size:,} callbacks "
                f"and task steps" if st.turn_size else "many callbacks and task steps")
        seen = ", ".join(f"{label} ({n}x)" for label, n in
                         sorted(st.turn_samples.items(), key=lambda kv: -kv[1]))
        event = BlockEvent(kind="turn", label=f"a loop iteration of {size}",
                           task_id=None, task_name=None, noticed_at=time.time(),
                           held=held, stack=[])
        obs.record(event, None)
        st.turn_reported = event
        logger.warning(
            "A loop iteration has been running for %s (threshold %s), through %s, "
            "none of them past the threshold by itself%s",
            _seconds(held), _seconds(threshold), size,
            f"; caught running: {seen}" if seen else "")

    def _end_turn(self, obs: LoopObservation, st: WatchState, now: float) -> None:
        event = st.turn_reported
        if event is not None:
            start = (st.turn_prev + st.turn_first) / 2 if st.turn_prev else st.turn_first
            total = max(event.held, (st.last_tick + now) / 2 - start)
            obs.finished(event, total, None)
            logger.warning("The loop iteration ran for %s in total", _seconds(total))
        st.turn_reported = None


def describe_task(task: Any, loop: Any) -> str:
    """"Task 'name' (coro() at file:line, created at ..., by Task 'x')"."""
    from ._snapshot import _safe_name
    parts = []
    coro = task.get_coro()
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    if code is not None:
        parts.append(f"{getattr(code, 'co_qualname', code.co_name)}() at "
                     f"{code.co_filename}:{code.co_firstlineno}")
    where = spawn_location(task, loop)
    if where:
        parts.append(f"created at {where}")
    core = getattr(task, "_core", None)
    spawner = getattr(core, "_spawner", None)
    parent = spawner() if spawner is not None else None
    if parent is not None:
        parts.append(f"by Task {_safe_name(parent)!r}")
    del parent
    inner = ", ".join(parts)
    return f"Task {_safe_name(task)!r}" + (f" ({inner})" if inner else "")


def spawn_location(task: Any, loop: Any) -> str | None:
    """Where *task* was created, when that was recorded: by per-task
    tracking, or by debug mode's source traceback."""
    obs = getattr(loop, "_observation", None)
    tracker = obs.tracker if obs is not None else None
    if tracker is not None:
        where: str | None = tracker.spawn_location(task)
        if where:
            return where
    source = getattr(task, "_source_traceback", None)
    if source:
        last = source[-1]
        return f"{last[0]}:{last[1]} in {last[2]}"
    return None


def stack_lines(item: Any, task: Any, top: Any) -> list[str]:
    """The loop thread's stack from where *item* (or *task*) was entered up
    to *top*, formatted as a traceback."""
    frames: list[Any] = []
    frame = top
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    frames.reverse()
    start = _anchor(frames, item, task)
    chosen = [f for f in frames[start:] if not f.f_code.co_filename.startswith(_KERNEL_DIR)]
    summary = traceback.StackSummary.extract(
        ((f, f.f_lineno) for f in chosen), lookup_lines=True)
    del frames, chosen
    return summary.format()


def _anchor(frames: list[Any], item: Any, task: Any) -> int:
    from ._snapshot import coroutine_frames
    targets: list[Any] = []
    if task is not None:
        outer = coroutine_frames(task.get_coro())
        if outer:
            targets.append(outer[0])
    code = _callback_code(getattr(item, "_callback", None))
    for i, frame in enumerate(frames):
        if frame in targets or (code is not None and frame.f_code is code):
            return i
    # Not found: everything above the last frame of the loop machinery.
    last = 0
    for i, frame in enumerate(frames):
        name = frame.f_code.co_filename
        if name.startswith(_KERNEL_DIR) or name.endswith(("base_events.py", "runners.py",
                                                          "events.py")):
            last = i + 1
    return last if last < len(frames) else 0


def _callback_code(cb: Any) -> Any:
    for _ in range(10):
        if cb is None:
            return None
        code = getattr(cb, "__code__", None)
        if code is not None:
            return code
        inner = getattr(cb, "__func__", None) or getattr(cb, "func", None)
        if inner is None:
            return None
        cb = inner
    return None


def _seconds(value: float) -> str:
    if value < 1.0:
        return f"{value * 1e3:.0f} ms"
    return f"{value:.2f} s"
