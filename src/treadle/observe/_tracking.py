"""Per-task timing: steps, busy, scheduled and idle time, wakes.

Owns: ``TaskTracker``, an instrument (``_kernel/seams.py``) attached to one
loop while a ``treadle top`` viewer is connected or the program asked for
it (``treadle.metrics.track_tasks``), and the numbers it keeps per task.

A task's life is a cycle: *idle* (waiting: from the end of a step until
something wakes it), *scheduled* (woken, on the ready queue, until its next
step starts: time lost to a saturated loop), *busy* (its step running).
The instrument's step hooks time the steps; wakes are seen by standing in
for the ready queue's append while attached (the kernel's tasks queue
themselves through the callable they were given, ``core._ready``, and the
loop's ``call_soon`` through ``_kernel_ready_append``).  A wake that
happens while the task's own step runs is a *self-wake* (``sleep(0)``, a
bare yield).

Never: stays attached when nobody asked for it (it puts the loop on its
slow path: every item then goes through the instrument hooks), or keeps a
task alive (stats are keyed by id and dropped when the task is freed).
Attaching and detaching happen on the loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import weakref
from collections import deque
from typing import Any, Callable

from .._kernel.task import TaskCore

_clock = time.perf_counter
_TREADLE_DIR = os.path.dirname(os.path.dirname(__file__))
#: Frames skipped to find who created a task: asyncio's, treadle's, and
#: contextlib's (async with around a task group).
_SKIP = (os.path.dirname(asyncio.__file__) + os.sep, _TREADLE_DIR + os.sep,
         contextlib.__file__)

#: Finished tasks stay visible this long (``treadle top`` shows them).
FINISHED_KEEP = 5.0
FINISHED_MAX = 200


class Stats:
    """The numbers of one task (seconds from ``time.perf_counter``)."""

    __slots__ = ("task_id", "name", "steps", "busy", "scheduled", "idle", "wakes",
                 "self_wakes", "longest_step", "spawned_at", "created", "woken_at",
                 "step_started", "step_ended", "running", "done_at", "ref")

    def __init__(self, task_id: int, name: str, spawned_at: str | None, now: float) -> None:
        self.task_id = task_id
        self.name = name
        self.steps = 0
        self.busy = 0.0
        self.scheduled = 0.0
        self.idle = 0.0
        self.wakes = 0
        self.self_wakes = 0
        self.longest_step = 0.0
        self.spawned_at = spawned_at
        self.created = now
        self.woken_at = 0.0
        self.step_started = 0.0
        self.step_ended = now
        self.running = False
        self.done_at: float | None = None
        self.ref: Any = None

    def as_dict(self, now: float) -> dict[str, Any]:
        """The numbers up to *now*, the current phase included."""
        busy, scheduled, idle = self.busy, self.scheduled, self.idle
        if self.running:
            busy += now - self.step_started
        elif self.done_at is None:
            if self.woken_at:                 # woken, not yet stepped
                scheduled += max(0.0, now - max(self.woken_at, self.step_ended))
            else:
                idle += max(0.0, now - self.step_ended)
        longest = self.longest_step
        if self.running:
            longest = max(longest, now - self.step_started)
        return {"steps": self.steps, "busy": busy, "scheduled": scheduled, "idle": idle,
                "wakes": self.wakes, "self_wakes": self.self_wakes,
                "longest_step": longest, "spawned_at": self.spawned_at,
                "tracked_for": now - self.created,
                "running_for": (now - self.step_started) if self.running else None}


class TaskTracker:
    """The per-task timing instrument for one loop."""

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._stats: dict[int, Stats] = {}
        self._finished: deque[Stats] = deque()
        self._append: Callable[[Any], None] = loop._kernel_ready_append
        self._wake_fn: Callable[[Any], None] = self._wake
        self.attached = False

    # -- attach / detach (on the loop's thread) --------------------------------

    def attach(self) -> None:
        if self.attached:
            return
        loop = self._loop
        self._append = loop._kernel_ready_append
        loop._kernel_ready_append = self._wake_fn
        now = _clock()
        for core in _pending_cores(loop):
            if core._ready is self._append:
                core._ready = self._wake_fn
            self._get(core, now)
            waiter = core._fut_waiter
            if waiter is None or waiter.done():   # already on the ready queue
                self._stats[id(core)].woken_at = now
            del waiter
        loop.add_instrument(self)
        self.attached = True

    def detach(self) -> None:
        if not self.attached:
            return
        loop = self._loop
        try:
            loop.remove_instrument(self)
        except KeyError:
            pass
        loop._kernel_ready_append = self._append
        for core in _pending_cores(loop):
            if core._ready is self._wake_fn:
                core._ready = self._append
        self.attached = False

    # -- the numbers -------------------------------------------------------------

    def stats_of(self, task: Any) -> Stats | None:
        core = getattr(task, "_core", None)
        if core is None:
            return None
        return self._stats.get(id(core))

    def spawn_location(self, task: Any) -> str | None:
        stats = self.stats_of(task)
        return stats.spawned_at if stats is not None else None

    def finished(self) -> list[Stats]:
        """Recently finished tasks (copied)."""
        now = _clock()
        while self._finished and (len(self._finished) > FINISHED_MAX or
                                  now - (self._finished[0].done_at or now) > FINISHED_KEEP):
            try:
                self._finished.popleft()
            except IndexError:
                break
        return list(self._finished)

    def _get(self, core: TaskCore, now: float) -> Stats:
        stats = self._stats.get(id(core))
        if stats is None:
            task = core._task
            stats = Stats(id(task), _name(task), None, now)
            stats.step_ended = now
            self._keep(core, task, stats)
        return stats

    def _keep(self, core: TaskCore, task: Any, stats: Stats) -> None:
        key = id(core)
        registry = self._stats
        if task is not None:
            def forget(_: Any, key: int = key) -> None:
                registry.pop(key, None)
            stats.ref = weakref.ref(task, forget)
        registry[key] = stats

    # -- hooks -------------------------------------------------------------------

    def _wake(self, item: Any) -> None:
        self._append(item)
        if type(item) is TaskCore:
            now = _clock()
            stats = self._stats.get(id(item))
            if stats is None:
                stats = self._get(item, now)
            stats.wakes += 1
            if self._loop._running_item is item:
                stats.self_wakes += 1
            elif not stats.running:
                stats.idle += max(0.0, now - stats.step_ended)
            stats.woken_at = now

    def task_spawned(self, task: Any) -> None:
        now = _clock()
        core = task._core
        stats = Stats(id(task), _name(task), _caller_location(), now)
        self._keep(core, task, stats)

    def task_exited(self, task: Any) -> None:
        core = getattr(task, "_core", None)
        if core is None:
            return
        stats = self._stats.pop(id(core), None)
        if stats is not None:
            stats.done_at = _clock()
            stats.ref = None
            stats.name = _name(task)
            self._finished.append(stats)

    def before_task_step(self, task: Any) -> None:
        self._step_starts(task._core)

    def after_task_step(self, task: Any) -> None:
        self._step_ends(task._core, id(task))

    def before_callback(self, handle: Any) -> None:
        core = getattr(getattr(handle, "_callback", None), "__self__", None)
        if type(core) is TaskCore:
            self._step_starts(core)

    def after_callback(self, handle: Any) -> None:
        core = getattr(getattr(handle, "_callback", None), "__self__", None)
        if type(core) is TaskCore:
            self._step_ends(core, id(core._task) if core._task is not None else None)

    def _step_starts(self, core: TaskCore) -> None:
        now = _clock()
        stats = self._stats.get(id(core))
        if stats is None:
            stats = self._get(core, now)
        if stats.woken_at:
            stats.scheduled += max(0.0, now - max(stats.woken_at, stats.step_ended))
        stats.woken_at = 0.0
        stats.step_started = now
        stats.running = True

    def _step_ends(self, core: TaskCore, task_id: int | None) -> None:
        now = _clock()
        stats = self._stats.get(id(core))
        if stats is None:
            # It finished in this step: task_exited already moved it.
            for done in reversed(self._finished):
                if done.running and (task_id is None or done.task_id == task_id):
                    stats = done
                    break
            if stats is None:
                return
        if not stats.running:
            return
        step = now - stats.step_started
        stats.busy += step
        stats.steps += 1
        if step > stats.longest_step:
            stats.longest_step = step
        stats.step_ended = now
        stats.running = False


def _pending_cores(loop: Any) -> list[TaskCore]:
    from ._snapshot import loop_tasks
    cores = []
    for task in loop_tasks(loop):
        core = getattr(task, "_core", None)
        if isinstance(core, TaskCore):
            cores.append(core)
    return cores


def _name(task: Any) -> str:
    try:
        return str(task.get_name())
    except Exception:
        return "?"


def _caller_location() -> str | None:
    """file:line in function of the first frame outside treadle, asyncio
    and contextlib: the code that created the task."""
    frame: Any = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not filename.startswith(_SKIP):
            return f"{filename}:{frame.f_lineno} in {frame.f_code.co_name}"
        frame = frame.f_back
    return None
