"""Starting child processes without blocking the loop.

Owns: running ``subprocess.Popen`` for one loop's ``subprocess_exec``/
``subprocess_shell`` in a thread of its own, handing the ``Popen`` (or the
exception it raised) to the coroutine that awaits it, and what becomes of
a child that nobody waits for any more.
Never: touches the loop from the spawning thread except through
``call_soon_threadsafe``; never leaves a child running, a pipe fd open or a
thread alive when the awaiting coroutine gives up or the loop closes.

Why: ``Popen`` forks (a full copy of the page tables when it cannot
vfork, which takes tens of milliseconds in a process with a large heap),
then blocks reading an error pipe until the child has exec'd.  asyncio does
all of that on the loop thread, so every spawn stalls every other task; and
tools that flag blocking calls in async code (blockbuster) let only
asyncio's own files do it.

Rules:

1. One spawning thread per loop, alive only while it has spawns to do: the
   loop thread queues each spawn (a ``SimpleQueue``: the loop never waits
   for a lock) and starts the thread if none is running; the thread spawns
   the queued children one after another, as asyncio does on the loop
   thread, and exits when the queue is empty.  Starting a thread waits for
   it to run, so one thread per burst, not per child, keeps a burst of
   spawns (``gather`` of a hundred) from stalling the loop; and no thread
   lingers (one would also make the kernel poll on every busy turn, see
   ``_kernel/loop.py``).  The loop thread starts it, so it inherits the loop
   thread's signal mask, which the child inherits in turn, exactly as if
   the loop thread had forked.  It is not a daemon: the interpreter waits
   for it at exit, so no spawn is cut short half way.  ``preexec_fn``, if
   given, runs in a child forked from that thread while the loop thread
   goes on running (``subprocess`` documents it as unsafe in the presence
   of threads, which is what a loop is now).
2. ``Popen``'s exception (``FileNotFoundError``, ``PermissionError``, the
   ``ValueError``/``TypeError`` of bad arguments, ...) is raised, unchanged,
   from the await, as asyncio raises it from the call.
3. Cancelled before the thread took it: no child is started.  Cancelled
   while the thread spawns: the await raises ``CancelledError`` at once;
   when ``Popen`` returns, the child is killed, its pipes closed and it is
   reaped in the background by the loop's child watcher.  Nothing was
   handed to a protocol yet, so no callback runs.
4. Loop closed with spawns pending: ``close()`` drops those not started,
   waits for the one in the thread's hands (one fork and exec), and
   discards its child as in rule 3, through the process-wide waiter
   (``children.py``).
5. A thread that cannot be started (the interpreter is shutting down, or a
   thread limit): the loop thread spawns, as on asyncio.
"""

from __future__ import annotations

import asyncio
import os
import queue
import signal
import subprocess
import threading
from typing import Any

from .children import Child, waiter


def _popen(args: Any, kwargs: dict[str, Any]) -> Any:
    # Looked up at call time: tests (asyncio's among them) patch it.
    return subprocess.Popen(args, **kwargs)


def _ignore(returncode: int) -> None:
    """The exit callback of a child nobody waits for."""


class _Spawn:
    """One ``Popen`` call: its arguments, its future and, once the thread
    has made it, its outcome (``done`` is set then)."""

    __slots__ = ("future", "args", "kwargs", "popen", "error", "done")

    def __init__(self, future: asyncio.Future[Any], args: Any,
                 kwargs: dict[str, Any]) -> None:
        self.future = future
        self.args = args
        self.kwargs = kwargs
        self.popen: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class Spawner:
    """The spawns of one loop (rules in the module docstring)."""

    __slots__ = ("_loop", "_queue", "_pending", "_working")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._queue: queue.SimpleQueue[_Spawn] = queue.SimpleQueue()
        #: Queued or being spawned, and not yet handed to the loop.
        self._pending: set[_Spawn] = set()
        #: Whether a spawning thread is running (or about to look at the
        #: queue one last time).
        self._working = False

    async def popen(self, args: Any, kwargs: dict[str, Any]) -> Any:
        """``subprocess.Popen(args, **kwargs)``, run in the spawning thread."""
        spawn = _Spawn(self._loop.create_future(), args, kwargs)
        self._pending.add(spawn)
        self._queue.put(spawn)
        if not self._working:
            self._working = True
            try:
                threading.Thread(target=self._work, name="treadle-spawn").start()
            except RuntimeError:                 # rule 5
                self._work()
        return await spawn.future

    def _work(self) -> None:
        """The spawning thread: spawn until the queue is empty."""
        while True:
            try:
                spawn = self._queue.get_nowait()
            except queue.Empty:
                self._working = False
                # A spawn queued after our look but before the flag fell
                # found us still working: look once more.  (Two threads
                # serving the queue at once would be harmless.)
                if self._queue.empty():
                    return
                self._working = True
                continue
            if not spawn.future.cancelled():     # rule 3: else no child
                try:
                    spawn.popen = _popen(spawn.args, spawn.kwargs)
                except BaseException as exc:
                    spawn.error = exc
            # Read before done is set: close() waits for done, then lets go
            # of the loop.
            loop = self._loop
            spawn.done.set()
            try:
                loop.call_soon_threadsafe(self._deliver, spawn)
            except RuntimeError:
                pass        # closed: close() waited for us and has the child

    def _deliver(self, spawn: _Spawn) -> None:
        """On the loop: hand the outcome to the awaiting coroutine."""
        if spawn not in self._pending:
            return
        self._pending.discard(spawn)
        future, popen, error = spawn.future, spawn.popen, spawn.error
        spawn.popen = spawn.error = None
        if future.cancelled():                   # rule 3
            _discard(popen, self._loop)
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(popen)

    def close(self) -> None:
        """The loop is closing (rule 4)."""
        while True:
            try:
                spawn = self._queue.get_nowait()
            except queue.Empty:
                break
            self._pending.discard(spawn)         # never started
        while self._pending:
            spawn = self._pending.pop()
            spawn.done.wait()                    # in the thread's hands
            popen = spawn.popen
            spawn.popen = spawn.error = None
            _discard(popen, None)
        self._loop = None       # no cycle through the closed loop


def _discard(popen: Any, loop: Any) -> None:
    """Kill a child nobody will use, close our ends of its pipes and have it
    reaped: by *loop*'s child watcher, or the process-wide waiter if None."""
    if popen is None:
        return
    for stream in (popen.stdin, popen.stdout, popen.stderr):
        if stream is not None:
            stream.close()
    try:
        # Not reaped yet (we are its only reaper), so the pid is still ours.
        os.kill(popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if loop is not None and not loop.is_closed():
        loop._child_watcher.watch(popen, _ignore)
    else:
        waiter().add(Child(popen, None), None)
