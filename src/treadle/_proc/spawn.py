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

1. One short-lived, non-daemon thread per spawn, started by the loop
   thread.  It inherits the loop thread's signal mask, which the child
   inherits in turn, exactly as if the loop thread had forked; it ends as
   soon as ``Popen`` returns, so no thread lingers (one would also make the
   kernel poll on every busy turn, see ``_kernel/loop.py``); and the
   interpreter waits for it at exit, so a spawn is never cut short half
   way.  ``preexec_fn``, if given, runs in a child forked from that thread
   while the loop thread goes on running (``subprocess`` documents it as
   unsafe in the presence of threads, which is what a loop is now).
2. ``Popen``'s exception (``FileNotFoundError``, ``PermissionError``, the
   ``ValueError``/``TypeError`` of bad arguments, ...) is raised, unchanged,
   from the await, as asyncio raises it from the call.
3. Cancelled while the thread spawns: the await raises ``CancelledError`` at
   once; when ``Popen`` returns, the child is killed, its pipes closed and
   it is reaped in the background by the loop's child watcher.  Nothing was
   handed to a protocol yet, so no callback runs.
4. Loop closed while a thread spawns: ``close()`` waits for the thread (one
   fork and exec), then does as in rule 3 through the process-wide waiter
   (``children.py``).
5. A thread that cannot be started (the interpreter is shutting down, or a
   thread limit): ``Popen`` runs on the loop thread, as on asyncio.
"""

from __future__ import annotations

import asyncio
import os
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
    """One ``Popen`` call in flight and, once it returned, its outcome."""

    __slots__ = ("future", "thread", "popen", "error")

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future
        self.thread: threading.Thread | None = None
        self.popen: Any = None
        self.error: BaseException | None = None


class Spawner:
    """The spawns of one loop (rules in the module docstring)."""

    __slots__ = ("_loop", "_running")

    def __init__(self, loop: Any) -> None:
        self._loop = loop
        self._running: set[_Spawn] = set()

    async def popen(self, args: Any, kwargs: dict[str, Any]) -> Any:
        """``subprocess.Popen(args, **kwargs)``, run in a thread."""
        spawn = _Spawn(self._loop.create_future())
        thread = threading.Thread(target=self._run, args=(spawn, args, kwargs),
                                  name="treadle-spawn")
        spawn.thread = thread
        self._running.add(spawn)
        try:
            thread.start()
        except RuntimeError:                     # rule 5
            self._running.discard(spawn)
            return _popen(args, kwargs)
        return await spawn.future

    def _run(self, spawn: _Spawn, args: Any, kwargs: dict[str, Any]) -> None:
        """The spawning thread."""
        try:
            spawn.popen = _popen(args, kwargs)
        except BaseException as exc:
            spawn.error = exc
        try:
            self._loop.call_soon_threadsafe(self._deliver, spawn)
        except RuntimeError:
            # The loop was closed other than through close() (which waits
            # for us): nobody will take the child.
            _discard(spawn.popen, None)

    def _deliver(self, spawn: _Spawn) -> None:
        """On the loop: hand the outcome to the awaiting coroutine."""
        if spawn not in self._running:
            return
        self._running.discard(spawn)
        future, popen, error = spawn.future, spawn.popen, spawn.error
        spawn.popen = spawn.error = None
        if future.cancelled():                   # rule 3
            _discard(popen, self._loop)
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(popen)

    def close(self) -> None:
        """The loop is closing: wait for the spawns in flight and discard
        their children (rule 4)."""
        while self._running:
            spawn = self._running.pop()
            if spawn.thread is not None:
                spawn.thread.join()
            popen = spawn.popen
            spawn.popen = spawn.error = None
            _discard(popen, None)


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
