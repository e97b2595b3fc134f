"""What every task of a loop is doing, read from any thread.

Owns: turning a live loop into plain data (``LoopInfo``, ``TaskInfo``):
each task's state, coroutine stack, what it waits on and since when, who
awaits it, and who started it.  ``treadle ps``/``pstree``/``top`` and
``treadle.metrics`` print or return these.

Never: calls into the loop, takes a lock the loop takes, or leaves a
reference behind.  It runs in the server's thread while the loop thread may
be stuck in a callback or busy mutating the very objects read here, so:

* it copies before iterating (the task registry, the timer heap, callback
  lists: single C-level copies, atomic under the GIL), and the fields of one
  task are read one by one, each read atomic; a task that changes between
  two reads gives a slightly stale row, never an exception (every task is
  read inside its own ``try``; a failure marks the row, it never aborts the
  snapshot);
* objects are indexed by ``id()``, never stored in containers, while the
  snapshot is being taken (the "nothing else holds it" check counts
  references, and a dict holding the future would be one).

"Who awaits whom" on 3.14+ is asyncio's own record (``_asyncio_awaited_by``,
what ``asyncio.capture_call_graph()`` and ``python -m asyncio pstree``
read); before 3.14 it is inferred the same way from what the interpreter
does record: the future a task waits on (``_fut_waiter``), gather's
children, and the done-callbacks that complete a waiter's future (the
closures of ``asyncio.wait``, ``shield``, ...).  Task groups (asyncio's
and treadle's) link each child to the task that hosts the group.
"""

from __future__ import annotations

import asyncio
import gc
import os
import sys
import threading
import time
import types
from dataclasses import dataclass, field
from typing import Any, Iterable

from .._kernel import _compat
from .._kernel.task import TaskCore, coarse_clock
from .._kernel.taskclass import Task

_ASYNCIO_DIR = os.path.dirname(asyncio.__file__)
_TREADLE_DIR = os.path.dirname(os.path.dirname(__file__))
_KERNEL_DIR = os.path.join(_TREADLE_DIR, "_kernel")
_OBSERVE_DIR = os.path.dirname(__file__)
_CoroutineType = types.CoroutineType
_GeneratorType = types.GeneratorType
_AsyncGeneratorType = types.AsyncGeneratorType
#: 3.13 made ``frame.f_locals`` a view (PEP 667); before, reading it copies
#: the locals into a dict the frame keeps (one more reference to each).
_LOCALS_COPY = sys.version_info < (3, 13)


@dataclass
class FrameEntry:
    """One frame of a stack: function (qualified name), file, line."""

    name: str
    filename: str
    lineno: int

    def short(self) -> str:
        return f"{self.name} {self.filename}:{self.lineno}"


@dataclass
class WaitInfo:
    """What a waiting task waits on."""

    #: task, tasks, task group, future, lock, event, condition, semaphore,
    #: barrier, queue get, queue put, socket read, socket write, socket
    #: accept, socket connect, sleep, thread, process, async generator
    kind: str
    #: Human-readable detail ("Queue maxsize=10 qsize=0", "127.0.0.1:8080").
    detail: str = ""
    #: Tasks it waits for (ids), for task, tasks and task group.
    tasks: list[int] = field(default_factory=list)
    #: Wall-clock time (time.time()) a sleep or deadline ends, if known.
    until: float | None = None
    #: True when nothing but the task itself holds the future: nothing can
    #: complete it, so only a cancellation can wake the task.
    orphaned: bool = False

    def describe(self, now: float | None = None) -> str:
        text = self.kind
        if self.detail:
            text += f" {self.detail}"
        if self.until is not None:
            clock = time.strftime("%H:%M:%S", time.localtime(self.until))
            text += f" until {clock}"
            if now is not None:
                text += f" ({_seconds(self.until - now)} left)"
        if self.orphaned:
            text += " (nothing else holds it: it can never wake)"
        return text


@dataclass
class Awaiter:
    """A task awaiting this one, with its own coroutine stack."""

    task_id: int
    name: str
    stack: list[FrameEntry]


@dataclass
class TaskInfo:
    id: int
    name: str
    #: running, scheduled (ready to run), waiting, or ``unreadable``.
    state: str
    cancelling: int = 0
    #: Innermost frame first, as ``python -m asyncio ps`` prints it.
    stack: list[FrameEntry] = field(default_factory=list)
    coro: str = ""
    waits_on: WaitInfo | None = None
    #: Seconds the task has been waiting (None: not waiting, or unknown).
    waiting_for: float | None = None
    awaited_by: list[Awaiter] = field(default_factory=list)
    #: The task that was running when this one was created.
    parent_id: int | None = None
    parent_name: str | None = None
    #: "TaskGroup of 'main'", when the task belongs to a task group.
    group: str | None = None
    group_host_id: int | None = None
    #: Where the task was created ("file:line in function"), when recorded.
    spawned_at: str | None = None
    #: Per-task timing (``treadle.metrics.TaskStats`` fields), when tracked.
    stats: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class LoopInfo:
    id: int
    thread_id: int | None           # native id of the thread running it
    thread_name: str | None
    running: bool
    closed: bool
    #: What the loop thread is doing: "waiting for I/O", "running <label>",
    #: "between callbacks", "stopped".
    activity: str
    ready: int
    timers: int
    tasks: list[TaskInfo] = field(default_factory=list)


# ----------------------------------------------------------------------
# reading one loop
# ----------------------------------------------------------------------


def loop_tasks(loop: Any) -> list[Any]:
    """The pending tasks of *loop* (any thread).  asyncio.all_tasks(loop)
    is written to be called from other threads; it can still meet a set
    that changes size while it copies it, hence the retries."""
    for _ in range(100):
        try:
            return list(asyncio.all_tasks(loop))
        except RuntimeError:
            continue
    return []


def thread_of(ident: int | None) -> tuple[int | None, str | None]:
    """(native id, name) of the thread with *ident*."""
    if ident is None:
        return None, None
    for thread in threading.enumerate():
        if thread.ident == ident:
            return thread.native_id, thread.name
    return None, None


def snapshot_loop(loop: Any, *, stacks: bool = True) -> LoopInfo:
    """Everything ``treadle ps`` shows about one loop."""
    ident = loop._thread_id
    tid, tname = thread_of(ident)
    running = ident is not None
    item = loop._running_item
    if not running:
        activity = "closed" if loop.is_closed() else "stopped"
    elif loop._waiting:
        activity = "waiting for I/O"
    elif item is None:
        activity = "between callbacks"
    else:
        activity = f"running {item_label(item)}"
        observation = getattr(loop, "_observation", None)
        held = observation.watch.current_hold() if observation is not None else None
        if held is not None:
            activity += f" for {_seconds(held)}"
    del item
    info = LoopInfo(id=id(loop), thread_id=tid, thread_name=tname, running=running,
                    closed=loop.is_closed(), activity=activity,
                    ready=len(loop._ready), timers=len(loop._timers))
    info.tasks = snapshot_tasks(loop, loop_tasks(loop), stacks=stacks)
    return info


def snapshot_tasks(loop: Any, tasks: list[Any], *, stacks: bool = True) -> list[TaskInfo]:
    now_mono = time.monotonic()
    now_wall = time.time()
    running_frame = _running_frame(loop)
    current = _current_task(loop)
    timers = _timer_index(loop)
    callbacks = _callback_index(tasks)
    infos: list[TaskInfo] = []
    by_id: dict[int, TaskInfo] = {}
    for task in tasks:
        try:
            info = _task_info(loop, task, current, running_frame, timers,
                              now_mono, now_wall, stacks)
        except Exception as exc:       # changed under us: keep the row
            info = TaskInfo(id=id(task), name=_safe_name(task), state="unreadable",
                            error=f"{type(exc).__name__}: {exc}")
        infos.append(info)
        by_id[info.id] = info
    running_frame = None
    _link(tasks, by_id, callbacks)
    return infos


def _safe_name(task: Any) -> str:
    try:
        return str(task.get_name())
    except Exception:
        return "?"


def _running_frame(loop: Any) -> Any:
    """The loop thread's innermost frame while it runs a callback: on the
    loop's own thread, the frame that called into this package."""
    ident = loop._thread_id
    if ident is None:
        return None
    if ident == threading.get_ident():
        frame: Any = sys._getframe(1)
        while frame is not None and frame.f_code.co_filename.startswith(_OBSERVE_DIR):
            frame = frame.f_back
        return frame
    return sys._current_frames().get(ident)


def _current_task(loop: Any) -> Any:
    """The task running on *loop* right now (an eager task inside another
    task's step included), or None."""
    try:
        return _compat.current_task(loop)
    except Exception:
        return None


def _core(task: Any) -> TaskCore | None:
    core = getattr(task, "_core", None) if isinstance(task, Task) else None
    return core if isinstance(core, TaskCore) else None


def _task_info(loop: Any, task: Any, current: Any, running_frame: Any,
               timers: dict[int, float], now_mono: float, now_wall: float,
               stacks: bool) -> TaskInfo:
    core = _core(task)
    waiter = task._fut_waiter
    coro = task.get_coro()
    if task is current or (core is not None and loop._running_item is core):
        state = "running"
    elif waiter is None or waiter.done():
        state = "scheduled"
    else:
        state = "waiting"
    info = TaskInfo(id=id(task), name=str(task.get_name()), state=state,
                    cancelling=task.cancelling(), coro=_coro_label(coro))
    frames = coroutine_frames(coro)
    if state == "running" and running_frame is not None and frames:
        frames = _live_frames(running_frame, frames[0]) or frames
    if stacks:
        info.stack = [frame_entry(f) for f in reversed(frames)
                      if not _hidden(f.f_code.co_filename)]
    if state == "waiting":
        info.waits_on = classify_wait(loop, task, waiter, frames, timers, now_mono,
                                      now_wall)
        since = core._waiting_since if core is not None else 0.0
        if since > 0.0:
            info.waiting_for = max(0.0, now_mono - since)
        if info.waits_on.kind == "future" and info.waits_on.until is None:
            waiter = None                 # orphaned() counts references
            info.waits_on.orphaned = orphaned(task)
    if core is not None:
        spawner = core._spawner
        parent = spawner() if spawner is not None else None
        if parent is not None:
            info.parent_id = id(parent)
            info.parent_name = _safe_name(parent)
        del parent
    source = getattr(task, "_source_traceback", None)
    if source:
        last = source[-1]
        info.spawned_at = f"{last[0]}:{last[1]} in {last[2]}"
    del waiter, frames, coro, core
    return info


def _hidden(filename: str) -> bool:
    """treadle's own kernel frames (present in the pure build only) are not
    part of anybody's stack."""
    return filename.startswith(_KERNEL_DIR)


def coroutine_frames(coro: Any) -> list[Any]:
    """The suspended frames of a coroutine and of everything it awaits,
    outermost first (``cr_await`` / ``gi_yieldfrom`` / ``ag_await``)."""
    return coroutine_chain(coro)[0]


def coroutine_chain(coro: Any) -> tuple[list[Any], Any]:
    """``coroutine_frames`` plus the innermost awaited object that has no
    frame (a future's iterator, say), or None.  The chain of a coroutine
    that is running ends at its own frame (see ``_awaited``): the running
    task's stack is read from the thread's frames instead."""
    frames: list[Any] = []
    obj = coro
    for _ in range(1000):
        if obj is None:
            break
        frame = (getattr(obj, "cr_frame", None) or getattr(obj, "gi_frame", None)
                 or getattr(obj, "ag_frame", None))
        if frame is None:
            return frames, (obj if obj is not coro else None)
        frames.append(frame)
        obj = _awaited(obj)
    return frames, None


def _awaited(obj: Any) -> Any:
    """What the coroutine or generator *obj* is suspended on, or None; never
    read while it runs.  On 3.11 and 3.12, ``cr_await`` of a coroutine that
    is executing decodes the instruction after the current one as if the
    frame were suspended, and can hand back a stale stack slot that crashes
    the interpreter (aiortc's suite did, through the blocking detector).  A
    snapshot taken on another thread cannot stop the loop thread from
    resuming a coroutine, so the test and the read below are two attribute
    loads with no call and no backward jump between them: the interpreter
    does not hand the GIL to another thread there."""
    kind = type(obj)
    if kind is _CoroutineType:
        return None if obj.cr_running else obj.cr_await
    if kind is _GeneratorType:
        return None if obj.gi_running else obj.gi_yieldfrom
    if kind is _AsyncGeneratorType:
        return None if obj.ag_running else obj.ag_await
    # Another implementation (Cython's coroutines) keeps what it awaits in
    # a field of its own.
    for name in ("cr_await", "gi_yieldfrom", "ag_await"):
        nxt = getattr(obj, name, None)
        if nxt is not None:
            return nxt
    return None


def _live_frames(top: Any, outermost: Any) -> list[Any]:
    """The running task's real stack: from its coroutine's frame up to the
    frame the loop thread is executing right now."""
    chain: list[Any] = []
    frame = top
    while frame is not None:
        chain.append(frame)
        if frame is outermost:
            chain.reverse()
            return chain
        frame = frame.f_back
    return []


def frame_entry(frame: Any) -> FrameEntry:
    code = frame.f_code
    name = getattr(code, "co_qualname", code.co_name)
    lineno = frame.f_lineno
    return FrameEntry(name, code.co_filename, lineno if lineno is not None else 0)


def _coro_label(coro: Any) -> str:
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    if code is None:
        return type(coro).__name__
    return f"{getattr(code, 'co_qualname', code.co_name)}() at {code.co_filename}:" \
           f"{code.co_firstlineno}"


def item_label(item: Any) -> str:
    """What a ready-queue item is, for humans: the task it steps, or the
    callback it calls."""
    task = item_task(item)
    if task is not None:
        return f"Task {_safe_name(task)!r} ({_coro_label(task.get_coro())})"
    if isinstance(item, TaskCore):
        # A finished task's done-callbacks, run as one item (task.py, Rule 4).
        done = item._task
        name = _safe_name(done) if done is not None else "?"
        return f"done-callbacks of Task {name!r}"
    cb = getattr(item, "_callback", None)
    if cb is None:
        return repr(item)
    from .._kernel._format import callback_source
    try:
        # Its arguments only where asyncio would show them (its loop's
        # debug mode, on 3.14+).
        loop = getattr(item, "_loop", None)
        debug = loop is not None and loop.get_debug()
        return f"callback {callback_source(cb, getattr(item, '_args', None) or (), debug)}"
    except Exception:
        return f"callback {cb!r}"


def item_task(item: Any) -> Any:
    """The Task a ready-queue item steps, or None for a plain callback
    (a finished task's core calls its done-callbacks: task.py, Rule 4)."""
    if isinstance(item, TaskCore):
        return item._task if item._state == "PENDING" else None
    cb = getattr(item, "_callback", None)
    owner = getattr(cb, "__self__", None)
    if isinstance(owner, TaskCore):
        return owner._task
    if owner is not None and hasattr(owner, "get_coro"):
        return owner
    task = getattr(cb, "task", None)           # a Wakeup
    if isinstance(task, TaskCore):
        return task._task
    return None


# ----------------------------------------------------------------------
# what a task waits on
# ----------------------------------------------------------------------

# (file in asyncio, qualified name) of the innermost frame -> kind of wait.
_ASYNCIO_WAITS = {
    ("locks.py", "Lock.acquire"): "lock",
    ("locks.py", "Event.wait"): "event",
    ("locks.py", "Condition.wait"): "condition",
    ("locks.py", "Semaphore.acquire"): "semaphore",
    ("locks.py", "Barrier._block"): "barrier",
    ("locks.py", "Barrier._wait"): "barrier",
    ("queues.py", "Queue.get"): "queue get",
    ("queues.py", "Queue.put"): "queue put",
    ("streams.py", "StreamReader._wait_for_data"): "socket read",
    ("streams.py", "FlowControlMixin._drain_helper"): "socket write",
    ("tasks.py", "sleep"): "sleep",
    ("tasks.py", "_wait"): "tasks",
    ("tasks.py", "_cancel_and_wait"): "tasks",
    ("taskgroups.py", "TaskGroup._aexit"): "task group",
    ("taskgroups.py", "TaskGroup.__aexit__"): "task group",
    ("threads.py", "to_thread"): "thread",
    ("subprocess.py", "Process.wait"): "process",
    ("subprocess.py", "Process.communicate"): "process",
}
_SOCKET_OPS = {
    "sock_recv": "socket read", "sock_recv_into": "socket read",
    "sock_recvfrom": "socket read", "sock_recvfrom_into": "socket read",
    "sock_sendall": "socket write", "sock_sendto": "socket write",
    "sock_sendfile": "socket write", "sock_accept": "socket accept",
    "sock_connect": "socket connect",
}


def classify_wait(loop: Any, task: Any, waiter: Any, frames: list[Any],
                  timers: dict[int, float], now_mono: float,
                  now_wall: float) -> WaitInfo:
    if isinstance(waiter, asyncio.Future) and hasattr(waiter, "get_coro"):
        return WaitInfo("task", _safe_name(waiter), tasks=[id(waiter)])
    children = getattr(waiter, "_children", None)
    if isinstance(children, list):                       # gather()
        return WaitInfo("tasks", f"gather of {len(children)}",
                        tasks=[id(c) for c in children])
    kind = "future"
    detail = ""
    owner: Any = None
    for frame in reversed(frames):
        code = frame.f_code
        filename = code.co_filename
        if filename.startswith(_KERNEL_DIR):
            continue
        name = getattr(code, "co_qualname", code.co_name)
        if os.path.dirname(filename) == _ASYNCIO_DIR:
            found = _ASYNCIO_WAITS.get((os.path.basename(filename), name))
            if found is not None:
                kind = found
                owner = _frame_self(frame)
                break
        if code.co_name in _SOCKET_OPS:
            kind = _SOCKET_OPS[code.co_name]
            detail = _socket_detail(frame)
            break
        if filename.startswith(_TREADLE_DIR) and name == "TaskGroup.__aexit__":
            kind = "task group"
            owner = _frame_self(frame)
            break
        # The innermost frame that is not asyncio's or treadle's decides.
        if not filename.startswith(_ASYNCIO_DIR) and not filename.startswith(_TREADLE_DIR):
            break
    info = WaitInfo(kind, detail)
    if owner is not None:
        info.detail = info.detail or _owner_detail(kind, owner)
        if kind == "task group":
            group_tasks = getattr(owner, "_tasks", None)
            if isinstance(group_tasks, (set, frozenset)):
                info.tasks = [id(t) for t in list(group_tasks)]
    del owner
    deadline = timers.get(id(waiter))
    if deadline is not None:
        info.until = now_wall + (deadline - loop.time())
    if kind == "future":
        info.detail = _waiter_callbacks(waiter)
    return info


def _frame_self(frame: Any) -> Any:
    try:
        return frame.f_locals.get("self")
    except Exception:
        return None


def _owner_detail(kind: str, owner: Any) -> str:
    if kind.startswith("queue"):
        try:
            return (f"{type(owner).__name__} at {id(owner):#x} "
                    f"(size {owner.qsize()}/{owner.maxsize or 'inf'})")
        except Exception:
            return ""
    if kind == "socket read" or kind == "socket write":
        transport = getattr(owner, "_transport", None)
        try:
            peer = transport.get_extra_info("peername") if transport is not None else None
        except Exception:
            peer = None
        return f"peer {_address(peer)}" if peer is not None else ""
    if kind == "task group":
        return f"{type(owner).__name__} at {id(owner):#x}"
    if kind in ("lock", "event", "condition", "semaphore", "barrier"):
        waiters = getattr(owner, "_waiters", None)
        count = len(waiters) if waiters is not None else 0
        extra = []
        locked = getattr(owner, "locked", None)
        if callable(locked):
            try:
                extra.append("held" if locked() else "free")
            except Exception:
                pass
        extra.append(f"{count} waiting")
        return f"{type(owner).__name__} at {id(owner):#x} ({', '.join(extra)})"
    return ""


def _socket_detail(frame: Any) -> str:
    try:
        sock = frame.f_locals.get("sock")
    except Exception:
        return ""
    if sock is None:
        return ""
    try:
        fd = sock.fileno()
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None
        text = f"fd {fd}"
        if peer:
            text += f" peer {_address(peer)}"
        return text
    except Exception:
        return ""


def _address(addr: Any) -> str:
    if isinstance(addr, tuple) and len(addr) >= 2:
        host, port = addr[0], addr[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(addr)


def _waiter_callbacks(waiter: Any) -> str:
    """How a plain future will be completed, from its done-callbacks: what
    is attached to it besides the waiting task."""
    entries = _callbacks_of(waiter)
    names = []
    for fn in entries:
        if type(fn).__name__ == "Wakeup" or getattr(fn, "__name__", "") == "task_wakeup":
            continue
        names.append(getattr(fn, "__qualname__", None) or type(fn).__name__)
    text = f"{type(waiter).__name__} at {id(waiter):#x}"
    if names:
        text += f" (callbacks: {', '.join(names[:3])})"
    return text


def _callbacks_of(fut: Any) -> list[Any]:
    """The done-callbacks of a future or task (functions only), copied."""
    try:
        raw = fut._callbacks
    except Exception:
        return []
    if not raw:
        return []
    try:
        entries = list(raw)
    except RuntimeError:
        return []
    return [e[0] if isinstance(e, tuple) else e for e in entries]


def _timer_index(loop: Any) -> dict[int, float]:
    """id(future) -> deadline (loop time) of the pending timers that will
    complete it (what a sleep is waiting for)."""
    index: dict[int, float] = {}
    try:
        handles = loop._timers.entries()
    except Exception:
        return index
    for handle in handles:
        if handle._cancelled:
            continue
        when = handle._deadline
        args = handle._args
        if args:
            target = args[0]
            if isinstance(target, asyncio.Future):
                index[id(target)] = when
        owner = getattr(handle._callback, "__self__", None)
        if isinstance(owner, asyncio.Future):
            index[id(owner)] = when
    return index


# ----------------------------------------------------------------------
# "nothing else holds it": references counted, not searched
# ----------------------------------------------------------------------


def _count_refs(obj: object) -> int:
    return sys.getrefcount(obj)


def _calibrate() -> int:
    # What counting adds by itself: one local of the counting function
    # (``fut`` in ``orphaned``) and the call.
    probe = object()
    return _count_refs(probe)


_CALL_REFS = _calibrate()


def orphaned(task: Any) -> bool:
    """True when the only references to the future *task* waits on are the
    task's own (its ``_fut_waiter``, the await in its coroutine, its
    frames' locals): then nothing can ever complete the future and only a
    cancellation can wake the task.  The caller must hold no reference to
    the future itself."""
    fut = task._fut_waiter
    if fut is None or fut.done():
        return False
    frames, tail = coroutine_chain(task.get_coro())
    # Plain loops, no generator expression: one would hold ``fut`` in a
    # closure cell, which counts differently from the calibrated local.
    per_local = 2 if _LOCALS_COPY else 1
    value: Any = None
    own = 1                                   # the task's _fut_waiter
    for frame in frames:
        try:
            values = list(frame.f_locals.values())
        except Exception:
            return False
        for value in values:
            if value is fut:
                own += per_local
        value, values = None, []
    if tail is fut:
        own += 1
    elif tail is not None:
        referents = gc.get_referents(tail)
        for value in referents:
            if value is fut:
                own += 1
        value, referents = None, []
    del frames, tail
    return _count_refs(fut) - _CALL_REFS - own <= 0


# ----------------------------------------------------------------------
# links between tasks
# ----------------------------------------------------------------------


def _callback_index(tasks: list[Any]) -> dict[int, list[int]]:
    """id(object a task's done-callback completes or belongs to) -> ids of
    those tasks.  A waiter's future (asyncio.wait, shield, gather before
    3.14) or a task group reaches its tasks this way."""
    index: dict[int, list[int]] = {}
    for task in tasks:
        for fn in _callbacks_of(task):
            for target in _referenced(fn):
                index.setdefault(id(target), []).append(id(task))
    return index


def _referenced(fn: Any) -> Iterable[Any]:
    owner = getattr(fn, "__self__", None)
    if owner is not None:
        yield owner
    for cell in getattr(fn, "__closure__", None) or ():
        try:
            yield cell.cell_contents
        except ValueError:
            continue
    for arg in getattr(fn, "args", None) or ():
        yield arg


def _link(tasks: list[Any], by_id: dict[int, TaskInfo],
          callbacks: dict[int, list[int]]) -> None:
    """Fill in ``awaited_by``, ``group`` for every task."""
    edges: dict[int, set[int]] = {}                 # child -> awaiting tasks

    def add(child: int, awaiter: int) -> None:
        if child != awaiter and child in by_id and awaiter in by_id:
            edges.setdefault(child, set()).add(awaiter)

    for task in tasks:
        tid = id(task)
        info = by_id[tid]
        if _compat.PY314:
            for awaiter in _awaiting_tasks(task):
                add(tid, awaiter)
        if info.waits_on is not None:
            for child in info.waits_on.tasks:
                add(child, tid)
            try:
                waiter = task._fut_waiter
            except Exception:
                waiter = None
            if waiter is not None:
                for child in callbacks.get(id(waiter), ()):
                    add(child, tid)
            del waiter
        for fn in _callbacks_of(task):
            group = getattr(fn, "__self__", None)
            host = getattr(group, "_parent_task", None)
            if host is not None and hasattr(group, "_tasks"):
                info.group = f"{type(group).__name__} of {_safe_name(host)!r}"
                info.group_host_id = id(host)
                add(tid, id(host))
            del group, host
    for child, awaiters in edges.items():
        info = by_id[child]
        for awaiter in sorted(awaiters):
            parent = by_id[awaiter]
            info.awaited_by.append(Awaiter(awaiter, parent.name, parent.stack))


def _awaiting_tasks(fut: Any, depth: int = 0) -> list[int]:
    """3.14+: the tasks awaiting *fut* (through futures such as gather's,
    as ``asyncio.capture_call_graph()`` walks them)."""
    try:
        waiters = fut._asyncio_awaited_by
    except Exception:
        return []
    found: list[int] = []
    for waiter in waiters or ():
        if hasattr(waiter, "get_coro"):
            found.append(id(waiter))
        elif depth < 50:
            found.extend(_awaiting_tasks(waiter, depth + 1))
    return found


def _seconds(value: float) -> str:
    value = max(0.0, value)
    if value < 1.0:
        return f"{value * 1e3:.0f} ms"
    if value < 120.0:
        return f"{value:.1f} s"
    if value < 7200.0:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def coarse_now() -> float:
    """The watchdog's last published time (0.0 when none runs)."""
    return coarse_clock.now
