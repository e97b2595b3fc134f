"""The process-wide observer: which loops exist, and the two threads.

Owns: the set of treadle loops that have run and are not closed, the
watchdog thread (``_watchdog.py``) and the server thread (``_server.py``),
and when they start and stop: both start when the first loop starts running
and stop when the last such loop is closed (or the process exits; a forked
child starts afresh).  Loops that stop and run again, as
``run_until_complete`` does, keep them: starting threads and binding a
socket for every call would cost such programs more than the calls.
Per-task tracking is switched on and off here as ``treadle top`` viewers
come and go.

Never: blocks a loop.  The only calls made from a loop's thread are
``loop_started``/``loop_stopped``/``loop_closed`` (a lock held for a few
dictionary operations; starting or joining the threads the first and last
time).
"""

from __future__ import annotations

import atexit
import os
import threading
import time
import weakref
from typing import Any

from .._kernel.task import coarse_clock
from . import _config
from ._state import LoopObservation


class Observer:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._pid = os.getpid()
        self._open: weakref.WeakSet[Any] = weakref.WeakSet()
        # A list, not a dict keyed by id(): the cyclic GC untracks an empty
        # dict and tracks it again when a loop goes in, so every run looked
        # like a new object to leak tests that compare gc.get_objects()
        # across a loop's run (grpclib's); a list is always tracked.
        self._running: list[Any] = []
        self._watchdog: Any = None
        self._server: Any = None
        self._viewers = 0
        #: The threads were stopped for an ``os.fork()`` (``_before_fork``).
        self._paused_for_fork = False

    # -- from the loops ----------------------------------------------------------

    def loop_created(self, loop: Any) -> None:
        """A treadle loop was made: the threads start now if they are not
        running (see ``Server.start`` for why not when it first runs)."""
        if not _config.enabled():
            return
        with self._lock:
            self._opened(loop)

    def loop_started(self, loop: Any) -> None:
        obs: LoopObservation = loop._observation
        obs.run_started = time.monotonic()
        # Waits that start before the watchdog's first tick get a time too.
        coarse_clock.now = obs.run_started
        if obs.track_requested or self._viewers:
            tracker_on(loop)
        if not _config.enabled():
            return
        with self._lock:
            self._opened(loop)
            if not any(item is loop for item in self._running):
                self._running.append(loop)
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.wake()

    def loop_stopped(self, loop: Any) -> None:
        obs: LoopObservation = loop._observation
        now = time.monotonic()
        obs.stopped_at = now
        if obs.run_started is not None:
            obs.run_total += now - obs.run_started
            obs.run_started = None
        watch = obs.watch
        settled = None
        if watch.item_reported is not None or watch.turn_reported is not None:
            # Something was reported as still holding the loop: it ended
            # here.  Wait (briefly) for the watchdog to say so, so that the
            # counters are complete once run_until_complete() returns.
            settled = watch.settled = threading.Event()
        with self._lock:
            self._not_running(loop)
        self.wake()
        if settled is not None and self._watchdog is not None:
            settled.wait(1.0)

    def loop_closed(self, loop: Any) -> None:
        obs: LoopObservation | None = getattr(loop, "_observation", None)
        if obs is not None and obs.tracker is not None:
            obs.tracker = None
        with self._lock:
            if os.getpid() != self._pid:
                self._forked()
                return
            self._not_running(loop)
            self._open.discard(loop)
            if len(self._open):
                return
            threads = self._detach_threads()
        _stop(*threads)          # outside the lock: the threads take it

    def _not_running(self, loop: Any) -> None:
        running = self._running
        for i, item in enumerate(running):
            if item is loop:
                del running[i]
                return

    # -- for the threads ----------------------------------------------------------

    def running_loops(self) -> list[tuple[Any, LoopObservation]]:
        with self._lock:
            loops = list(self._running)
        return [(loop, loop._observation) for loop in loops]

    def open_loops(self) -> list[Any]:
        with self._lock:
            for _ in range(10):
                try:
                    return list(self._open)
                except RuntimeError:
                    continue
            return []

    def viewer_attached(self) -> None:
        with self._lock:
            self._viewers += 1
            first = self._viewers == 1
        if first:
            for loop in self.open_loops():
                _call_in(loop, tracker_on, loop)

    def viewer_detached(self) -> None:
        with self._lock:
            self._viewers -= 1
            last = self._viewers == 0
        if last:
            for loop in self.open_loops():
                if not loop._observation.track_requested:
                    _call_in(loop, tracker_off, loop)

    def wake(self) -> None:
        """A loop's threshold changed: the watchdog recomputes its tick."""
        watchdog = self._watchdog
        if watchdog is not None:
            watchdog.wake()

    def has_viewers(self) -> bool:
        return self._viewers > 0

    @property
    def socket_path(self) -> str | None:
        server = self._server
        return server.path if server is not None else None

    # -- threads -------------------------------------------------------------------

    def _opened(self, loop: Any) -> None:
        """(Under the lock.)  *loop* is open, and the threads run."""
        if os.getpid() != self._pid:
            self._forked()
        self._open.add(loop)
        if self._watchdog is None:
            self._start()

    def _start(self) -> None:
        from ._server import Server
        from ._watchdog import Watchdog
        self._watchdog = Watchdog(self.running_loops)
        self._watchdog.start()
        server = Server(self)
        if server.start():
            self._server = server

    def _detach_threads(self) -> tuple[Any, Any]:
        watchdog, self._watchdog = self._watchdog, None
        server, self._server = self._server, None
        return watchdog, server

    def _forked(self) -> None:
        """In a child made by fork(): the threads did not come along; the
        parent's socket is the parent's (closed here, never removed)."""
        self._lock = threading.RLock()     # may have been held at the fork
        self._pid = os.getpid()
        server, self._server = self._server, None
        if server is not None:
            server.forget()
        self._watchdog = None
        self._running.clear()
        self._open = weakref.WeakSet()
        self._viewers = 0

    def _before_fork(self) -> None:
        """``os.fork()`` (multiprocessing's fork, ...) is about to run: the
        threads stop for it and start again in the parent afterwards, so
        that the process forks with no thread of ours, as it would on
        asyncio's loop (3.12+ warns about forking a process that has
        threads, and a child could inherit a lock one of them held)."""
        with self._lock:
            if os.getpid() != self._pid:
                return
            threads = self._detach_threads()
            self._paused_for_fork = threads != (None, None)
        if not self._paused_for_fork:
            return
        before = _os_threads()
        _stop(*threads)
        # join() returns before the system thread is quite gone, and the
        # warning counts system threads: wait (briefly) until it has.
        stopped = sum(thread is not None for thread in threads)
        deadline = time.monotonic() + 0.1
        while before is not None and time.monotonic() < deadline:
            now = _os_threads()
            if now is None or now <= before - stopped:
                break
            time.sleep(0.0002)

    def _after_fork_in_parent(self) -> None:
        with self._lock:
            paused, self._paused_for_fork = self._paused_for_fork, False
            if not paused or self._watchdog is not None:
                return
            running = list(self._running)
            if not running:
                self._restart_after_fork()
                return
        # A running loop starts them again on its next turn, not this hook:
        # 3.13's os.fork() counts the process's threads for its
        # "multi-threaded" warning after the hooks have run, so it would
        # count threads started here.  (With no loop running they start at
        # once, and 3.13 warns about the next fork of that kind.)
        try:
            running[0].call_soon_threadsafe(self._restart_after_fork)
        except RuntimeError:               # closed meanwhile: the next
            pass                           # loop made or started does it

    def _restart_after_fork(self) -> None:
        with self._lock:
            if (os.getpid() == self._pid and self._watchdog is None
                    and len(self._open) and _config.enabled()):
                self._start()

    def shutdown(self) -> None:
        with self._lock:
            if os.getpid() != self._pid:
                return
            threads = self._detach_threads()
        _stop(*threads)


def _os_threads() -> int | None:
    """The threads of this process as the system counts them (Linux)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return None


def _stop(watchdog: Any, server: Any) -> None:
    # Both are told first, then waited for: their wake-ups overlap, and
    # closing the last loop waits for one thread switch, not two in a row.
    if watchdog is not None:
        watchdog.request_stop()
    if server is not None:
        server.stop()
    if watchdog is not None:
        watchdog.join()


def _call_in(loop: Any, fn: Any, *args: Any) -> None:
    """Run fn(*args) on *loop*'s thread (now, if this is it)."""
    if loop.is_closed():
        return
    if loop._thread_id == threading.get_ident():
        fn(*args)
        return
    try:
        loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:                   # closed meanwhile
        pass


def tracker_on(loop: Any) -> None:
    obs: LoopObservation = loop._observation
    if loop.is_closed():
        return
    from ._tracking import TaskTracker
    if obs.tracker is None or not obs.tracker.attached:
        # A fresh tracker each time: numbers from before a gap would
        # count the gap as idle time.
        obs.tracker = TaskTracker(loop)
        obs.tracker.attach()


def tracker_off(loop: Any) -> None:
    obs: LoopObservation = loop._observation
    tracker = obs.tracker
    if tracker is not None and not loop.is_closed():
        tracker.detach()


observer = Observer()
atexit.register(observer.shutdown)
os.register_at_fork(before=lambda: observer._before_fork(),
                    after_in_parent=lambda: observer._after_fork_in_parent(),
                    after_in_child=lambda: observer._forked())
