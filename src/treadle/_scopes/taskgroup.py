"""``treadle.TaskGroup``: asyncio's TaskGroup on a cancel scope, with
Trio's ``start_soon()`` and ``start()``.

Owns: a set of child tasks and the scope they run in (``cancel_scope``).
The body of ``async with`` runs in that scope too.

Rules:

1. Children begin with the group's scope as their innermost scope, so
   cancelling the group (``tg.cancel_scope.cancel()``, or the first child
   that fails) cancels every child and the body, level-triggered.
2. The first child that raises something other than CancelledError cancels
   the scope; ``async with`` ends when every child has ended and raises the
   errors as ``BaseExceptionGroup("unhandled errors in a TaskGroup", ...)``,
   as asyncio's TaskGroup does (KeyboardInterrupt and SystemExit are
   re-raised alone).
3. Leaving the body waits for the children.  If the task is cancelled while
   waiting, the children are cancelled and the wait goes on, shielded, so it
   neither spins nor abandons them; the cancellation then propagates unless
   the group's own scope caught it.
4. ``await tg.start(fn, *args)`` runs ``fn(*args, task_status=status)`` in
   the group and returns the value passed to ``status.started(value)``.  An
   error the child raises before ``started()`` is raised by ``start()``, not
   by the group; a child that ends without calling it makes ``start()``
   raise RuntimeError.
"""

from __future__ import annotations

import asyncio
import contextvars
from types import TracebackType
from typing import Any, Awaitable, Callable

from .._kernel import _compat
from .._kernel.taskclass import Task
from .._kernel.task import new_task
from .scope import CancelScope

_CancelledError = asyncio.CancelledError


class TaskStatus:
    """Passed to a task started with ``TaskGroup.start()``."""

    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self._future = future

    def started(self, value: Any = None) -> None:
        """Tell the starter that the task is ready, handing it *value*."""
        if self._future.done():
            raise RuntimeError("called 'started' twice on the same task status")
        self._future.set_result(value)


class TaskGroup:
    """``async with treadle.TaskGroup() as tg:`` — see the module header."""

    def __init__(self) -> None:
        self._scope = CancelScope()
        self._tasks: set[Task] = set()
        self._starting: dict[Task, TaskStatus] = {}
        self._parent_task: Task | None = None
        self._errors: list[BaseException] = []
        self._base_error: BaseException | None = None
        self._loop: Any = None
        self._entered = False
        self._exiting = False
        self._waiter: asyncio.Future[None] | None = None

    def __repr__(self) -> str:
        info = []
        if self._tasks:
            info.append(f"tasks={len(self._tasks)}")
        if self._errors:
            info.append(f"errors={len(self._errors)}")
        if self._scope.cancel_called:
            info.append("cancelling")
        elif self._entered:
            info.append("entered")
        return f"<treadle.TaskGroup{' ' + ' '.join(info) if info else ''}>"

    @property
    def cancel_scope(self) -> CancelScope:
        """The scope the body and every child run in."""
        return self._scope

    async def __aenter__(self) -> TaskGroup:
        if self._entered:
            raise RuntimeError(f"TaskGroup {self!r} has already been entered")
        self._scope.__enter__()         # (checks the loop and the task)
        self._entered = True
        self._loop = self._scope._loop
        self._parent_task = _compat.current_task(self._loop)
        return self

    # -- spawning ----------------------------------------------------------

    def create_task(self, coro: Any, *, name: Any = None,
                    context: contextvars.Context | None = None,
                    eager_start: Any = False) -> Task:
        """Start *coro* as a child task (asyncio's TaskGroup.create_task).
        With ``eager_start=True`` (3.14's keyword, on every version) its
        first step runs here, already inside the group's scope."""
        if not self._entered:
            if asyncio.iscoroutine(coro):
                coro.close()
            raise RuntimeError(f"TaskGroup {self!r} has not been entered")
        if self._exiting and not self._tasks:
            if asyncio.iscoroutine(coro):
                coro.close()
            raise RuntimeError(f"TaskGroup {self!r} is finished")
        # Rule 1: the child is in the scope from its first step on.
        task: Task = new_task(Task, coro, self._loop, name, context,
                              eager_start, self._scope)
        _compat.future_add_to_awaited_by(task, self._parent_task)
        # Always, even if an eager first step already finished it (asyncio's
        # rule too): its error must still cancel the group.
        self._tasks.add(task)
        task.add_done_callback(self._on_task_done)
        return task

    def cancel(self) -> None:
        """Cancel the group: every child and the body (3.15's
        ``TaskGroup.cancel()``).  The ``async with`` block then ends without
        raising CancelledError.  Called before the group is entered, it
        cancels the group as it enters; calling it again, or after the group
        exited, does nothing."""
        self._scope.cancel()

    def start_soon(self, fn: Callable[..., Awaitable[Any]], *args: Any,
                   name: Any = None) -> None:
        """Start ``fn(*args)`` as a child task."""
        self.create_task(fn(*args), name=name)

    async def start(self, fn: Callable[..., Awaitable[Any]], *args: Any,
                    name: Any = None) -> Any:
        """Start ``fn(*args, task_status=...)`` and wait until it calls
        ``task_status.started(value)``; return *value* (rule 4)."""
        if not self._entered:
            raise RuntimeError(f"TaskGroup {self!r} has not been entered")
        status = TaskStatus(self._loop.create_future())
        task = self.create_task(fn(*args, task_status=status), name=name)
        self._starting[task] = status
        try:
            return await status._future
        except _CancelledError:
            if not status._future.done() or status._future.cancelled():
                task.cancel()
            raise
        finally:
            self._starting.pop(task, None)

    def _on_task_done(self, task: Task) -> None:
        self._tasks.discard(task)
        _compat.future_discard_from_awaited_by(task, self._parent_task)
        waiter = self._waiter
        if waiter is not None and not self._tasks and not waiter.done():
            waiter.set_result(None)
        status = self._starting.pop(task, None)
        if status is not None and not status._future.done():
            # Rule 4: errors before started() belong to start().
            if task.cancelled():
                status._future.cancel()
            elif task.exception() is not None:
                status._future.set_exception(task.exception())  # type: ignore[arg-type]
            else:
                status._future.set_exception(RuntimeError(
                    "child exited without calling task_status.started()"))
            return
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        self._errors.append(exc)
        if isinstance(exc, (SystemExit, KeyboardInterrupt)) and self._base_error is None:
            self._base_error = exc
        self._scope.cancel()

    # -- leaving -------------------------------------------------------------

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None,
                        tb: TracebackType | None) -> bool:
        self._exiting = True
        cancelled: BaseException | None = None
        if exc is not None:
            if isinstance(exc, _CancelledError):
                # From outside or from our own scope: either way the
                # children must not outlive the body (asyncio's _abort).
                cancelled = exc
            else:
                if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                    self._base_error = self._base_error or exc
                self._errors.append(exc)
            self._scope.cancel()
        # Rule 3: wait for the children.
        while self._tasks:
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            except _CancelledError as err:
                cancelled = err
                self._scope.cancel()
                break
        if self._tasks:
            with CancelScope(shield=True):
                while self._tasks:
                    self._waiter = self._loop.create_future()
                    await self._waiter
        self._waiter = None
        # Leave the scope with the cancellation, if any: it decides whether
        # the cancellation was its own (swallowed) or came from outside.
        swallowed = self._scope.__exit__(
            type(cancelled) if cancelled is not None else None, cancelled, None)
        if self._base_error is not None:
            raise self._base_error
        if self._errors:
            errors, self._errors = self._errors, []
            raise BaseExceptionGroup("unhandled errors in a TaskGroup", errors)
        if cancelled is not None and not swallowed:
            raise cancelled
        # The body's own exception (if not an error recorded above) was a
        # cancellation the scope caught: suppress it.
        return exc is not None
