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

#: loop -> the task running on it right now.  asyncio.current_task() reads it.
current_tasks: dict[Any, Any] = _aio_tasks._current_tasks  # type: ignore[attr-defined]

#: Tasks that ran their first step eagerly and are still inside it (3.12+).
eager_tasks: set[Any] | None = getattr(_aio_tasks, "_eager_tasks", None)

# The WeakSet asyncio.all_tasks() reads: _scheduled_tasks on 3.12+,
# _all_tasks on 3.11.
_registry: weakref.WeakSet[Any] = (
    _aio_tasks._scheduled_tasks if PY312  # type: ignore[attr-defined]
    else _aio_tasks._all_tasks)  # type: ignore[attr-defined]


# WeakSet.add() is a Python method that also commits pending removals;
# adding the weak reference to the underlying set directly is the same
# operation (dead references are skipped when the set is iterated and never
# compare equal to live ones) at a fraction of the cost.  The task module
# does that with these two when the WeakSet has the expected layout, and
# falls back to register_task (the public method) otherwise.
_data = getattr(_registry, "data", None)
_remove = getattr(_registry, "_remove", None)
registry_set_add: Callable[[Any], None] | None = (
    _data.add if isinstance(_data, set) and callable(_remove) else None)
registry_remove: Any = _remove

#: Make a pending task visible to asyncio.all_tasks() (the slow, public way).
register_task: Callable[[Any], None] = _registry.add

CancelledError = asyncio.CancelledError
InvalidStateError = asyncio.InvalidStateError
iscoroutine = asyncio.iscoroutine


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
