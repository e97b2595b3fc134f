"""treadle's Task: a complete ``asyncio.Task`` that the kernel steps directly.

Owns: driving one coroutine (send/throw), its result or exception, its
done-callbacks, and asyncio's cancellation protocol (``cancel(msg)``,
``cancelling()``/``uncancel()``, ``_must_cancel``, ``_fut_waiter``).
Never: polls I/O or reads the clock.

Why a task of our own instead of asyncio's C task.  Stepping the C task costs
a Handle and a ``Context.run`` per step, and the kernel cannot see inside it.
This task is a plain object the ready queue holds directly.

Two objects make one task.  ``treadle.Task`` (``taskclass.py``), the object
users hold, is a subclass of ``asyncio.Task``: asyncio's own functions
(``capture_call_graph()``, ``future_add_to_awaited_by()``,
``format_call_graph()``, ...) accept only real Future and Task instances.
A natively compiled class cannot subclass the C Task (its instance layout is
the C module's), so everything a task *does*
lives here, in ``TaskCore``, a compiled object that the ready queue, the
wait lists and cancel scopes hold; ``Task``'s methods forward to it.  The
core points back to its ``Task`` while the task is pending (the cycle keeps
an abandoned pending task collectable as one unit, so it is reported as
destroyed while pending, as asyncio does) and lets go of it after the step
that finished it, so a finished task is freed by reference counting alone.
(A task that finishes in a step the kernel does not run itself, on another
loop or through a throw scheduled with ``call_soon``, keeps the cycle and is
freed by the cyclic GC.)

* **Rule 1 - no allocation on a switch.**  A coroutine that yields bare
  (``await asyncio.sleep(0)``) puts its task straight back on the ready
  queue: no Handle, no Future, no bound method.
* **Rule 2 - task-to-task waits are direct.**  A task awaiting another
  treadle task is stored in that task's callback list as its core; when the
  awaited task finishes, the waiter goes straight onto the ready queue.
  Everything else (asyncio futures, foreign futures, done-callbacks added by
  user code) goes through ``loop.call_soon`` exactly as asyncio does.
* **Rule 3 - asyncio sees a Task.**  The current task and the task
  registry asyncio's functions read are written as the C task writes them
  (see ``_compat``), always with the ``Task`` (never the core); the task is
  an ``asyncio.Task``; on 3.14+ its waits are recorded as asyncio's
  "awaited by" edges, as the C task records them; the private attributes
  widely used libraries read (``_must_cancel``, ``_fut_waiter``,
  ``_source_traceback``, ``_log_destroy_pending``, ``_loop``, ``_coro``)
  exist and mean what they mean on asyncio's task.
* **Rule 4 - a finished task's done-callbacks are one ready item.**  asyncio
  schedules each done-callback as a Handle of its own, all in a row; the
  kernel queues the finished core once, in the place of the first, and it
  calls them in order when its turn comes (``_run_callbacks``): no Handle,
  no argument tuple.  The order is asyncio's, since nothing can come
  between handles queued in a row.  Not when a seam or debug mode is
  active (``kernel._slow``: instruments and slow-callback warnings see one
  Handle per callback) nor when a treadle task waits among them (it is
  queued itself, Rule 2).  Why it matters beyond the calls saved: each
  Handle outlived the turn that made it, and a turn that finishes many
  tasks (``gather``, a TaskGroup) piled up enough of them to set off the
  cyclic GC's young and middle collections, and its full ones.

For observers (``treadle.observe``, reading from its own threads) a task
keeps two more facts, each at the cost of one store: ``_spawner``, a weak
reference to the task whose step created it (the loop's ``_running_item``;
a weak one, so a chain of tasks that each start the next keeps no finished
task alive; made once per spawner, ``_self_ref``), and
``_waiting_since``, when it last began waiting on a future or task, read
from ``coarse_clock``: a time the watchdog thread publishes every few
milliseconds, so that the task reads no clock.  Observers read ``_task``
from other threads, so it is dropped store-first (``loop.py``'s header
says why and how).

The state machine is asyncio's (see the invariant on ``_fut_waiter`` below);
only the transport of wake-ups differs.  A task is in exactly one of:

1. waiting: ``_fut_waiter`` is a pending future (a ``Task`` for a treadle
   task) and one of its callbacks will wake us (a ``Wakeup``, or this core
   itself);
2. scheduled: on the ready queue (as itself, or as a Handle for ``_wakeup``
   or an error to throw in);
3. running: inside ``_step``, ``_fut_waiter`` is None.

Once done, it may be on the ready queue once more, for its done-callbacks
(Rule 4): ``_run`` tells the two apart by ``_state``.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import itertools
import os
import reprlib
import weakref
from types import CoroutineType
from typing import TYPE_CHECKING, Any, Callable, Final, Generator, final

from . import _compat, _format
from .contract import ScopeHooks
from .handles import Handle

if TYPE_CHECKING:
    # For the type only (loop.py imports this module).  Compiled, a value
    # of this type has its attributes read from the object's C struct, not
    # looked up by name through the MRO of the loop's (interpreted) class.
    from .loop import KernelLoop

# Module constants are Final so that, compiled, they are C statics rather
# than dictionary lookups on every use.
_PENDING: Final = "PENDING"
_CANCELLED: Final = "CANCELLED"
_FINISHED: Final = "FINISHED"

_CancelledError: Final = _compat.CancelledError
_InvalidStateError: Final = _compat.InvalidStateError
_current_tasks: Final = _compat.current_tasks
_THREAD_STATE_TASKS: Final = _compat.THREAD_STATE_TASKS
_ENTER_TASK: Final = _compat.enter_task
_LEAVE_TASK: Final = _compat.leave_task
_SWAP_CURRENT_TASK: Final = _compat.swap_current_task
_REGISTRY_ADD: Final = _compat.registry_set_add
_REGISTRY_REMOVE: Final = _compat.registry_remove
_REGISTRY_DISCARD: Final = _compat.registry_discard
_REGISTRY_ITERATING: Final = _compat.registry_iterating
_WEAKREF: Final = weakref.ref
_eager_tasks: Final = _compat.eager_tasks
_copy_context: Final = contextvars.copy_context
_Context: Final = contextvars.Context
_iscoroutine: Final = _compat.iscoroutine
# Unbound methods called directly: no attribute lookup per task step.
_CoroutineType: Final = CoroutineType
_CORO_SEND: Final = CoroutineType.send
_CTX_RUN: Final = contextvars.Context.run
_task_numbers: Final = itertools.count(1)
_FUTURE_TYPE: Final = asyncio.Future
_FUTURE_RESULT: Final = asyncio.Future.result
_TASK_NEW: Final = asyncio.Task.__new__
_repr_running: Final[set[int]] = set()
# 3.14+: asyncio's "awaited by" edges (asyncio.capture_call_graph()).
_AWAITED_BY: Final = _compat.PY314
_ADD_AWAITED_BY: Final = _compat.future_add_to_awaited_by
_DISCARD_AWAITED_BY: Final = _compat.future_discard_from_awaited_by


class CoarseClock:
    """``time.monotonic()`` as last published by ``treadle.observe``'s
    watchdog thread (0.0 while no watchdog runs)."""

    __slots__ = ("now",)

    now: float

    def __init__(self) -> None:
        self.now = 0.0


coarse_clock: Final = CoarseClock()


class _Known:
    """The one class compiled code here cannot import: ``treadle.Task``
    (interpreted, ``taskclass.py``), filled in when that module loads."""

    __slots__ = ("task_class",)

    task_class: Any

    def __init__(self) -> None:
        self.task_class = None


known: Final = _Known()


@final
class TaskCore:
    """Everything a task does, for one ``treadle.Task`` (``_task``).

    Never subclassed (``@final``): the kernel tells its ready items apart
    with ``type(item) is TaskCore`` (``loop.py``), which a subclass would
    fail."""

    __slots__ = (
        "_task", "_loop", "_kernel", "_ready", "_coro", "_context", "_state", "_result",
        "_exception", "_exception_tb", "_cb0", "_ctx0", "_callbacks",
        "_fut_waiter",
        "_must_cancel", "_cancel_message", "_cancelled_exc",
        "_num_cancels_requested", "_name", "_log_tb", "_log_destroy_pending",
        "_source_traceback", "_scope", "_wakeup_cb", "_spawner",
        "_waiting_since", "_self_ref", "_registered",
    )

    #: The Task users hold; None once the task is done (see the header).
    _task: Any
    _loop: Any
    #: ``_loop`` when it is treadle's (a KernelLoop), else None.
    _kernel: KernelLoop | None
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
    # callable with its context.  Callbacks are called with the Task.
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
    #: The innermost treadle cancel scope the task is in (None: none).  The
    #: kernel only ever calls the methods of ``contract.ScopeHooks`` on it
    #: (``treadle._scopes`` defines them): when a task is born in it, at
    #: every suspension, when the task is cancelled, and when it finishes.
    #: A task in no scope pays one attribute test.
    _scope: ScopeHooks | None
    #: This task's Wakeup (see _wakeup_callback), None until its first wait.
    _wakeup_cb: Wakeup | None
    #: A weak reference to the task that created this one, or None.
    _spawner: Any
    #: ``coarse_clock.now`` when the task last began to wait.
    _waiting_since: float
    #: A weak reference to this task's Task, made for its first child.
    _self_ref: Any
    #: The weak reference to the Task in asyncio's task registry, while
    #: this task put it there and is pending (see ``_register``).
    _registered: Any

    def __init__(self, task: Any, coro: Any, loop: Any, name: object,
                 context: contextvars.Context | None, eager_start: Any,
                 scope: ScopeHooks | None = None) -> None:
        # Every attribute the Task's __del__ and __repr__ read is set before
        # anything can raise.
        self._task = task
        task._core = self
        task._asyncio_future_blocking = False
        self._state = _PENDING
        self._cb0 = None
        self._ctx0 = None
        self._callbacks = None
        self._result = None
        self._exception = None
        self._exception_tb = None
        self._log_tb = False
        self._log_destroy_pending = True
        self._cancel_message = None
        self._cancelled_exc = None
        self._num_cancels_requested = 0
        self._must_cancel = False
        self._fut_waiter = None
        self._coro = None
        self._name = None
        self._source_traceback = None
        self._scope = None
        self._wakeup_cb = None
        self._spawner = None
        self._self_ref = None
        self._registered = None
        self._waiting_since = 0.0
        if loop is None:
            import asyncio
            loop = asyncio.get_event_loop()
        self._loop = loop
        # The kernel's ready-queue append, for direct wake-ups (None on a
        # loop that is not treadle's: then every wake-up uses call_soon).
        self._ready = getattr(loop, "_kernel_ready_append", None)
        kernel: KernelLoop | None = loop if self._ready is not None else None
        self._kernel = kernel
        if kernel is not None:
            # Created by a task step: that task is its spawner.  The weak
            # reference is made once per spawner and shared by its children.
            creator = kernel._running_item
            if type(creator) is TaskCore:       # (often a Handle: see loop.py)
                ref = creator._self_ref
                if ref is None:
                    parent = creator._task
                    if parent is not None:
                        ref = creator._self_ref = _WEAKREF(parent)
                self._spawner = ref
        self._context = _copy_context() if context is None else context
        if (kernel._debug if kernel is not None else loop.get_debug()):
            # The whole stack, as asyncio's C task records it (handles keep
            # DEBUG_STACK_DEPTH frames, as asyncio's do).
            self._source_traceback = _format.caller_stack(None)
        if type(coro) is not _CoroutineType and not _iscoroutine(coro):
            self._log_destroy_pending = False
            raise TypeError(f"a coroutine was expected, got {coro!r}")
        if context is not None and type(context) is not _Context:
            # asyncio's task takes anything, and then cannot run a single
            # step (each attempt is reported): refused here instead.
            self._log_destroy_pending = False
            raise TypeError(f"context must be a contextvars.Context or None, "
                            f"got {context!r}")
        self._coro = coro
        # The number is formatted only if someone asks for the name.
        self._name = next(_task_numbers) if name is None else str(name)
        if scope is not None:
            # Born inside a cancel scope (a treadle TaskGroup's child), before
            # its first step, which may be eager.
            self._scope = scope
            scope._add_task(self)
        if kernel is not None and kernel._hooks is not None:
            kernel._call_hooks("task_spawned", task)
        if eager_start and loop.is_running():
            self._eager_start()
        else:
            # Onto the ready queue (state 2), and into asyncio's registry.
            ready = self._ready
            if ready is not None:
                ready(self)
            else:
                loop.call_soon(self._step, context=self._context)
            self._register(task)

    # ------------------------------------------------------------------
    # scheduling
    # ------------------------------------------------------------------

    def _run(self) -> None:
        """Called by the kernel when it pops this task off the ready queue:
        after a bare yield (no waiter), when a treadle task it waited on
        finished, or when a future it waited on called back (the kernel's
        call_soon queues the task itself for a ``Wakeup``)."""
        waiter: Any = None
        failure: BaseException | None = None
        held: Any = None
        try:
            waiter = self._fut_waiter
            if waiter is None:
                if self._state is _PENDING:
                    _CTX_RUN(self._context, _STEP, self, None)
                else:
                    self._run_callbacks()       # Rule 4
                return
            if _AWAITED_BY and isinstance(waiter, _FUTURE_TYPE):
                _DISCARD_AWAITED_BY(waiter, self._task)
            # (A plain future is told apart by its type first: a failed
            # isinstance() looks up the object's __class__ by name.)
            if type(waiter) is not _FUTURE_TYPE and isinstance(waiter, known.task_class):
                core: TaskCore = waiter._core
                if core._state is _FINISHED and core._exception is None:
                    _CTX_RUN(self._context, _STEP, self, None)
                    return
                # It failed or was cancelled: its exception is taken from
                # the core rather than raised by result(), whose frames
                # would be in the traceback the awaiting coroutine sees
                # (asyncio's C wakeup shows only the frames that raised).
                failure = core._failure()
            else:
                # A future failed or was cancelled: throw its exception
                # in, as asyncio's wakeup does.
                try:
                    if type(waiter) is _FUTURE_TYPE:
                        _FUTURE_RESULT(waiter)
                    else:
                        waiter.result()
                except BaseException as exc:
                    leave_out_own_frames(exc)
                    failure = exc
            # Stepped after the except block, never inside it: there, the
            # failure would stay "being handled" for the whole step, and the
            # coroutine would see it in sys.exc_info() after its own except
            # clause, and as the __context__ of what it raises next.
            _CTX_RUN(self._context, _STEP, self, failure)
        finally:
            if (self._state is not _PENDING and self._cb0 is None
                    and not self._callbacks):
                # _let_go_if_done(), inline (twice per task: the pure build
                # feels the call), storing first and releasing after as it
                # does.  Here, outside the task's context: dropping the last
                # reference runs the Task's finalizer, whose report may run
                # the exception handler in that context.
                held = self._task
                self._task = None
                self._wakeup_cb = None
                held = None
            # Frames on the stack when a coroutine frame finishes outlive
            # their call (as its f_back chain).  None of them may end up
            # holding the task: that would make a cycle task -> exception ->
            # traceback -> frame -> task, and a failed task would only be
            # freed (and its exception reported) by the cyclic GC.  Nor the
            # failed waiter: the exception thrown in holds this frame, and
            # the waiter holds the exception.
            del self, waiter, failure, held

    def _let_go_if_done(self) -> None:
        """Once the task is done and its done-callbacks have run or are
        queued as Handles (Rule 4 keeps it until they have run), let go of
        the Task (see the module header): a finished task is then freed by
        reference counting alone.  Its Wakeup points back to this core:
        that cycle goes too.  Store first, then release (``loop.py``'s
        header): observers on other threads read ``_task``."""
        if self._state is _PENDING or self._cb0 is not None or self._callbacks:
            return
        task = self._task
        self._task = None
        self._wakeup_cb = None
        if task is None:
            pass
        task = None

    def _wakeup(self, future: Any) -> None:
        """Done-callback on a foreign future (runs inside our context)."""
        failure: BaseException | None = None
        try:
            if _AWAITED_BY and isinstance(future, _FUTURE_TYPE):
                _DISCARD_AWAITED_BY(future, self._task)
            try:
                future.result()
            except BaseException as exc:
                leave_out_own_frames(exc)
                failure = exc
            self._step(failure)     # outside the except block: see _run
        finally:
            del self, future, failure

    def _step(self, exc: BaseException | None = None) -> None:
        if self._state is not _PENDING:
            raise _InvalidStateError(
                f"_step(): already done: {self._task_repr()}, {exc!r}")
        if self._must_cancel:
            if not isinstance(exc, _CancelledError):
                exc = self._make_cancelled_error()
            self._must_cancel = False
        self._fut_waiter = None
        loop = self._loop
        task = self._task
        if _THREAD_STATE_TASKS:
            _ENTER_TASK(loop, task)
            try:
                self._step_body(exc)
            finally:
                _LEAVE_TASK(loop, task)
                del self, task, exc
            return
        current = _current_tasks.setdefault(loop, task)
        if current is not task:
            raise RuntimeError(f"Cannot enter into task {task!r} while another "
                               f"task {current!r} is being executed.")
        try:
            self._step_body(exc)
        finally:
            del _current_tasks[loop]
            del self, task, current, exc

    def _step_body(self, exc: BaseException | None) -> None:
        coro = self._coro
        try:
            if exc is None:
                if type(coro) is _CoroutineType:
                    result = _CORO_SEND(coro, None)
                else:
                    result = coro.send(None)
            else:
                kernel = self._kernel
                if kernel is None:
                    result = coro.throw(exc)
                else:
                    # What _await needs to give the exception its traceback
                    # back, should it arrive there (read only on that path).
                    kernel._thrown = exc
                    kernel._thrown_tb = exc.__traceback__
                    try:
                        result = coro.throw(exc)
                    finally:
                        kernel._thrown = kernel._thrown_tb = None
        except StopIteration as stop:
            if self._must_cancel:
                # Cancelled right before the coroutine returned.
                self._must_cancel = False
                self._cancel_self(self._cancel_message)
            else:
                self._finish(stop.value, None)
        except _CancelledError as cancelled:
            leave_out_own_frames(cancelled)
            self._cancelled_exc = cancelled
            self._cancel_self(None)
        except (KeyboardInterrupt, SystemExit) as fatal:
            self._finish(None, fatal)
            raise
        except BaseException as error:
            leave_out_own_frames(error)
            self._finish(None, error)
        else:
            if result is None:
                # Bare yield: give up the rest of this turn (Rule 1).
                ready = self._ready
                if ready is not None:
                    ready(self)
                else:
                    self._loop.call_soon(self._step, context=self._context)
            elif type(result) is not _FUTURE_TYPE and isinstance(result, known.task_class):
                self._wait_task(result)
            else:
                self._wait_other(result)
            del result
            scope = self._scope
            if scope is not None:
                # Level-triggered cancellation: a task suspending inside a
                # cancelled scope gets CancelledError at this suspension.
                scope._at_suspension(self)
        finally:
            del self, coro, exc

    def _wait_task(self, other: Any) -> None:
        """The coroutine yielded a treadle Task (``await other``): Rule 2."""
        core: TaskCore = other._core
        if not other._asyncio_future_blocking:
            self._throw_later(RuntimeError(
                f"yield was used instead of yield from in task "
                f"{self._task_repr()} with {other!r}"))
        elif core._loop is not self._loop:
            self._throw_later(RuntimeError(
                f"Task {self._task_repr()} got Future {other!r} attached to a "
                f"different loop"))
        elif core is self:
            self._throw_later(RuntimeError(
                f"Task cannot await on itself: {self._task_repr()}"))
        else:
            other._asyncio_future_blocking = False
            if self._ready is not None and core._state is _PENDING:
                if core._cb0 is None and not core._callbacks:
                    core._cb0 = self
                elif core._callbacks is None:
                    core._callbacks = [self]
                else:
                    core._callbacks.append(self)
            else:
                other.add_done_callback(self._wakeup_callback(), context=self._context)
            self._fut_waiter = other
            self._waiting_since = coarse_clock.now
            if _AWAITED_BY:
                _ADD_AWAITED_BY(other, self._task)
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
                self._throw_later(RuntimeError(
                    f"Task {self._task_repr()} got Future {result!r} attached "
                    f"to a different loop"))
            elif blocking:
                if result is self._task:
                    self._throw_later(RuntimeError(
                        f"Task cannot await on itself: {self._task_repr()}"))
                else:
                    result._asyncio_future_blocking = False
                    result.add_done_callback(self._wakeup_callback(), context=self._context)
                    self._fut_waiter = result
                    self._waiting_since = coarse_clock.now
                    if _AWAITED_BY and isinstance(result, _FUTURE_TYPE):
                        _ADD_AWAITED_BY(result, self._task)
                    if self._must_cancel:
                        if result.cancel(msg=self._cancel_message):
                            self._must_cancel = False
            else:
                self._throw_later(RuntimeError(
                    f"yield was used instead of yield from in task "
                    f"{self._task_repr()} with {result!r}"))
        elif inspect.isgenerator(result):
            self._throw_later(RuntimeError(
                f"yield was used instead of yield from for generator in task "
                f"{self._task_repr()} with {result!r}"))
        else:
            self._throw_later(RuntimeError(f"Task got bad yield: {result!r}"))

    def _register(self, task: Any) -> None:
        """Make the pending *task* visible to asyncio.all_tasks()."""
        if _REGISTRY_ADD is not None:
            ref = _WEAKREF(task, _REGISTRY_REMOVE)
            _REGISTRY_ADD(ref)
            self._registered = ref
        else:
            _compat.register_task(task)

    def _wakeup_callback(self) -> Wakeup:
        """The done-callback this task puts on the futures it awaits: one
        per task, made on its first wait (a task waits on many futures)."""
        wakeup = self._wakeup_cb
        if wakeup is None:
            wakeup = self._wakeup_cb = Wakeup(self)
        return wakeup

    def _throw_later(self, exc: BaseException) -> None:
        self._loop.call_soon(self._step, exc, context=self._context)

    def _eager_start(self) -> None:
        """Run the first step inside the constructor (eager task factory)."""
        loop = self._loop
        task = self._task
        # The task that called create_task() stays current around the step
        # (a swap, not _step's enter/leave): written straight into asyncio's
        # map up to 3.13, as _step does, with no Python-level call.
        if _THREAD_STATE_TASKS:
            prev = _SWAP_CURRENT_TASK(loop, task)
        else:
            prev = _current_tasks.get(loop)
            _current_tasks[loop] = task
        eager = _eager_tasks
        try:
            if eager is not None:
                eager.add(task)
            else:
                # 3.14+: the C module's eager registration would link a
                # subclass of its Task into its list of C tasks (see
                # taskclass.py); the registry of other tasks serves (it
                # skips done tasks).  3.11: no eager registry at all.
                self._register(task)
            try:
                _CTX_RUN(self._context, _STEP_BODY, self, None)
            finally:
                if eager is not None:
                    eager.discard(task)
        finally:
            if _THREAD_STATE_TASKS:
                _SWAP_CURRENT_TASK(loop, prev)
            elif prev is None:
                _current_tasks.pop(loop, None)
            else:
                _current_tasks[loop] = prev
            if self._state is _PENDING:
                if eager is not None:
                    self._register(task)
            else:
                # Store first, release after (loop.py's header): the local
                # holds the coroutine across the store.  (The Task local:
                # whoever called create_task() gets it back, so nothing is
                # finalized here.)
                coro = self._coro
                self._coro = None
                self._let_go_if_done()
                if coro is task:
                    pass
            del task

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
        self._schedule_callbacks()

    def _cancel_self(self, msg: Any) -> bool:
        """Future.cancel() applied to the task itself: it is now cancelled."""
        self._log_tb = False
        if self._state is not _PENDING:
            return False
        self._state = _CANCELLED
        if self._scope is not None:
            self._scope._task_done(self)
        self._cancel_message = msg
        self._schedule_callbacks()
        return True

    def _schedule_callbacks(self) -> None:
        """The task is done: schedule its done-callbacks."""
        ref = self._registered
        if ref is not None:
            # Out of asyncio's registry now rather than through the weak
            # reference's callback when the Task is freed (see _compat).
            self._registered = None
            if not _REGISTRY_ITERATING:
                _REGISTRY_DISCARD(ref)
        kernel = self._kernel
        task = self._task
        if kernel is not None and kernel._hooks is not None:
            kernel._call_hooks("task_exited", task)
        first = self._cb0
        callbacks = self._callbacks
        if first is None and not callbacks:
            return
        if (kernel is not None and not kernel._slow and not isinstance(first, TaskCore)
                and (not callbacks or _no_task_among(callbacks))):
            # Rule 4: they stay where they are, and this core goes on the
            # ready queue, where _run finds it done and calls them.
            self._ready(self)
            return
        context = self._ctx0
        self._cb0 = self._ctx0 = self._callbacks = None
        if first is not None:
            self._dispatch(task, first, context)
        if callbacks:
            for entry in callbacks:
                if isinstance(entry, TaskCore):
                    self._dispatch(task, entry, None)
                else:
                    self._dispatch(task, entry[0], entry[1])

    def _run_callbacks(self) -> None:
        """Call the done-callbacks of this finished task, in order (Rule 4):
        what the Handles asyncio would have queued for them do, one after
        the other."""
        task = self._task
        kernel = self._kernel
        assert kernel is not None       # Rule 4 is the kernel's alone
        entries = self._callbacks
        fn = self._cb0
        context = self._ctx0
        self._cb0 = self._ctx0 = self._callbacks = None
        i = 0
        try:
            while True:
                if fn is not None:
                    try:
                        _CTX_RUN(context, fn, task)
                    except (SystemExit, KeyboardInterrupt):
                        # Out of the loop, as from a Handle; the callbacks
                        # not yet called keep their place at the front.
                        if entries is not None and i < len(entries):
                            self._callbacks = entries[i:]
                            kernel._ready.appendleft(self)
                        raise
                    except BaseException as exc:
                        # Reported as the Handle would have been.
                        Handle(fn, (task,), kernel, context)._report(exc)
                if entries is None or i == len(entries):
                    return
                fn, context = entries[i]
                i += 1
        finally:
            del self, task, fn, context, entries

    def _dispatch(self, task: Any, fn: Any, context: Any) -> None:
        """Schedule one done-callback (called with the Task)."""
        if isinstance(fn, TaskCore):
            # A treadle task waiting on us (Rule 2).
            fn._ready(fn)
        elif self._kernel is not None:
            # What loop.call_soon(fn, task, context=ctx) does, without the
            # method lookup and argument parsing: a task only finishes while
            # its loop runs, so the loop is open.
            self._ready(Handle(fn, (task,), self._kernel, context))
        else:
            self._loop.call_soon(fn, task, context=context)

    # ------------------------------------------------------------------
    # the asyncio.Future API (``Task`` forwards here)
    # ------------------------------------------------------------------

    def done(self) -> bool:
        return self._state is not _PENDING

    def cancelled(self) -> bool:
        return self._state is _CANCELLED

    def result(self) -> Any:
        state = self._state
        if state is _FINISHED:
            if self._exception is None:
                return self._result
            raise self._failure()
        if state is _CANCELLED:
            raise self._make_cancelled_error()
        raise _InvalidStateError("Result is not set.")

    def _failure(self) -> BaseException:
        """What ``result()`` of this task raises once it failed or was
        cancelled (``InvalidStateError`` before, as ``result()`` raises:
        the kernel never asks then).  A failure's exception comes with the
        traceback of the frames that raised it the first time it is taken
        (by ``result()``, or by a task awaiting this one) and with none
        after that, as asyncio's C future gives it: it lets go of the
        traceback (and the frames it holds) once it has been handed on."""
        state = self._state
        if state is _CANCELLED:
            return self._make_cancelled_error()
        exc = self._exception
        if state is _PENDING or exc is None:
            return _InvalidStateError("Result is not set.")
        self._log_tb = False
        tb = self._exception_tb
        self._exception_tb = None
        return exc.with_traceback(tb)

    def exception(self) -> BaseException | None:
        state = self._state
        if state is _FINISHED:
            self._log_tb = False
            return self._exception
        if state is _CANCELLED:
            raise self._make_cancelled_error()
        raise _InvalidStateError("Exception is not set.")

    def add_done_callback(self, task: Any, fn: Callable[[Any], object],
                          context: contextvars.Context | None) -> None:
        if self._state is not _PENDING:
            self._loop.call_soon(fn, task, context=context)
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
        if self._state is not _PENDING:
            # Its callbacks were scheduled when it finished (those Rule 4
            # keeps here until they run included): none can be removed.
            return 0
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

    def callback_entries(self) -> list[Any]:
        """All done-callbacks in order: ``(fn, context)`` pairs, and the
        cores of treadle tasks waiting on this one (for reprs and the
        ``_callbacks`` attribute)."""
        entries: list[Any] = []
        if self._state is not _PENDING:
            return entries              # scheduled already (Rule 4)
        first = self._cb0
        if first is not None:
            entries.append(first if isinstance(first, TaskCore) else (first, self._ctx0))
        if self._callbacks:
            entries.extend(self._callbacks)
        return entries

    def _make_cancelled_error(self) -> BaseException:
        """The CancelledError to raise for a cancelled task: the one the
        coroutine raised the first time it is asked for, then fresh ones."""
        exc = self._cancelled_exc
        if exc is not None:
            self._cancelled_exc = None
            return exc
        msg = self._cancel_message
        return _CancelledError() if msg is None else _CancelledError(msg)

    def _await(self) -> Generator[Any, None, Any]:
        """``Task.__await__``: yield the Task to the runner, once."""
        if self._state is _PENDING:
            task = self._task
            # The flag lives on the Task (see taskclass.py): any runner,
            # treadle's or a foreign one, reads it there.
            task._asyncio_future_blocking = True
            try:
                yield task  # The kernel parks the awaiting task on us.
            except BaseException as exc:
                kernel = self._kernel
                if kernel is None or exc is not kernel._thrown:
                    raise
                # Thrown in by the kernel: this task failed or was
                # cancelled.  A generator compiled by mypyc receives a
                # thrown exception without its traceback (3.12+ clears the
                # exception's own too), and ``await task`` would show none
                # of the frames that raised it: raised again with the
                # traceback it was thrown with, as asyncio's iterator keeps
                # it, by a bare raise, which adds no entry of this frame's
                # (interpreted, a raise of the exception would).
                # (Generators are what mypyc can resume without an
                # exception per return; an iterator class would cost every
                # await about 2,000 instructions more.)
                exc.__traceback__ = kernel._thrown_tb
                raise
            del task
        if self._state is _PENDING:
            raise RuntimeError("await wasn't used with future")
        try:
            return self.result()
        except BaseException as exc:
            # Interpreted, result()'s entry and this frame's: left out, as
            # Task.result() leaves them out (a bare raise adds none).
            leave_out_own_frames(exc)
            raise

    # ------------------------------------------------------------------
    # the asyncio.Task API (``Task`` forwards here)
    # ------------------------------------------------------------------

    def cancel(self, msg: Any = None) -> bool:
        self._log_tb = False
        if self._state is not _PENDING:
            return False
        scope = self._scope
        if scope is not None and scope._defer_cancel(self, msg):
            # Inside a shielded scope: delivered when the shield ends.
            return True
        return self._request_cancel(msg)

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

    def get_name(self) -> str:
        name = self._name
        if type(name) is int:
            name = self._name = f"Task-{name}"
        return str(name)

    def get_stack(self, limit: Any) -> list[Any]:
        return _format.frames_of(self._coro, self._exception, limit)

    def _task_repr(self) -> str:
        """repr() of the Task: the same text as the core's own."""
        return TaskCore.__repr__(self)

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
        entries = self.callback_entries()
        if entries:
            info.append(_format.callbacks_repr(entries))
        if self._source_traceback:
            frame = self._source_traceback[-1]
            info.append(f"created at {frame[0]}:{frame[1]}")
        return f"<Task {' '.join(info)}>"

    def finalize(self, task: Any) -> None:
        """The Task is being freed: report what asyncio's task reports."""
        if self._state is _PENDING:
            if self._log_destroy_pending and self._coro is not None:
                context: dict[str, Any] = {
                    "task": task,
                    "message": "Task was destroyed but it is pending!",
                }
                if self._source_traceback:
                    context["source_traceback"] = self._source_traceback
                self._loop.call_exception_handler(context)
        elif self._log_tb:
            context = {
                "message": "Task exception was never retrieved",
                "exception": self._exception,
                "future": task,
            }
            if self._source_traceback:
                context["source_traceback"] = self._source_traceback
            self._loop.call_exception_handler(context)


def new_task(cls: Any, coro: Any, loop: Any, name: object,
             context: contextvars.Context | None, eager_start: Any,
             scope: ScopeHooks | None = None) -> Any:
    """A ``treadle.Task`` (of class *cls*) without running Python-level
    ``__init__``: what ``loop.create_task()`` makes.  *scope*: the cancel
    scope it starts in."""
    task = _TASK_NEW(cls)
    TaskCore(task, coro, loop, name, context, eager_start, scope)
    return task


def log_destroy_pending(task: Any) -> bool:
    """``Task._log_destroy_pending``'s getter."""
    core: TaskCore = task._core
    return core._log_destroy_pending


def set_log_destroy_pending(task: Any, value: object) -> None:
    """``Task._log_destroy_pending``'s setter, which ``asyncio.gather()`` and
    ``ensure_future()`` call for each coroutine they wrap: compiled, a
    C-level call with no Python frame (the property's setter was a third
    of the cost of wrapping a coroutine in ``gather``)."""
    core: TaskCore = task._core
    core._log_destroy_pending = bool(value)


def _no_task_among(callbacks: list[Any]) -> bool:
    """True when no entry of a done-callback list is a waiting task's core
    (Rule 4 then applies)."""
    for entry in callbacks:
        if isinstance(entry, TaskCore):
            return False
    return True


_UNCANCEL_CLEARS_MUST_CANCEL: Final = _compat.PY313


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
        return f"<Task.task_wakeup of {self.task._task_repr()}>"

_STEP: Final = TaskCore._step
_STEP_BODY: Final = TaskCore._step_body


def leave_out_own_frames(exc: BaseException) -> None:
    """What a task raises to its caller (``result()``, ``exception()``,
    ``await task``), and what its coroutine or an awaited future raised
    into it, comes without entries of the task's own frames at the head of
    its traceback, as from asyncio's C task, which raises from C: the
    caller's traceback goes on to the frames that raised it, and
    tracebacks, get_stack() and "exception was never retrieved" logs start
    at the coroutine.  (On the pure build, _step_body's frame heads what
    the coroutine raises, _run's or _wakeup's what an awaited future
    raised before it is thrown in; compiled frames add no entry at all:
    ``setup.py``.)  Own frames are told by their file, never by their name
    (a user's coroutine may be called ``_run``).  Called before a bare
    ``raise``, which adds no entry for the frame it is in."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename in _OWN_FILES:
        tb = tb.tb_next
    exc.__traceback__ = tb


#: This module's source and ``Task``'s (``taskclass.py``, beside it).
_OWN_FILES: Final = frozenset({
    __file__, os.path.join(os.path.dirname(__file__), "taskclass.py")})

