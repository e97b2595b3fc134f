"""treadle's Task: a complete ``asyncio.Task`` that the kernel steps directly.

Owns: driving one coroutine (send/throw), its result or exception, its
done-callbacks, and asyncio's cancellation protocol (``cancel(msg)``,
``cancelling()``/``uncancel()``, ``_must_cancel``, ``_fut_waiter``).
Never: polls I/O or reads the clock.

Why a task of our own instead of asyncio's C task.  Stepping the C task costs
a Handle and a ``Context.run`` per step, and the kernel cannot see inside it.
This task is a plain object the ready queue holds directly:

* **Rule 1 - no allocation on a switch.**  A coroutine that yields bare
  (``await asyncio.sleep(0)``) puts its task straight back on the ready
  queue: no Handle, no Future, no bound method.
* **Rule 2 - task-to-task waits are direct.**  A task awaiting another
  treadle task is stored in that task's callback list as itself; when the
  awaited task finishes, the waiter goes straight onto the ready queue.
  Everything else (asyncio futures, foreign futures, done-callbacks added by
  user code) goes through ``loop.call_soon`` exactly as asyncio does.
* **Rule 3 - asyncio sees a Task.**  The current-task map and the task
  registry asyncio's functions read are written as the C task writes them
  (see ``_compat``); ``asyncio.isfuture()`` is true; the private attributes
  widely used libraries read (``_must_cancel``, ``_fut_waiter``,
  ``_source_traceback``, ``_log_destroy_pending``, ``_loop``, ``_coro``)
  exist and mean what they mean on asyncio's task.

The state machine is asyncio's (see the invariant on ``_fut_waiter`` below);
only the transport of wake-ups differs.  A task is in exactly one of:

1. waiting: ``_fut_waiter`` is a pending future and one of its callbacks
   will wake us (a ``(_wakeup, context)`` pair, or this task itself);
2. scheduled: on the ready queue (as itself, or as a Handle for ``_wakeup``
   or an error to throw in);
3. running: inside ``_step``, ``_fut_waiter`` is None.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import reprlib
import sys
import weakref
from types import CoroutineType, GenericAlias
from typing import Any, Callable, Final, Generator

from . import _compat, _format
from .handles import Handle

# Module constants are Final so that, compiled, they are C statics rather
# than dictionary lookups on every use.
_PENDING: Final = "PENDING"
_CANCELLED: Final = "CANCELLED"
_FINISHED: Final = "FINISHED"

_CancelledError: Final = _compat.CancelledError
_InvalidStateError: Final = _compat.InvalidStateError
_current_tasks: Final = _compat.current_tasks
_REGISTRY_ADD: Final = _compat.registry_set_add
_REGISTRY_REMOVE: Final = _compat.registry_remove
_WEAKREF: Final = weakref.ref
_eager_tasks: Final = _compat.eager_tasks
_copy_context: Final = contextvars.copy_context
_iscoroutine: Final = _compat.iscoroutine
# Unbound methods called directly: no attribute lookup per task step.
_CoroutineType: Final = CoroutineType
_CORO_SEND: Final = CoroutineType.send
_CTX_RUN: Final = contextvars.Context.run
_task_numbers: Final = itertools.count(1)
_FUTURE_TYPE: Final = asyncio.Future
_FUTURE_RESULT: Final = asyncio.Future.result
_repr_running: Final[set[int]] = set()


@_compat.mypyc_attr(allow_interpreted_subclasses=True)
class TaskCore:
    """Everything a task does.  ``treadle.Task`` (``taskclass.py``) is this
    class plus weak-reference support and an instance ``__dict__``, which a
    natively compiled class cannot give itself; code here never creates
    tasks, so it never needs to name the final class.
    """

    __slots__ = (
        "_loop", "_ready", "_coro", "_context", "_state", "_result",
        "_exception", "_exception_tb", "_cb0", "_ctx0", "_callbacks",
        "_fut_waiter",
        "_must_cancel", "_cancel_message", "_cancelled_exc",
        "_num_cancels_requested", "_name", "_log_tb", "_log_destroy_pending",
        "_source_traceback", "_asyncio_future_blocking", "_scope",
    )

    _loop: Any
    _ready: Any
    _coro: Any
    _context: contextvars.Context
    _state: str
    _result: Any
    _exception: BaseException | None
    _exception_tb: Any
    # Done-callbacks.  Most tasks get exactly one (their awaiter, gather's
    # callback): it is kept inline in _cb0/_ctx0, with no list and no tuple
    # allocated; further ones go to _callbacks, in order after it.  An entry
    # is either a treadle task waiting on us (Rule 2, no context) or a
    # callable with its context.
    _cb0: Any
    _ctx0: Any
    _callbacks: list[Any] | None
    _fut_waiter: Any
    _must_cancel: bool
    _cancel_message: Any
    _cancelled_exc: BaseException | None
    _num_cancels_requested: int
    _name: Any
    _log_tb: bool
    _log_destroy_pending: bool
    _source_traceback: Any
    _asyncio_future_blocking: bool
    #: The innermost treadle cancel scope the task is in (None: none).  The
    #: kernel only ever calls three methods on it (``treadle._scopes``
    #: defines them): at every suspension, when the task is cancelled, and
    #: when it finishes.  A task in no scope pays one attribute test.
    _scope: Any

    def __init__(self, coro: Any, *, loop: Any = None, name: object = None,
                 context: contextvars.Context | None = None,
                 eager_start: Any = False) -> None:
        # Every attribute __del__ and __repr__ read is set before anything
        # can raise.
        self._state = _PENDING
        self._cb0 = None
        self._ctx0 = None
        self._callbacks = None
        self._result = None
        self._exception = None
        self._exception_tb = None
        self._log_tb = False
        self._log_destroy_pending = True
        self._asyncio_future_blocking = False
        self._cancel_message = None
        self._cancelled_exc = None
        self._num_cancels_requested = 0
        self._must_cancel = False
        self._fut_waiter = None
        self._coro = None
        self._name = None
        self._source_traceback = None
        self._scope = None
        if loop is None:
            import asyncio
            loop = asyncio.get_event_loop()
        self._loop = loop
        # The kernel's ready-queue append, for direct wake-ups (None on a
        # loop that is not treadle's: then every wake-up uses call_soon).
        self._ready = getattr(loop, "_kernel_ready_append", None)
        self._context = _copy_context() if context is None else context
        if (loop._debug if self._ready is not None else loop.get_debug()):
            self._source_traceback = _format.caller_stack()
        if type(coro) is not CoroutineType and not _iscoroutine(coro):
            self._log_destroy_pending = False
            raise TypeError(f"a coroutine was expected, got {coro!r}")
        self._coro = coro
        # The number is formatted only if someone asks for the name.
        self._name = next(_task_numbers) if name is None else str(name)
        if self._ready is not None and loop._hooks is not None:
            loop._call_hooks("task_spawned", self)
        if eager_start and loop.is_running():
            TaskCore._eager_start(self)
        else:
            TaskCore._schedule(self)
            _register(self)

    # ------------------------------------------------------------------
    # scheduling
    # ------------------------------------------------------------------

    def _schedule(self) -> None:
        """Put this task on the ready queue (state 2)."""
        ready = self._ready
        if ready is not None:
            ready(self)
        else:
            self._loop.call_soon(self._step, context=self._context)

    # Calls between TaskCore's own methods are written ``TaskCore.m(self)``:
    # compiled, that is a direct native call, while ``self.m()`` on an
    # instance of the (interpreted) Task subclass goes through Python-level
    # dispatch, which mypyc must use so that subclasses can override.

    def _run(self) -> None:
        """Called by the kernel when it pops this task off the ready queue:
        after a bare yield (no waiter), when a treadle task it waited on
        finished, or when a future it waited on called back (the kernel's
        call_soon queues the task itself for a ``Wakeup``)."""
        waiter: Any = None
        try:
            waiter = self._fut_waiter
            if waiter is None:
                _CTX_RUN(self._context, _STEP, self, None)
                return
            if isinstance(waiter, TaskCore):
                if waiter._state is _FINISHED and waiter._exception is None:
                    _CTX_RUN(self._context, _STEP, self, None)
                    return
            # The waiter failed or was cancelled: throw its exception in,
            # as asyncio's wakeup does.
            try:
                if type(waiter) is _FUTURE_TYPE:
                    _FUTURE_RESULT(waiter)
                else:
                    waiter.result()
            except BaseException as exc:
                _CTX_RUN(self._context, _STEP, self, exc)
            else:
                _CTX_RUN(self._context, _STEP, self, None)
        finally:
            # Frames on the stack when a coroutine frame finishes outlive
            # their call (as its f_back chain).  None of them may end up
            # holding the task: that would make a cycle task -> exception ->
            # traceback -> frame -> task, and a failed task would only be
            # freed (and its exception reported) by the cyclic GC.  Nor the
            # failed waiter: the exception thrown in holds this frame, and
            # the waiter holds the exception.
            del self, waiter

    def _wakeup(self, future: Any) -> None:
        """Done-callback on a foreign future (runs inside our context)."""
        try:
            future.result()
        except BaseException as exc:
            TaskCore._step(self, exc)
        else:
            TaskCore._step(self, None)
        finally:
            del self, future

    def _step(self, exc: BaseException | None = None) -> None:
        if self._state is not _PENDING:
            raise _InvalidStateError(f"_step(): already done: {self!r}, {exc!r}")
        if self._must_cancel:
            if not isinstance(exc, _CancelledError):
                exc = TaskCore._make_cancelled_error(self)
            self._must_cancel = False
        self._fut_waiter = None
        loop = self._loop
        current = _current_tasks.setdefault(loop, self)
        if current is not self:
            raise RuntimeError(f"Cannot enter into task {self!r} while another "
                               f"task {current!r} is being executed.")
        try:
            TaskCore._step_body(self, exc)
        finally:
            del _current_tasks[loop]
            del self, current, exc

    def _step_body(self, exc: BaseException | None) -> None:
        coro = self._coro
        try:
            if exc is None:
                if type(coro) is _CoroutineType:
                    result = _CORO_SEND(coro, None)
                else:
                    result = coro.send(None)
            else:
                result = coro.throw(exc)
        except StopIteration as stop:
            if self._must_cancel:
                # Cancelled right before the coroutine returned.
                self._must_cancel = False
                TaskCore._cancel_self(self, self._cancel_message)
            else:
                TaskCore._finish(self, stop.value, None)
        except _CancelledError as cancelled:
            _drop_own_frame(cancelled)
            self._cancelled_exc = cancelled
            TaskCore._cancel_self(self, None)
        except (KeyboardInterrupt, SystemExit) as fatal:
            TaskCore._finish(self, None, fatal)
            raise
        except BaseException as error:
            _drop_own_frame(error)
            TaskCore._finish(self, None, error)
        else:
            if result is None:
                # Bare yield: give up the rest of this turn (Rule 1).
                ready = self._ready
                if ready is not None:
                    ready(self)
                else:
                    self._loop.call_soon(self._step, context=self._context)
            elif isinstance(result, TaskCore):
                TaskCore._wait_task(self, result)
            else:
                TaskCore._wait_other(self, result)
            del result
            scope = self._scope
            if scope is not None:
                # Level-triggered cancellation: a task suspending inside a
                # cancelled scope gets CancelledError at this suspension.
                scope._at_suspension(self)
        finally:
            del self, coro, exc

    def _wait_task(self, other: TaskCore) -> None:
        """The coroutine yielded a treadle task (``await other``): Rule 2."""
        if not other._asyncio_future_blocking:
            TaskCore._throw_later(self, RuntimeError(
                f"yield was used instead of yield from in task {self!r} "
                f"with {other!r}"))
        elif other._loop is not self._loop:
            TaskCore._throw_later(self, RuntimeError(
                f"Task {self!r} got Future {other!r} attached to a different loop"))
        elif other is self:
            TaskCore._throw_later(self, RuntimeError(f"Task cannot await on itself: {self!r}"))
        else:
            other._asyncio_future_blocking = False
            if self._ready is not None and other._state is _PENDING:
                if other._cb0 is None and not other._callbacks:
                    other._cb0 = self
                elif other._callbacks is None:
                    other._callbacks = [self]
                else:
                    other._callbacks.append(self)
            else:
                other.add_done_callback(Wakeup(self), context=self._context)
            self._fut_waiter = other
            if self._must_cancel:
                if other.cancel(msg=self._cancel_message):
                    self._must_cancel = False

    def _wait_other(self, result: Any) -> None:
        """The coroutine yielded something else: asyncio's generic rules."""
        blocking = getattr(result, "_asyncio_future_blocking", None)
        if blocking is not None:
            try:
                get_loop = result.get_loop
            except AttributeError:
                result_loop = getattr(result, "_loop", None)
            else:
                result_loop = get_loop()
            if result_loop is not self._loop:
                TaskCore._throw_later(self, RuntimeError(
                    f"Task {self!r} got Future {result!r} attached to a "
                    f"different loop"))
            elif blocking:
                if result is self:
                    TaskCore._throw_later(self, RuntimeError(
                        f"Task cannot await on itself: {self!r}"))
                else:
                    result._asyncio_future_blocking = False
                    result.add_done_callback(Wakeup(self), context=self._context)
                    self._fut_waiter = result
                    if self._must_cancel:
                        if result.cancel(msg=self._cancel_message):
                            self._must_cancel = False
            else:
                TaskCore._throw_later(self, RuntimeError(
                    f"yield was used instead of yield from in task {self!r} "
                    f"with {result!r}"))
        elif inspect.isgenerator(result):
            TaskCore._throw_later(self, RuntimeError(
                f"yield was used instead of yield from for generator in task "
                f"{self!r} with {result!r}"))
        else:
            TaskCore._throw_later(self, RuntimeError(f"Task got bad yield: {result!r}"))

    def _throw_later(self, exc: BaseException) -> None:
        self._loop.call_soon(self._step, exc, context=self._context)

    def _eager_start(self) -> None:
        """Run the first step inside the constructor (eager task factory)."""
        loop = self._loop
        prev = _current_tasks.get(loop)
        _current_tasks[loop] = self
        eager = _eager_tasks
        try:
            if eager is not None:
                eager.add(self)
            try:
                _CTX_RUN(self._context, _STEP_BODY, self, None)
            finally:
                if eager is not None:
                    eager.discard(self)
        finally:
            if prev is None:
                del _current_tasks[loop]
            else:
                _current_tasks[loop] = prev
            if self._state is _PENDING:
                _register(self)
            else:
                self._coro = None

    # ------------------------------------------------------------------
    # completion
    # ------------------------------------------------------------------

    def _finish(self, result: Any, exc: BaseException | None) -> None:
        self._state = _FINISHED
        if self._scope is not None:
            self._scope._task_done(self)
        if exc is None:
            self._result = result
        else:
            self._exception = exc
            self._exception_tb = exc.__traceback__
            self._log_tb = True
        TaskCore._schedule_callbacks(self)

    def _cancel_self(self, msg: Any) -> bool:
        """Future.cancel() applied to the task itself: it is now cancelled."""
        self._log_tb = False
        if self._state is not _PENDING:
            return False
        self._state = _CANCELLED
        if self._scope is not None:
            self._scope._task_done(self)
        self._cancel_message = msg
        TaskCore._schedule_callbacks(self)
        return True

    def _schedule_callbacks(self) -> None:
        loop = self._loop
        if self._ready is not None and loop._hooks is not None:
            loop._call_hooks("task_exited", self)
        first = self._cb0
        callbacks = self._callbacks
        if first is None and not callbacks:
            return
        context = self._ctx0
        self._cb0 = self._ctx0 = self._callbacks = None
        if first is not None:
            TaskCore._dispatch(self, first, context)
        if callbacks:
            for entry in callbacks:
                if isinstance(entry, TaskCore):
                    TaskCore._dispatch(self, entry, None)
                else:
                    TaskCore._dispatch(self, entry[0], entry[1])

    def _dispatch(self, fn: Any, context: Any) -> None:
        """Schedule one done-callback."""
        if isinstance(fn, TaskCore):
            # A treadle task waiting on us (Rule 2).
            fn._ready(fn)
        elif self._ready is not None:
            # What loop.call_soon(fn, self, context=ctx) does, without the
            # method lookup and argument parsing: a task only finishes while
            # its loop runs, so the loop is open.
            self._ready(Handle(fn, (self,), self._loop, context))
        else:
            self._loop.call_soon(fn, self, context=context)

    # ------------------------------------------------------------------
    # the asyncio.Future API
    # ------------------------------------------------------------------

    def get_loop(self) -> Any:
        return self._loop

    def done(self) -> bool:
        return self._state is not _PENDING

    def cancelled(self) -> bool:
        return self._state is _CANCELLED

    def result(self) -> Any:
        state = self._state
        if state is _FINISHED:
            self._log_tb = False
            exc = self._exception
            if exc is not None:
                raise exc.with_traceback(self._exception_tb)
            return self._result
        if state is _CANCELLED:
            raise TaskCore._make_cancelled_error(self)
        raise _InvalidStateError("Result is not set.")

    def exception(self) -> BaseException | None:
        state = self._state
        if state is _FINISHED:
            self._log_tb = False
            return self._exception
        if state is _CANCELLED:
            raise TaskCore._make_cancelled_error(self)
        raise _InvalidStateError("Exception is not set.")

    def add_done_callback(self, fn: Callable[[Any], object], *,
                          context: contextvars.Context | None = None) -> None:
        if self._state is not _PENDING:
            self._loop.call_soon(fn, self, context=context)
            return
        if context is None:
            context = _copy_context()
        if self._cb0 is None and not self._callbacks:
            self._cb0 = fn
            self._ctx0 = context
        elif self._callbacks is None:
            self._callbacks = [(fn, context)]
        else:
            self._callbacks.append((fn, context))

    def remove_done_callback(self, fn: Callable[[Any], object]) -> int:
        removed = 0
        first = self._cb0
        if first is not None and not isinstance(first, TaskCore) and first == fn:
            self._cb0 = self._ctx0 = None
            removed = 1
        callbacks = self._callbacks
        if callbacks:
            kept = [e for e in callbacks if isinstance(e, TaskCore) or e[0] != fn]
            if len(kept) != len(callbacks):
                removed += len(callbacks) - len(kept)
                callbacks[:] = kept
        return removed

    def _callback_entries(self) -> list[Any]:
        """All done-callbacks in order (for reprs and introspection)."""
        entries: list[Any] = []
        first = self._cb0
        if first is not None:
            entries.append(first if isinstance(first, TaskCore) else (first, self._ctx0))
        if self._callbacks:
            entries.extend(self._callbacks)
        return entries

    def set_result(self, result: Any) -> None:
        raise RuntimeError("Task does not support set_result operation")

    def set_exception(self, exception: Any) -> None:
        raise RuntimeError("Task does not support set_exception operation")

    def _make_cancelled_error(self) -> BaseException:
        """The CancelledError to raise for a cancelled task: the one the
        coroutine raised the first time it is asked for, then fresh ones."""
        exc = self._cancelled_exc
        if exc is not None:
            self._cancelled_exc = None
            return exc
        msg = self._cancel_message
        return _CancelledError() if msg is None else _CancelledError(msg)

    @property
    def _log_traceback(self) -> bool:
        return self._log_tb

    @_log_traceback.setter
    def _log_traceback(self, val: bool) -> None:
        if val:
            raise ValueError("_log_traceback can only be set to False")
        self._log_tb = False

    def __await__(self) -> Generator[Any, None, Any]:
        if self._state is _PENDING:
            self._asyncio_future_blocking = True
            yield self  # The kernel parks the awaiting task on us.
        if self._state is _PENDING:
            raise RuntimeError("await wasn't used with future")
        return self.result()

    def __iter__(self) -> Generator[Any, None, Any]:
        return self.__await__()

    @classmethod
    def __class_getitem__(cls, item: Any) -> GenericAlias:
        """``Task[int]`` in annotations, as with asyncio.Task."""
        return GenericAlias(cls, item)

    # ------------------------------------------------------------------
    # the asyncio.Task API
    # ------------------------------------------------------------------

    def cancel(self, msg: Any = None) -> bool:
        self._log_tb = False
        if self._state is not _PENDING:
            return False
        scope = self._scope
        if scope is not None and scope._defer_cancel(self, msg):
            # Inside a shielded scope: delivered when the shield ends.
            return True
        return TaskCore._request_cancel(self, msg)

    def _request_cancel(self, msg: Any) -> bool:
        """Task.cancel() minus shields: count the request and interrupt the
        wait (cancel scopes deliver their cancellation through this)."""
        self._num_cancels_requested += 1
        waiter = self._fut_waiter
        if waiter is not None:
            if waiter.cancel(msg=msg):
                # Keep _fut_waiter: it may be a task that swallows the
                # cancellation, and then we have to cancel it again.
                return True
        # Our step is already scheduled (state 2) or running (state 3).
        self._must_cancel = True
        self._cancel_message = msg
        return True

    def cancelling(self) -> int:
        return self._num_cancels_requested

    def uncancel(self) -> int:
        if self._num_cancels_requested > 0:
            self._num_cancels_requested -= 1
            if _UNCANCEL_CLEARS_MUST_CANCEL and self._num_cancels_requested == 0:
                self._must_cancel = False
        return self._num_cancels_requested

    def get_coro(self) -> Any:
        return self._coro

    def get_context(self) -> contextvars.Context:
        return self._context

    def get_name(self) -> str:
        name = self._name
        if type(name) is int:
            name = self._name = f"Task-{name}"
        return str(name)

    def set_name(self, value: object) -> None:
        self._name = str(value)

    def get_stack(self, *, limit: Any = None) -> list[Any]:
        return _format.frames_of(self._coro, self._exception, limit)

    def print_stack(self, *, limit: Any = None, file: Any = None) -> None:
        _format.print_stack(self, self.get_stack(limit=limit), self._exception, file)

    def __repr__(self) -> str:
        # A task waiting on a task that waits on it would recurse forever.
        key = id(self)
        if key in _repr_running:
            return "..."
        _repr_running.add(key)
        try:
            return self._repr()
        finally:
            _repr_running.discard(key)

    def _repr(self) -> str:
        state = self._state.lower()
        if state == "pending" and self._num_cancels_requested:
            state = "cancelling"
        info = [state, f"name={self.get_name()!r}"]
        if self._coro is not None:
            info.append(f"coro=<{_format.coroutine_repr(self._coro)}>")
        if self._fut_waiter is not None:
            info.append(f"wait_for={self._fut_waiter!r}")
        if self._state is _FINISHED:
            if self._exception is not None:
                info.append(f"exception={self._exception!r}")
            else:
                info.append(f"result={reprlib.repr(self._result)}")
        entries = self._callback_entries()
        if entries:
            info.append(_format.callbacks_repr(entries))
        if self._source_traceback:
            frame = self._source_traceback[-1]
            info.append(f"created at {frame[0]}:{frame[1]}")
        return f"<Task {' '.join(info)}>"

    def __del__(self) -> None:
        if self._state is _PENDING:
            if self._log_destroy_pending and self._coro is not None:
                context: dict[str, Any] = {
                    "task": self,
                    "message": "Task was destroyed but it is pending!",
                }
                if self._source_traceback:
                    context["source_traceback"] = self._source_traceback
                self._loop.call_exception_handler(context)
        elif self._log_tb:
            context = {
                "message": "Task exception was never retrieved",
                "exception": self._exception,
                "future": self,
            }
            if self._source_traceback:
                context["source_traceback"] = self._source_traceback
            self._loop.call_exception_handler(context)


_UNCANCEL_CLEARS_MUST_CANCEL: Final = _compat.PY313


def _register(task: TaskCore) -> None:
    """Make a pending task visible to asyncio.all_tasks()."""
    if _REGISTRY_ADD is not None:
        _REGISTRY_ADD(_WEAKREF(task, _REGISTRY_REMOVE))
    else:
        _compat.register_task(task)


class Wakeup:
    """The done-callback a task puts on a future it awaits.

    A future calls back through ``loop.call_soon(callback, future,
    context=...)``; the kernel's ``call_soon`` recognises this type and
    queues the task itself instead of allocating a Handle (``loop.py``).  On
    any other loop it is an ordinary callable that steps the task.  It is a
    type of its own, not a bound method, so that recognising it costs one
    pointer comparison in ``call_soon`` for everybody else.
    """

    __slots__ = ("task",)

    task: TaskCore

    def __init__(self, task: TaskCore) -> None:
        self.task = task

    def __call__(self, future: Any) -> None:
        TaskCore._wakeup(self.task, future)

    @property
    def __name__(self) -> str:
        # What asyncio's reprs print for a future's callbacks: the same text
        # as for its own task's wakeup, "cb=[Task.task_wakeup()]".
        return "Task.task_wakeup"

    def __repr__(self) -> str:
        return f"<Task.task_wakeup of {self.task!r}>"

# The frame of _step_body heads the traceback of every exception a
# coroutine raises (compiled, mypyc adds an entry of the same name);
# asyncio's C task has none, so tracebacks, get_stack() and "exception was
# never retrieved" logs start at the coroutine.

_STEP: Final = TaskCore._step
_STEP_BODY: Final = TaskCore._step_body


def _drop_own_frame(exc: BaseException) -> None:
    tb = exc.__traceback__
    if tb is not None:
        code = tb.tb_frame.f_code
        if code.co_name == "_step_body" and code.co_filename.endswith("task.py"):
            exc.__traceback__ = tb.tb_next
