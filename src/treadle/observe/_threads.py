"""Threads of treadle's own that ``threading`` does not list.

Owns: starting and joining the observation threads (the blocking
detector's watchdog, the ``treadle ps`` server and its clients).

Why: asyncio's loop runs no thread of its own, and programs and test
suites count threads: ``threading.active_count()``, or
``threading.enumerate()`` before and after each test to find leaks
(anyio's suite asserts how many worker threads exist while a loop runs).
A thread started with ``_thread`` is not listed there, unless it asks
``threading.current_thread()`` who it is, which ``logging`` does for every
record it makes; the stand-in ``threading`` then registers is dropped
again by ``forget_stand_in()``, which these threads call after anything
that may have logged.

Never: hides a thread from the system (``os.fork()`` counts system
threads: ``_observer`` stops these for a fork) or from the kernel's poll
rule (``OWN_THREADS``: a switch interval's wait for the GIL costs these
threads nothing, so a busy loop need not poll on their account).
"""

from __future__ import annotations

import _thread
import sys
import threading
from typing import Callable

from .._kernel.loop import OWN_THREADS


#: Held while OWN_THREADS changes (two of these threads may start or end
#: at once).
_counting = _thread.allocate_lock()


def forget_stand_in() -> None:
    """Drop the entry ``threading`` made for this thread when something
    (``logging``) asked for ``threading.current_thread()``."""
    ident = _thread.get_ident()
    active = threading._active  # type: ignore[attr-defined]
    with threading._active_limbo_lock:  # type: ignore[attr-defined]
        if isinstance(active.get(ident), threading._DummyThread):
            del active[ident]


def _finished() -> None:
    """The target of a thread that has run."""


class HiddenThread:
    """``target()`` in a thread of its own (see the module docstring).

    Its waits are ``threading.Event`` waits, as ``threading.Thread``'s are:
    tools that flag blocking calls on a loop's thread (blockbuster) allow
    the lock acquisitions ``threading`` makes, and would flag ours."""

    __slots__ = ("_target", "_finished", "ident", "name")

    def __init__(self, target: Callable[[], object], name: str) -> None:
        self._target = target
        self._finished = threading.Event()
        self.ident: int | None = None
        self.name = name

    def start(self) -> None:
        """Start the thread.  Not waited for (a wait on the loop's thread is
        what blockbuster flags): the thread counts itself in
        ``OWN_THREADS`` once it runs, after the interpreter has counted it
        in ``_thread._count()``, so the kernel's poll rule sees it as
        another thread until then, never the other way round."""
        self.ident = _thread.start_new_thread(self._main, ())

    def _main(self) -> None:
        with _counting:
            OWN_THREADS[0] += 1
        try:
            self._target()
        except BaseException as exc:     # a daemon thread's end: reported, never raised
            if not isinstance(exc, SystemExit):
                print(f"treadle: thread {self.name} failed: {exc!r}", file=sys.stderr)
        finally:
            # As threading.Thread: the target (often a bound method of what
            # owns this thread) goes, leaving no cycle behind.
            self._target = _finished
            forget_stand_in()
            with _counting:          # (threads that end by themselves too)
                OWN_THREADS[0] -= 1
            self._finished.set()

    def is_alive(self) -> bool:
        """Started and not finished."""
        return self.ident is not None and not self._finished.is_set()

    def is_current(self) -> bool:
        return self.ident is not None and self.ident == _thread.get_ident()

    def join(self) -> None:
        """Wait for the thread to end (at once if it never started)."""
        if self.ident is None or self.is_current():
            return
        self._finished.wait()
