"""``treadle.Task``, the class users see, and the task factories.

Owns: the object users hold.  ``Task`` is a subclass of ``asyncio.Task``
(asyncio's introspection - ``capture_call_graph()``, ``format_call_graph()``
- its "awaited by" bookkeeping and ``isinstance(task, asyncio.Task)`` accept
nothing else) and forwards everything to its ``TaskCore`` (``task.py``), the
compiled object the kernel steps.  This module is never compiled: a natively
compiled class cannot subclass the C Task.

Rule: the C Task's own fields are never used (its ``__init__`` is never
called, they stay zero), so *every* method and attribute of the Future and
Task APIs is defined here, over the core; ``tests/kernel/test_task.py``
checks that none is left to the C class.  Nor is the task ever given to
``_asyncio._register_task``, which would link it into the C module's
per-thread list of C tasks (read by ``python -m asyncio ps``); it goes into
the registry asyncio keeps for other tasks (see ``_compat``).
"""

from __future__ import annotations

import asyncio
import contextvars
from operator import attrgetter
from typing import Any, Callable, Generator

from . import _format
from .task import (TaskCore, Wakeup, known, leave_out_own_frames, log_destroy_pending,
                   new_task, set_log_destroy_pending)


def _forwarded(name: str, doc: str) -> Any:
    """A read-only attribute read from the core (a C-level getter)."""
    return property(attrgetter(f"_core.{name}"), doc=doc)


class Task(asyncio.Task[Any]):
    """A coroutine wrapped in a future, stepped by the treadle kernel.

    Same constructor and API as ``asyncio.Task``.  Use ``loop.create_task()``
    (or ``asyncio.create_task()``) rather than the constructor.
    """

    # The C Task already gives instances a __dict__ and weak references.
    # _asyncio_future_blocking, asyncio's "this future was yielded by
    # await" flag, is a slot of ours shadowing the C Task's (whose setter
    # refuses a task whose C fields were never initialised): read and
    # written at C speed by asyncio.isfuture() and every runner, with no
    # instance __dict__ made when a task is awaited.  TaskCore sets it to
    # False when it takes the task.
    __slots__ = ("_core", "_asyncio_future_blocking")

    _core: TaskCore
    _asyncio_future_blocking: bool

    def __init__(self, coro: Any, *, loop: Any = None, name: object = None,
                 context: contextvars.Context | None = None,
                 eager_start: Any = False) -> None:
        if loop is None:
            loop = asyncio.get_event_loop()
        TaskCore(self, coro, loop, name, context, eager_start)

    # -- asyncio.Future ------------------------------------------------------

    def done(self) -> bool:
        return self._core.done()

    def cancelled(self) -> bool:
        return self._core.cancelled()

    def result(self) -> Any:
        try:
            return self._core.result()
        except BaseException as exc:
            leave_out_own_frames(exc)
            raise

    def exception(self) -> BaseException | None:
        try:
            return self._core.exception()
        except BaseException as exc:
            leave_out_own_frames(exc)
            raise

    def add_done_callback(self, fn: Callable[[Any], object], *,
                          context: contextvars.Context | None = None) -> None:
        self._core.add_done_callback(self, fn, context)

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        return self._core.remove_done_callback(fn)

    def get_loop(self) -> Any:
        return self._core._loop

    def set_result(self, result: Any) -> None:
        raise RuntimeError("Task does not support set_result operation")

    def set_exception(self, exception: Any) -> None:
        raise RuntimeError("Task does not support set_exception operation")

    def __await__(self) -> Generator[Any, None, Any]:
        return self._core._await()

    __iter__ = __await__

    def _make_cancelled_error(self) -> BaseException:
        return self._core._make_cancelled_error()

    # -- asyncio.Task --------------------------------------------------------

    def cancel(self, msg: Any = None) -> bool:
        return self._core.cancel(msg)

    def cancelling(self) -> int:
        return self._core.cancelling()

    def uncancel(self) -> int:
        return self._core.uncancel()

    def get_coro(self) -> Any:
        return self._core._coro

    def get_context(self) -> contextvars.Context:
        return self._core._context

    def get_name(self) -> str:
        return self._core.get_name()

    def set_name(self, value: object) -> None:
        self._core._name = str(value)

    def get_stack(self, *, limit: Any = None) -> list[Any]:
        return self._core.get_stack(limit)

    def print_stack(self, *, limit: Any = None, file: Any = None) -> None:
        core = self._core
        _format.print_stack(self, core.get_stack(limit), core._exception, file)

    def __repr__(self) -> str:
        return repr(self._core)

    def __del__(self) -> None:
        try:
            core = self._core
        except AttributeError:          # the constructor failed early
            return
        core.finalize(self)

    # -- the private attributes asyncio's tasks have, which libraries read --

    _loop = _forwarded("_loop", "The loop the task runs on.")
    _coro = _forwarded("_coro", "The coroutine (None once an eager task finished).")
    _fut_waiter = _forwarded("_fut_waiter", "The future the task waits on, or None.")
    _must_cancel = _forwarded(
        "_must_cancel", "True when the next step throws CancelledError in.")
    _num_cancels_requested = _forwarded(
        "_num_cancels_requested", "cancel() calls not yet taken back by uncancel().")
    _state = _forwarded("_state", "'PENDING', 'CANCELLED' or 'FINISHED'.")

    @property
    def _result(self) -> Any:
        return self._core._result

    @property
    def _exception(self) -> BaseException | None:
        return self._core._exception

    @property
    def _callbacks(self) -> list[Any] | None:  # type: ignore[override]  # C task: None
        """Done-callbacks as ``(fn, context)`` pairs, as on asyncio (a
        treadle task waiting on this one appears as its wake-up); None when
        there are none, as asyncio's C task answers."""
        return [(Wakeup(e), e._context) if isinstance(e, TaskCore) else e
                for e in self._core.callback_entries()] or None

    _log_destroy_pending = property(
        log_destroy_pending, set_log_destroy_pending,
        doc="False: no 'Task was destroyed but it is pending!' report.")

    @property
    def _source_traceback(self) -> Any:
        return self._core._source_traceback

    @_source_traceback.setter
    def _source_traceback(self, value: Any) -> None:
        self._core._source_traceback = value

    @property
    def _cancel_message(self) -> Any:
        return self._core._cancel_message

    @_cancel_message.setter
    def _cancel_message(self, value: Any) -> None:
        self._core._cancel_message = value

    @property
    def _log_traceback(self) -> bool:
        return self._core._log_tb

    @_log_traceback.setter
    def _log_traceback(self, value: bool) -> None:
        if value:
            raise ValueError("_log_traceback can only be set to False")
        self._core._log_tb = False


# The kernel's compiled code recognises a Task by its class.
known.task_class = Task


def eager_task_factory(loop: Any, coro: Any, *, eager_start: Any = True,
                       **kwargs: Any) -> Task:
    """A task factory whose tasks run their first step inside
    ``create_task()`` (``loop.set_task_factory(treadle.eager_task_factory)``).

    Like ``asyncio.eager_task_factory``, on every supported Python; as on
    3.14, ``create_task(..., eager_start=False)`` overrides it."""
    return task_factory(loop, coro, eager_start=eager_start, **kwargs)


def task_factory(loop: Any, coro: Any, *, name: object = None,
                 context: contextvars.Context | None = None,
                 eager_start: Any = False) -> Task:
    """The default factory, for code that wants to set it explicitly."""
    task: Task = new_task(Task, coro, loop, name, context, eager_start)
    return task


def c_task_factory(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
    """A task factory making asyncio's own C tasks on a treadle loop
    (``treadle.new_event_loop(task_factory=treadle.c_task_factory)``).

    What it is for: ``python -m asyncio ps``/``pstree`` (3.14+) read C task
    structures out of the target process's memory and list only asyncio's C
    tasks.  Those tasks are stepped through a Handle per step, as on
    asyncio's loop, and cannot enter treadle's cancel scopes."""
    return asyncio.Task(coro, loop=loop, **kwargs)


__all__ = ["Task", "c_task_factory", "eager_task_factory", "task_factory"]
