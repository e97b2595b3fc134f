"""Cancel scopes: level-triggered cancellation, deadlines and shields, native
to treadle's loop.

Owns: the tree of scopes (each scope knows its parent, its child scopes and
the tasks whose innermost scope it is), which scopes are *effectively*
cancelled, and the accounting that keeps asyncio's ``cancelling()`` /
``uncancel()`` counts true.
Never: re-delivers cancellation on every loop turn (anyio's emulation on
asyncio does), or touches a task that is not inside the scope.

How it works, in rules:

1. **A task's scope stack** is a linked list: ``task._scope`` is its
   innermost scope, each scope's ``_parent`` the next one out.  A task
   started by a ``treadle.TaskGroup`` begins with the group's scope as its
   innermost, so cancelling the group reaches it.  Tasks made with
   ``asyncio.create_task`` start in no scope, as in anyio.
2. **Effective cancellation.**  A scope is effectively cancelled
   (``_cancelled``) when it was cancelled itself (``cancel()`` or its
   deadline), or when its parent is and it is not shielded.  ``cancel()``
   marks the scope and its unshielded descendants once, and interrupts the
   tasks among them that are blocked: work proportional to what it affects,
   once.
3. **Level-triggered delivery.**  The kernel calls ``_at_suspension`` each
   time a task in a scope suspends; in an effectively cancelled scope that
   suspension is interrupted with CancelledError, every time, until the task
   leaves the scope.  A task that is running or ready when its scope is
   cancelled gets it at its next suspension.
4. **Delivery is Task.cancel().**  Interrupting a wait cancels what the task
   waits on and counts a cancel request on the task, exactly as
   ``Task.cancel()`` does, so every asyncio primitive cleans up as it does
   for ``asyncio.timeout()``.  The scope that caused a delivery (the nearest
   scope that was itself cancelled) records it, and takes every one of its
   requests back with ``uncancel()`` when the task leaves it: afterwards
   ``cancelling()`` is what it was before, whatever mix of asyncio timeouts,
   TaskGroups and scopes is nested around it.
5. **Catching.**  A scope that was itself cancelled swallows the
   CancelledError leaving it (``cancelled_caught``) unless somebody else
   asked for the task's cancellation in the meantime (its count is above
   what it was at entry: then the error propagates, asyncio.timeout's rule).
6. **Shields.**  A shielded scope is immune to cancellation of the scopes
   around it (its own deadline still applies), and asyncio's own
   ``Task.cancel()`` of a task inside a shield it entered is held back and
   delivered when the shield ends.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import sys
from types import TracebackType
from typing import Any, cast

from .._kernel import _compat
from .._kernel.loop import KernelLoop
from .._kernel.task import TaskCore

_CancelledError = asyncio.CancelledError
_INF = math.inf


def _host() -> tuple[KernelLoop, TaskCore]:
    """The running treadle loop and the treadle task running on it."""
    loop = asyncio.get_running_loop()
    if not isinstance(loop, KernelLoop):
        raise RuntimeError(
            f"treadle cancel scopes need treadle's event loop; the running loop "
            f"is {type(loop).__module__}.{type(loop).__qualname__} (run with "
            f"treadle.run() or loop_factory=treadle.new_event_loop)")
    task = _compat.current_task(loop)
    core = getattr(task, "_core", None)
    if not isinstance(core, TaskCore):
        raise RuntimeError(
            f"treadle cancel scopes must be used inside a treadle task, not "
            f"{task!r} (the loop's task factory makes {type(task).__name__})"
            if task is not None else
            "treadle cancel scopes must be used inside a task")
    return loop, core


def _only_cancellations(exc: BaseException | None) -> bool:
    if isinstance(exc, _CancelledError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancellations(e) for e in exc.exceptions)
    return False


class CancelScope:
    """A region of code that can be cancelled as a whole.

    ``with treadle.CancelScope(deadline=loop.time() + 5) as scope: ...``

    Cancellation is level-triggered: once the scope is cancelled (by
    ``cancel()``, by its deadline, or by an enclosing scope unless
    ``shield`` is set), every await inside it that would suspend raises
    ``asyncio.CancelledError``, in every task inside it, until control leaves
    the scope; the scope then swallows the error (``cancelled_caught``).
    """

    __slots__ = (
        "_deadline", "_shield", "_cancel_called", "_cancelled_caught",
        "_cancelled", "_reason", "_parent", "_children", "_tasks", "_task",
        "_loop", "_timer", "_state", "_deliveries", "_cancelling_at_enter",
        "_deferred", "_agen", "_pep789_reported",
    )

    def __init__(self, *, deadline: float = _INF, shield: bool = False) -> None:
        self._deadline = float(deadline)
        if self._deadline != self._deadline:
            raise ValueError("deadline must not be NaN")
        self._shield = bool(shield)
        self._cancel_called = False
        self._cancelled_caught = False
        self._cancelled = False           # effectively cancelled (rule 2)
        self._reason: Any = None
        self._parent: CancelScope | None = None
        # Allocated on first use: most scopes never have child scopes in
        # other tasks, other tasks, deliveries or deferred cancels.
        self._children: set[CancelScope] | None = None
        self._tasks: set[TaskCore] | None = None   # innermost for these tasks
        self._task: TaskCore | None = None
        self._loop: KernelLoop | None = None
        self._timer: Any = None
        self._state = "new"               # new -> entered -> exited
        self._deliveries: dict[TaskCore, int] | None = None
        self._cancelling_at_enter = 0
        self._deferred: list[tuple[TaskCore, Any]] | None = None
        self._agen: Any = None
        self._pep789_reported = False

    def __repr__(self) -> str:
        state = "cancelled" if self._cancel_called else self._state
        deadline = "" if self._deadline == _INF else f" deadline={self._deadline:.3f}"
        shield = " shielded" if self._shield else ""
        return f"<treadle.CancelScope {state}{deadline}{shield} at {id(self):#x}>"

    # -- public attributes ------------------------------------------------

    @property
    def cancel_called(self) -> bool:
        """True once ``cancel()`` was called or the deadline passed."""
        return self._cancel_called

    @property
    def cancelled_caught(self) -> bool:
        """True if this scope swallowed the cancellation leaving it."""
        return self._cancelled_caught

    @property
    def deadline(self) -> float:
        """The time on the loop's clock (``loop.time()``) at which the scope
        cancels itself; ``math.inf`` for never.  May be moved at any time."""
        return self._deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        value = float(value)
        if value != value:
            raise ValueError("deadline must not be NaN")
        self._deadline = value
        if self._state == "entered" and not self._cancel_called:
            self._arm_deadline()

    @property
    def shield(self) -> bool:
        """While True, cancellation of enclosing scopes (and asyncio's
        Task.cancel() of the task that entered it) does not reach inside."""
        return self._shield

    @shield.setter
    def shield(self, value: bool) -> None:
        value = bool(value)
        if value == self._shield:
            return
        self._shield = value
        if self._state == "entered":
            parent = self._parent
            self._refresh(self._cancel_called or (
                not value and parent is not None and parent._cancelled))
            if not value:
                self._release_deferred()

    def cancel(self, reason: Any = None) -> None:
        """Cancel everything inside the scope (idempotent).  *reason*
        becomes the message of the CancelledError the tasks see."""
        if self._cancel_called:
            return
        self._cancel_called = True
        self._reason = reason
        self._disarm()
        if self._state == "entered":
            self._propagate(self)

    # -- context manager ----------------------------------------------------

    def __enter__(self) -> CancelScope:
        if self._state != "new":
            raise RuntimeError("Each CancelScope may only be used for a single "
                               "'with' block")
        loop, task = _host()
        self._loop = loop
        self._task = task
        parent = scope_of(task)
        self._parent = parent
        if parent is not None:
            if parent._tasks is not None:
                parent._tasks.discard(task)
            if parent._children is None:
                parent._children = {self}
            else:
                parent._children.add(self)
        self._add_task(task)
        task._scope = self
        self._state = "entered"
        self._cancelling_at_enter = task.cancelling()
        if loop._debug:
            self._note_async_generator(loop)
        if self._cancel_called or (not self._shield and parent is not None
                                   and parent._cancelled):
            self._cancelled = True
        elif self._deadline != _INF:
            self._arm_deadline()
        return self

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> bool:
        if self._state != "entered":
            raise RuntimeError("this cancel scope is not active")
        task = self._task
        assert task is not None
        if task._scope is not self:
            self._unlink(task)
            raise RuntimeError(
                f"cancel scope stack corrupted: {self!r} was exited while a "
                f"scope entered after it is still active in {task!r}.  This "
                f"usually means an async generator yielded inside a cancel "
                f"scope (see PEP 789); run in debug mode to find where")
        self._unlink(task)
        # Rule 4: take back every cancel request this scope delivered.
        if self._deliveries:
            for _ in range(self._deliveries.pop(task, 0)):
                task.uncancel()
        nobody_else = task.cancelling() <= self._cancelling_at_enter
        suppress = False
        if (exc is not None and self._cancel_called and nobody_else
                and _only_cancellations(exc)):
            suppress = True
            self._cancelled_caught = True
        if nobody_else and (suppress or exc is None):
            # A delivery that never turned into an exception must not leak
            # out of the scope.
            task._must_cancel = False
        self._release_deferred()
        return suppress

    def _unlink(self, task: TaskCore) -> None:
        self._state = "exited"
        self._disarm()
        if self._tasks is not None:
            self._tasks.discard(task)
        parent = self._parent
        if task._scope is self:
            task._scope = parent
            if parent is not None:
                parent._add_task(task)
        if parent is not None and parent._children is not None:
            parent._children.discard(self)

    def _add_task(self, task: TaskCore) -> None:
        if self._tasks is None:
            self._tasks = {task}
        else:
            self._tasks.add(task)

    # -- the kernel's three calls (see TaskCore._scope) -----------------------

    def _at_suspension(self, task: TaskCore) -> None:
        """The task is suspending with this scope innermost (rule 3)."""
        if self._cancelled:
            source = self._source()
            if source is not None:
                source._deliver(task)
        if self._agen is not None:
            self._check_pep789(task)

    def _defer_cancel(self, task: TaskCore, msg: Any) -> bool:
        """Task.cancel() was called: hold it back if the task sits inside a
        shield it entered itself (rule 6)."""
        scope: CancelScope | None = self
        while scope is not None and scope._task is task:
            if scope._shield and scope._state == "entered":
                if scope._deferred is None:
                    scope._deferred = []
                scope._deferred.append((task, msg))
                return True
            scope = scope._parent
        return False

    def _task_done(self, task: TaskCore) -> None:
        if self._tasks is not None:
            self._tasks.discard(task)

    # -- internals ------------------------------------------------------------

    def _source(self) -> CancelScope | None:
        """The nearest enclosing scope (self included) that was cancelled
        itself: the one a delivery is charged to."""
        scope: CancelScope | None = self
        while scope is not None:
            if scope._cancel_called:
                return scope
            if scope._shield:
                return None
            scope = scope._parent
        return None

    def _deliver(self, task: TaskCore) -> None:
        if self._deliveries is None:
            self._deliveries = {}
        self._deliveries[task] = self._deliveries.get(task, 0) + 1
        TaskCore._request_cancel(task, self._reason)

    def _propagate(self, source: CancelScope) -> None:
        """Mark this scope and its unshielded descendants effectively
        cancelled; interrupt the tasks among them that are blocked."""
        stack = [self]
        while stack:
            scope = stack.pop()
            if scope._cancelled and scope is not self:
                continue
            scope._cancelled = True
            if scope._tasks:
                for task in list(scope._tasks):
                    if task._fut_waiter is not None and not task.done():
                        source._deliver(task)
            if scope._children:
                stack.extend(c for c in scope._children if not c._shield)

    def _refresh(self, effective: bool) -> None:
        """Recompute effective cancellation below a shield that changed."""
        if effective and not self._cancelled:
            source = self._source()     # (self, once cancel() was called)
            if source is not None:
                self._propagate(source)
            return
        if not effective:
            stack = [self]
            while stack:
                scope = stack.pop()
                if scope._cancel_called:
                    continue
                scope._cancelled = False
                if scope._children:
                    stack.extend(c for c in scope._children if not c._shield)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_deadline(self) -> None:
        loop = self._loop
        assert loop is not None
        self._disarm()
        if self._deadline == _INF:
            return
        if self._deadline <= loop.time():
            self.cancel()
        else:
            self._timer = loop.call_at(self._deadline, self._deadline_reached)

    def _deadline_reached(self) -> None:
        self._timer = None
        self.cancel()

    def _release_deferred(self) -> None:
        deferred, self._deferred = self._deferred, None
        if deferred:
            for task, msg in deferred:
                task.cancel(msg)

    # -- PEP 789: a yield inside a scope in an async generator ----------------

    def _note_async_generator(self, loop: KernelLoop) -> None:
        frame = sys._getframe(2)
        if not frame.f_code.co_flags & inspect.CO_ASYNC_GENERATOR:
            return
        for agen in list(loop._asyncgens):
            if getattr(agen, "ag_frame", None) is frame:
                self._agen = agen
                return

    def _check_pep789(self, task: TaskCore) -> None:
        agen = self._agen
        if agen.ag_running or self._pep789_reported:
            return
        # The task is suspending while the generator that opened this scope
        # is parked at a yield: the scope now governs its caller's code.
        self._pep789_reported = True
        assert self._loop is not None
        self._loop.call_exception_handler({
            "message": (
                f"async generator {agen.__qualname__} yielded inside a treadle "
                f"cancel scope ({self!r}); the scope now applies to the code "
                f"that iterates it, not to the generator (PEP 789).  Don't "
                f"yield inside a cancel scope or task group in an async "
                f"generator; use a context manager or a task instead"),
            "asyncgen": agen,
        })


def scope_of(task: TaskCore) -> CancelScope | None:
    """The innermost scope *task* is in.  The kernel knows it only as the
    ``ScopeHooks`` it calls (``_kernel/contract.py``); every scope it holds
    is one of these."""
    return cast("CancelScope | None", task._scope)


def current_effective_deadline() -> float:
    """The earliest deadline that applies to the current task: ``-inf`` if
    it is inside an effectively cancelled scope, ``inf`` if there is none."""
    _, task = _host()
    deadline = _INF
    scope = scope_of(task)
    while scope is not None:
        if scope._cancelled:
            return -_INF
        deadline = min(deadline, scope._deadline)
        if scope._shield:
            break
        scope = scope._parent
    return deadline


def _now() -> float:
    loop, _ = _host()
    return loop.time()


def move_on_at(deadline: float, *, shield: bool = False) -> CancelScope:
    """A scope cancelled at *deadline* (on the loop's clock); leaving it by
    timeout is silent (check ``cancelled_caught``)."""
    return CancelScope(deadline=deadline, shield=shield)


def move_on_after(seconds: float, *, shield: bool = False) -> CancelScope:
    """A scope cancelled *seconds* from now; leaving it by timeout is
    silent (check ``cancelled_caught``)."""
    if seconds != seconds:
        raise ValueError("seconds must not be NaN")
    return CancelScope(deadline=_now() + seconds, shield=shield)


class _FailScope(CancelScope):
    __slots__ = ()

    def __exit__(self, exc_type: type[BaseException] | None,
                 exc: BaseException | None, tb: TracebackType | None) -> bool:
        suppressed = super().__exit__(exc_type, exc, tb)
        if suppressed and self._loop is not None and self._loop.time() >= self._deadline:
            raise TimeoutError from exc
        return suppressed


def fail_at(deadline: float, *, shield: bool = False) -> CancelScope:
    """Like ``move_on_at``, but leaving the scope by timeout raises
    ``TimeoutError`` (as ``asyncio.timeout_at`` does)."""
    return _FailScope(deadline=deadline, shield=shield)


def fail_after(seconds: float, *, shield: bool = False) -> CancelScope:
    """Like ``move_on_after``, but leaving the scope by timeout raises
    ``TimeoutError`` (as ``asyncio.timeout`` does)."""
    if seconds != seconds:
        raise ValueError("seconds must not be NaN")
    return _FailScope(deadline=_now() + seconds, shield=shield)
