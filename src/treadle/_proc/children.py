"""Watching child processes exit, and reaping every one of them.

Owns: turning "child N exited" into one call, on the loop that spawned it,
with N's exit status; and reaping (``waitpid``) every child it is given,
so none is left a zombie, whatever happens to its loop.
Never: waits on "any child" (``waitpid(-1)``), which would steal the exit
status of children other code spawned (``subprocess.run`` in a thread, a
library's own ``Popen``); never installs a signal handler.

How, in order of preference:

1. **pidfd** (Linux >= 5.3).  ``os.pidfd_open(pid)`` right after the spawn,
   registered as a reader on the spawning loop.  It turns readable when the
   child exits; the reader reaps it with ``waitpid(pid, WNOHANG)`` and
   reports.  No thread, no signal, any number of loops in any threads.  The
   pidfd also makes ``send_signal`` race-free (``pidfd_send_signal`` cannot
   hit a recycled pid).
2. **One waiter thread per process** (``Waiter``) where pidfds do not
   exist, or when ``pidfd_open`` fails (out of fds).  It lives only while it
   has children to watch.  It blocks in ``waitid(P_ALL, WEXITED | WNOWAIT)``,
   which says "some child has exited" *without reaping it*, then reaps its
   own children by pid and hands each status to its loop with
   ``call_soon_threadsafe``.  A zombie that is not ours (another library's
   child not waited for yet) would make that wait return at once forever,
   so while one is pending the thread polls its own pids instead, backing
   off from 1 ms to 50 ms.  Why not SIGCHLD on the wake-up pipe: Python
   runs signal handlers only in the main thread and ``set_wakeup_fd`` is one
   per process, so it cannot serve loops in other threads.
3. **A loop closed while its children run**: the children keep running
   (asyncio does not kill them either; a subprocess transport that is
   garbage collected unclosed kills its child, as asyncio's does).  Their
   pidfds are closed and the children handed to the waiter thread, which
   reaps them when they exit and reports to nobody.

When someone else reaps our child first (``Popen.poll()``/``wait()`` on the
``get_extra_info('subprocess')`` object, a ``waitpid(-1)`` SIGCHLD handler),
our ``waitpid`` fails with ECHILD: the status ``Popen`` recorded is used if
it has one, else 255 with asyncio's warning.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any, Callable

from .._kernel import _compat

#: Polling delays of the waiter thread while a foreign zombie blocks its wait.
_MIN_DELAY = 0.001
_MAX_DELAY = 0.05

_pidfd_ok: bool | None = None


def pidfd_supported() -> bool:
    """Whether ``os.pidfd_open`` works here (checked once per process)."""
    global _pidfd_ok
    if _pidfd_ok is None:
        ok = hasattr(os, "pidfd_open")
        if ok:
            try:
                os.close(os.pidfd_open(os.getpid()))
            except OSError:
                ok = False
        _pidfd_ok = ok
    return _pidfd_ok


def _exitcode(status: int) -> int:
    try:
        return os.waitstatus_to_exitcode(status)
    except ValueError:
        # A status we cannot decode: pass it on rather than lose it.
        return status


class Child:
    """One watched child: its ``Popen``, its pidfd (-1: none) and, once
    reaped, its return code."""

    __slots__ = ("pid", "popen", "pidfd", "returncode", "on_exit")

    pid: int
    popen: Any
    pidfd: int
    returncode: int | None
    on_exit: Callable[[int], object] | None

    def __init__(self, popen: Any, on_exit: Callable[[int], object] | None) -> None:
        self.pid = popen.pid
        self.popen = popen
        self.pidfd = -1
        self.returncode = None
        self.on_exit = on_exit

    def reap(self) -> int | None:
        """``waitpid(WNOHANG)``: the return code, or None if still running."""
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            code: int | None = self.popen.returncode
            if code is None:
                _compat.asyncio_logger().warning(
                    "Unknown child process pid %d, will report returncode 255",
                    self.pid)
                code = 255
        else:
            if pid == 0:
                return None
            code = _exitcode(status)
        self.returncode = code
        # Popen.poll() would otherwise find no child and say 0.
        if self.popen.returncode is None:
            self.popen.returncode = code
        return code

    def send_signal(self, sig: int) -> None:
        """Signal the child unless it has been reaped (its pid may belong to
        another process by now).  A child that exited but is not reaped yet
        gets nothing and raises nothing, as with ``os.kill``."""
        if self.returncode is not None or self.popen.returncode is not None:
            return
        try:
            if self.pidfd >= 0:
                signal.pidfd_send_signal(self.pidfd, sig)
            else:
                os.kill(self.pid, sig)
        except ProcessLookupError:
            pass


class ChildWatcher:
    """The children of one loop (pidfd mode), and the hand-over of the rest
    to the process-wide waiter thread."""

    __slots__ = ("_loop", "_children")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._children: dict[int, Child] = {}

    def watch(self, popen: Any, on_exit: Callable[[int], object]) -> Child:
        """Start watching *popen*'s child; *on_exit(returncode)* runs on the
        loop once it has been reaped."""
        child = Child(popen, on_exit)
        if pidfd_supported():
            try:
                fd = os.pidfd_open(child.pid)
            except OSError:
                fd = -1     # EMFILE and friends: the thread can still do it
            if fd >= 0:
                child.pidfd = fd
                try:
                    self._loop._add_reader(fd, self._pidfd_ready, child)
                except BaseException:
                    os.close(fd)
                    child.pidfd = -1
                    raise
                self._children[child.pid] = child
                return child
        waiter().add(child, self._loop)
        return child

    def _pidfd_ready(self, child: Child) -> None:
        fd = child.pidfd
        self._loop._remove_reader(fd)
        try:
            code = child.reap()
        except BaseException:
            # waitpid() failed for a reason of its own: the error goes to
            # the exception handler, but the pidfd must not leak.
            self._children.pop(child.pid, None)
            child.pidfd = -1
            os.close(fd)
            raise
        if code is None:
            # Readable yet not reapable: the kernel is still tearing the
            # child down.  Look again shortly (the fd stays readable, so
            # re-adding the reader at once would spin).
            self._loop.call_later(_MIN_DELAY, self._retry, child)
            return
        del self._children[child.pid]
        child.pidfd = -1
        os.close(fd)
        callback = child.on_exit
        child.on_exit = None
        if callback is not None:
            callback(code)

    def _retry(self, child: Child) -> None:
        if child.pidfd >= 0 and child.pid in self._children:
            self._loop._add_reader(child.pidfd, self._pidfd_ready, child)

    def close(self) -> None:
        """The loop is closing: children still running go to the waiter
        thread, which reaps them and tells nobody (rule 3)."""
        children = list(self._children.values())
        self._children.clear()
        for child in children:
            fd = child.pidfd
            self._loop._remove_reader(fd)
            child.pidfd = -1
            os.close(fd)
            child.on_exit = None
            waiter().add(child, None)
        self._loop = None       # no cycle through the closed loop


class Waiter:
    """The process-wide waiter thread (rule 2 of the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[int, tuple[Child, Any]] = {}
        self._thread: threading.Thread | None = None
        self._delay = _MIN_DELAY

    def add(self, child: Child, loop: Any) -> None:
        """Reap *child*; if *loop* is not None and still open then, call its
        ``on_exit`` there."""
        with self._lock:
            self._entries[child.pid] = (child, loop)
            self._delay = _MIN_DELAY
            if self._thread is None:
                thread = threading.Thread(target=self._run, daemon=True,
                                          name="treadle-child-waiter")
                self._thread = thread
                thread.start()

    def watching(self) -> int:
        with self._lock:
            return len(self._entries)

    def _run(self) -> None:
        while True:
            self._reap_ours()
            with self._lock:
                if not self._entries:
                    self._thread = None
                    return
            self._wait_for_an_exit()

    def _reap_ours(self) -> None:
        with self._lock:
            entries = list(self._entries.values())
        for child, loop in entries:
            try:
                code = child.reap()
            except Exception as exc:   # never let the thread die silently
                _compat.asyncio_logger().error(
                    "treadle: reaping pid %d failed: %r", child.pid, exc)
                code = 255
            if code is None:
                continue
            with self._lock:
                self._entries.pop(child.pid, None)
            callback = child.on_exit
            child.on_exit = None
            if loop is None or callback is None or loop.is_closed():
                continue
            try:
                loop.call_soon_threadsafe(callback, code)
            except RuntimeError:
                pass    # the loop closed in between: nobody to tell

    def _wait_for_an_exit(self) -> None:
        waitid = getattr(os, "waitid", None)
        if waitid is not None:
            try:
                info = waitid(os.P_ALL, 0, os.WEXITED | os.WNOWAIT)
            except OSError:
                # ECHILD: no children at all (ours were reaped elsewhere,
                # which _reap_ours reports); anything else: poll instead.
                info = None
            if info is not None:
                with self._lock:
                    ours = info.si_pid in self._entries
                    if ours:
                        self._delay = _MIN_DELAY
                if ours:
                    return
        # A zombie that is not ours (or no waitid): poll, backing off.
        with self._lock:
            delay = self._delay
            self._delay = min(delay * 2, _MAX_DELAY)
        time.sleep(delay)


_waiter: Waiter | None = None
_waiter_lock = threading.Lock()


def waiter() -> Waiter:
    """The process's waiter (made on first use)."""
    global _waiter
    with _waiter_lock:
        if _waiter is None:
            _waiter = Waiter()
        return _waiter


def _after_fork_in_child() -> None:
    # The child of a fork has none of our threads and none of our children.
    global _waiter, _waiter_lock
    _waiter = None
    _waiter_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
