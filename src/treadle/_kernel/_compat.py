"""The few places where treadle meets asyncio's module-level state.

Owns: version flags, and the bookkeeping that asyncio keeps outside its
loop class and that its public functions read: the *current task* map
(``asyncio.current_task()``) and the *task registry* (``asyncio.all_tasks()``).
treadle's tasks write to exactly the same structures asyncio's C tasks use,
so asyncio's own functions, and everything built on them (``timeout()``,
``TaskGroup``, anyio, debuggers), see treadle's tasks without knowing them.

Never: patches asyncio.  Everything here is read or written through the
same data asyncio's own ``_enter_task``/``_register_task`` use, only
without a Python-level call per task step.
"""

from __future__ import annotations

import asyncio
import sys
import warnings
import weakref
from asyncio import tasks as _aio_tasks
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from mypy_extensions import mypyc_attr as mypyc_attr
else:
    # The compiler reads this decorator at build time; at run time it is a
    # no-op, and treadle must not depend on mypy_extensions being installed.
    def mypyc_attr(*args: object, **kwargs: object) -> Callable[[Any], Any]:
        return lambda cls: cls

PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)
PY314 = sys.version_info >= (3, 14)
PY315 = sys.version_info >= (3, 15)

# -- the current task -------------------------------------------------------
#
# Up to 3.13 asyncio.current_task() reads a dict {loop: task}, which treadle
# writes directly (two dict operations per step, no call).  From 3.14 the
# running task lives in the C thread state, written only by _enter_task /
# _leave_task / _swap_current_task (which also check that the loop is the
# one registered with _set_running_loop); the dict is no longer read.

#: True where the running task lives in the thread state (3.14+).
THREAD_STATE_TASKS = PY314

#: loop -> the task running on it right now (up to 3.13).
current_tasks: dict[Any, Any] = getattr(_aio_tasks, "_current_tasks", {})


def _swapped_in_place(loop: Any, task: Any) -> Any:
    """Up to 3.13 the kernel swaps the current task in ``current_tasks``
    itself, around eager first steps too (``task.py``): never called."""
    raise RuntimeError("treadle writes asyncio's current-task map directly up to 3.13")


# The C module, typed loosely: its private functions take any object, where
# typeshed knows only asyncio.Task.
_asyncio: Any = None
if PY314:
    import _asyncio as _c_asyncio
    _asyncio = _c_asyncio
    enter_task: Callable[[Any, Any], None] = _asyncio._enter_task
    leave_task: Callable[[Any, Any], None] = _asyncio._leave_task
    swap_current_task: Callable[[Any, Any], Any] = _asyncio._swap_current_task
    current_task: Callable[[Any], Any] = _asyncio.current_task
else:
    enter_task = _aio_tasks._enter_task
    leave_task = _aio_tasks._leave_task
    swap_current_task = _swapped_in_place
    current_task = current_tasks.get

# -- "awaited by" edges (3.14+, asyncio.capture_call_graph()) ---------------


def _no_edge(fut: Any, waiter: Any) -> None:
    pass


future_add_to_awaited_by: Callable[[Any, Any], None] = (
    _asyncio.future_add_to_awaited_by if PY314 else _no_edge)
future_discard_from_awaited_by: Callable[[Any, Any], None] = (
    _asyncio.future_discard_from_awaited_by if PY314 else _no_edge)

# -- the task registry ------------------------------------------------------

#: Tasks that ran their first step eagerly and are still inside it (3.12+).
eager_tasks: set[Any] | None = (
    None if PY314 else getattr(_aio_tasks, "_eager_tasks", None))



def _c_registry() -> weakref.WeakSet[Any] | None:
    """3.14+: the WeakSet in which the C module keeps tasks that are not
    its own (what asyncio.all_tasks() reads for them).  It is not exposed;
    it is found through the weak reference it holds to a probe object, and
    checked.  None if that fails: then every task goes through
    _asyncio._register_task, the public (slower) way."""
    class Probe:
        def done(self) -> bool:
            return True
    probe = Probe()
    _asyncio._register_task(probe)
    try:
        for ref in weakref.getweakrefs(probe):
            remove = getattr(ref, "__callback__", None)
            defaults = getattr(remove, "__defaults__", None) or ()
            for selfref in defaults:
                owner = selfref() if isinstance(selfref, weakref.ref) else None
                if (isinstance(owner, weakref.WeakSet) and probe in owner
                        and getattr(owner, "_remove", None) is remove):
                    return owner
    finally:
        _asyncio._unregister_task(probe)
    return None


# The WeakSet asyncio.all_tasks() reads: the C module's own on 3.14+,
# _scheduled_tasks on 3.12 and 3.13, _all_tasks on 3.11.
_registry: weakref.WeakSet[Any] | None = (
    _c_registry() if PY314
    else _aio_tasks._scheduled_tasks if PY312  # type: ignore[attr-defined]
    else _aio_tasks._all_tasks)  # type: ignore[attr-defined]


# WeakSet.add() is a Python method that also commits pending removals;
# adding the weak reference to the underlying set directly is the same
# operation (dead references are skipped when the set is iterated and never
# compare equal to live ones) at a fraction of the cost.  The task module
# does that with these two when the WeakSet has the expected layout, and
# falls back to register_task (the public method) otherwise.
#
# A task that finishes takes its weak reference back out of the set itself
# (registry_discard), unless the set is being iterated right now (up to
# 3.13 its _iterating guard is then not empty; from 3.14 a WeakSet iterates
# over a copy and has no guard): otherwise the reference would stay until
# the task is freed, and its callback, WeakSet._remove, is a Python call per
# task.  Done tasks are never listed by all_tasks(), so removing one early
# changes nothing anyone can see.
_data: Any = getattr(_registry, "data", None)
_remove: Any = getattr(_registry, "_remove", None)
_iterating: Any = getattr(_registry, "_iterating", set())
_fast = (isinstance(_data, set) and callable(_remove)
         and isinstance(_iterating, set))
registry_set_add: Callable[[Any], None] | None = _data.add if _fast else None
registry_remove: Any = _remove


def _not_kept(ref: Any) -> None:
    """Without the fast path no task keeps its reference: never called."""


registry_discard: Callable[[Any], None] = _data.discard if _fast else _not_kept
#: Not empty while someone iterates the registry (then nothing is removed).
registry_iterating: set[Any] = _iterating if _fast else set()

#: Make a pending task visible to asyncio.all_tasks() (the slow, public way).
register_task: Callable[[Any], None] = (
    _asyncio._register_task if PY314 or _registry is None
    else _registry.add)

CancelledError = asyncio.CancelledError
InvalidStateError = asyncio.InvalidStateError
iscoroutine = asyncio.iscoroutine
#: asyncio's own test for coroutine functions: 3.14 deprecates the public
#: ``asyncio.iscoroutinefunction`` (it warns) and its loop calls this one.
iscoroutinefunction: Callable[[Any], bool] = getattr(
    asyncio.coroutines, "_iscoroutinefunction", asyncio.coroutines.iscoroutinefunction)


def debug_mode_default() -> bool:
    """asyncio's rule: ``-X dev`` or ``PYTHONASYNCIODEBUG`` set (unless -E)."""
    import os
    return bool(sys.flags.dev_mode or (
        not sys.flags.ignore_environment
        and os.environ.get("PYTHONASYNCIODEBUG")))


def asyncio_logger() -> Any:
    """asyncio's logger, looked up when used: tests and applications that
    patch ``asyncio.base_events.logger`` see treadle's messages too."""
    from asyncio import base_events
    return getattr(base_events, "logger")


# The compiled modules log and warn through these two.  Compiled code has no
# Python frames: logging and warnings would attribute a record made there
# (its file, line and function) to the nearest Python frame - the user's
# line that happened to set off a garbage collection, or their main() - so
# that the same message seemed to come from a different place each time.
# From here it names this module, in either build.  (This module is never
# compiled.)

def log(level: int, message: str, *args: Any, exc_info: Any = None) -> None:
    """Log on asyncio's logger (see above)."""
    asyncio_logger().log(level, message, *args, exc_info=exc_info)


def default_exception_handler(message: str, exc_info: Any) -> None:
    """The default exception handler's record (see above), from a function
    of that name, as asyncio's names it: a log format showing
    ``%(funcName)s`` shows the same on both loops."""
    asyncio_logger().error(message, exc_info=exc_info)


def warn(message: str, category: type[Warning], source: Any = None) -> None:
    """``warnings.warn()`` (see above)."""
    warnings.warn(message, category, source=source)


def instance_dict(obj: object) -> dict[str, Any] | None:
    """*obj*'s ``__dict__``, or None when it has none.  Here because compiled
    code does not find the ``__dict__`` of an instance of an interpreted
    subclass of a compiled class (``getattr`` there answers for the compiled
    class, which has none)."""
    found: dict[str, Any] | None = getattr(obj, "__dict__", None)
    return found
