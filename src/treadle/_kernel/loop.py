"""The treadle kernel: the run loop.

Owns: the ready queue, the timer queue, the clock, the I/O backend and the
fd -> callback map, the thread-safe wake-up pipe, executors, async
generator hooks, the exception handler, debug mode, and the three seams
(clock, ready order, instruments; see ``seams.py``).
Never: knows what a socket, a transport or a process is.  Those layers
live in ``treadle._net`` and ``treadle._proc`` and reach the kernel only
through ``_add_reader``/``_add_writer`` and ``call_soon``.

One turn of the loop (``_run_once``) does, in this order:

1. **Poll I/O**.  With nothing ready, block in the backend until the next
   timer is due (or forever).  With callbacks ready, poll with a zero
   timeout on every turn while the loop watches any fd for its users, as
   asyncio does: programs (and libraries' test suites) count on data that
   reached a socket being delivered within a turn or two ("write, then
   ``await asyncio.sleep(0)`` twice, then the peer's ``data_received`` has
   run").  Also on every turn while any other thread exists: the poll is
   where the loop releases the GIL, and a thread waiting for it gets it
   only then (asyncio's ``select(0)`` on every turn is what lets
   ``to_thread`` work finish while a task spins on ``sleep(0)``).  Polling
   now and then is worse than never: each release wakes the waiting thread,
   which restarts its switch-interval wait, so it neither wins the brief
   race for the GIL nor ever asks the loop to drop it (issue 13: a worker
   starved for up to a second).  A loop alone in its process that watches
   nothing but its own wake-up pipe has nothing to find there
   (``call_soon_threadsafe`` queues its callback before it writes the
   pipe), so it does not poll at all while it is busy: pure computation
   (chains of callbacks, task switches, futures, queues) makes no syscall.
   Two things end that: the signal layer's Python-level handler sets
   ``_poll_next`` when a signal the loop handles arrives (its number waits
   in the pipe), and every ``POLL_EVERY`` callbacks the loop re-reads how
   many threads exist (a counter, no syscall), so a thread started during
   a busy stretch is seen within ``POLL_EVERY`` callbacks.  treadle's own
   observation threads (``OWN_THREADS``) do not count: they never wait for
   the loop's work, and with no poll to interrupt their wait for the GIL,
   the switch interval hands it to them (a poll every ``POLL_EVERY``
   callbacks would be the "now and then" above: the watchdog starved for
   hundreds of milliseconds, and each release cost the loop a futex wake).
   Always poll when stopping and on the first turn of ``run_forever``.
   Ready fds put their reader/writer handles on the ready queue, after what
   was already ready.
2. **Move due timers** to the ready queue, earliest first.
3. **Run the batch**: exactly the callbacks and tasks that were ready when
   the batch began.  Anything they schedule runs next turn, after another
   chance to poll.  This is the only place callbacks and task steps are
   actually *called*; everything else appends to ``_ready``.
4. **End of batch**: run the functions registered with
   ``_call_at_batch_end()`` during the batch, once each, before the loop
   can block (TLS orders a failed handshake's wake-up after its alert with
   it).  Transports do not hold writes for it: a write goes out at once,
   as on asyncio (``_writeflow``), because a response whose second half
   waited for the end of the turn woke its client twice.

When the loop would block, two things can cut the wait short besides I/O
and timers: *idle waiters* (``_add_idle_waiter``: woken once the loop has
had nothing to do for their *cushion* of real seconds; what
``treadle.testing.wait_all_tasks_blocked`` is built on) and the clock's
``idle()`` (a virtual clock jumps to the next deadline there).  Idle waiters
go first.

The ready queue holds three kinds of item, all with a ``_run()`` method:
``Handle`` (a callback), ``TaskCore`` (a task step, queued without any
wrapper, see ``task.py``) and, on 3.14+, asyncio's own thread-safe handle
from ``call_soon_threadsafe()`` (skipped when cancelled, as asyncio does).

Invariants of the hot path (``call_soon``, the batch loop, task switches):
no allocation beyond the Handle and its context copy; no clock read when no
timer is pending; one attribute test per turn decides whether any seam or
debug feature is active (``_slow``), and the plain path has no other
branches for them.

What the loop leaves for observers (``treadle.observe`` reads these from its
own threads and never calls into the loop to do so): ``_running_item``, the
item the batch is running right now (one store per item, None between
batches), beside ``_batch_serial``; and always-on counters that cost nothing
per callback: the items run (``_items_run()``: what ``_since_poll`` counts
anyway, banked in ``_items_polled`` at each poll and each look at the
thread count, so a busy loop pays nothing per batch for it), ``_io_wait_time`` (two clock reads around each
poll that may block, none around a busy loop's zero-timeout polls) and the
timer queue's lateness histogram.  A watchdog thread does all the timing:
the loop itself reads no clock for any of it.

Rule for every reference observers read from other threads (``_running_item``
here; a task's ``_task`` and ``_coro``, a handle's ``_callback``/``_args``,
the timer heap): *store first, release after*.  Compiled, an attribute
assignment releases the old value before it stores the new one, and a
release can run Python code (a finalizer, a weak reference's callback)
during which another thread may take the GIL and read the attribute: it
would get an object being freed.  So the old value is held in a local that
is *used after the store*: ``if old is new: pass`` (compiled, a local is
released right after its last use, so merely assigning it would not do; a
comparison costs an instruction).  Uncompiled, CPython stores first anyway.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import contextvars
import heapq
import logging
import numbers
import os
import sys
import threading
import time
import traceback
import weakref
from collections import deque
from typing import Any, Callable, Final

from . import _compat, _format
from .handles import Handle, TimerHandle
from .seams import Clock, ReadyOrder, hooks_of
from .task import TaskCore, Wakeup, new_task
from .taskclass import Task, eager_task_factory, task_factory
from .timers import TimerQueue
from .._io.backend import READABLE, WRITABLE, IOBackend, default_backend

#: Callbacks a busy loop that watches no fd but its own wake-up pipe runs
#: between two looks at how many threads exist (step 1).
POLL_EVERY: Final = 64

#: The longest the loop blocks in one poll (asyncio's MAXIMUM_SELECT_TIMEOUT).
MAX_POLL_TIMEOUT: Final = 24 * 3600.0

class _Unset:
    """The default of create_task()'s keywords: "not given" (3.14 passes
    only the keywords it was given on to the task factory)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<not given>"


_UNSET: Final = _Unset()

# Module-level names the compiled code reads are Final: mypyc then keeps
# them in C statics (or inlines the constant) instead of looking them up in
# the module's dict at every use.
_Future: Final = asyncio.Future
_TaskClass: Final = Task
# treadle's own task factories: create_task() does what they would do
# without the Python-level call of the factory (two frames, keywords).
_EAGER_FACTORY: Final[Any] = eager_task_factory
_PLAIN_FACTORY: Final[Any] = task_factory
_ThreadSafeHandle: Final[Any] = getattr(asyncio.events, "_ThreadSafeHandle", None)


def _monotonic() -> float:
    """The default clock: ``time.monotonic`` looked up at each read, as
    asyncio's ``BaseEventLoop.time()`` does, so that a test that replaces it
    (freezegun, ``mock.patch("time.monotonic")``) moves this loop's time and
    fires its timers as it does asyncio's."""
    return time.monotonic()


_perf_counter: Final = time.perf_counter
_get_running_loop: Final = asyncio.events._get_running_loop
#: The number of threads started through ``_thread``/``threading`` that
#: are still running, the main thread not counted: non-zero whenever some
#: thread other than the loop's exists (a loop outside the main thread
#: counts itself, and the main thread is the other one).
_other_threads: Final = _thread._count
#: How many of those are treadle's own threads that never wait for the
#: loop's work (the blocking detector's watchdog, the ``treadle ps``
#: server): a switch interval's wait for the GIL costs them nothing, so they
#: do not make a busy loop poll on every turn (step 1).  Kept by the layer
#: that starts and joins them.
OWN_THREADS: Final[list[int]] = [0]
_set_running_loop: Final = asyncio.events._set_running_loop


def fileobj_to_fd(fileobj: Any) -> int:
    """The fd of an int or an object with ``fileno()`` (asyncio's rules and
    messages); the transports use it too."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def _run_until_complete_cb(fut: Any) -> None:
    if not fut.cancelled():
        exc = fut.exception()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            # run_forever() is already unwinding with it.
            return
    fut.get_loop().stop()


@_compat.mypyc_attr(allow_interpreted_subclasses=True)
class LoopLayers(asyncio.AbstractEventLoop):
    """The points where the layers above the kernel (networking, processes,
    signals, observation) extend a loop; the kernel calls each at its place
    and does nothing at it itself.  A layer is a class based on
    ``layers.Layer`` that overrides the hooks it needs and calls ``super()``
    in each, so that every layer's runs.

    Rule: a layer never overrides a method ``KernelLoop`` defines.
    ``treadle.EventLoop`` names ``KernelLoop`` first among its bases, so
    ``KernelLoop`` is the second class of its MRO, the layers come after
    it and this class after them: a layer's method of a name the kernel
    also defines would never be called (``tests/kernel/test_architecture.py``
    checks that none exists).  Why the kernel leads: each call from Python
    (or from a C future scheduling a callback) into a compiled method of the
    loop checks that ``self`` is a ``KernelLoop`` by walking the MRO of
    ``self``'s class until it finds it; behind eleven layer classes that
    walk cost 800 instructions per ``asyncio.sleep()`` task (callgrind,
    3.11), 1.2% of all its work.
    """

    def _layers_init(self) -> None:
        """Set up the layers' state: the end of ``KernelLoop.__init__``."""

    def _layers_close(self) -> None:
        """Let go of what the layers hold (child processes, signal
        handlers): ``close()`` of an open loop that is not running, before
        the kernel closes its own."""

    def _layers_closed(self) -> None:
        """``close()`` of an open loop, once the kernel is closed."""

    def _layers_run_started(self) -> None:
        """``run_forever()`` has set up (it is the running loop)."""

    def _layers_run_ending(self) -> None:
        """``run_forever()`` is about to stop being the running loop."""

    def _check_fd_free(self, fd: Any) -> None:
        """Raise if a layer uses *fd* itself (a transport's socket), which
        the public ``add_reader()``, ``remove_writer()``, ... must not
        touch."""

    def _process_self_data(self, data: bytes) -> None:
        """Bytes of the wake-up pipe other than wake-ups (signal numbers)."""


@_compat.mypyc_attr(allow_interpreted_subclasses=True)
class KernelLoop(LoopLayers):
    """The event loop without networking or processes.

    ``treadle.EventLoop`` adds those; this class is what the rest of treadle
    builds on, and what the kernel tests exercise.

    Hot paths call the kernel's own methods as ``KernelLoop.m(self, ...)``:
    compiled, that is a direct native call, while ``self.m(...)`` on an
    instance of an interpreted subclass (every real loop is one) goes through
    Python-level dispatch so that subclasses can override.
    """

    #: Callbacks that take longer than this are logged in debug mode.
    slow_callback_duration = 0.1

    # asyncio's loop keeps these as plain instance attributes, which tests
    # replace with ``unittest.mock.patch.object(loop, name, ...)``; on exit
    # mock deletes the attribute (it was not in the instance's __dict__)
    # and then puts the original back.  A compiled attribute refuses to be
    # deleted unless it is listed here (reading one costs a check more).
    __deletable__ = ("_clock_resolution", "_debug", "_default_executor",
                     "_exception_handler", "_task_factory", "_thread_id",
                     "_current_handle", "_internal_fds", "_asyncgens",
                     "_asyncgens_shutdown_called", "_executor_shutdown_called",
                     "_coroutine_origin_tracking_enabled",
                     "_coroutine_origin_tracking_saved_depth")

    def __init__(self, *, clock: Clock | None = None,
                 backend: IOBackend | None = None) -> None:
        self._ready: deque[Any] = deque()
        #: Its append, under a name no other loop has: treadle tasks look
        #: for it to know they may queue themselves directly.  (Bound once:
        #: calling a stored bound method costs no attribute lookup.)
        self._kernel_ready_append: Callable[[Any], None] = self._ready.append
        self._ready_popleft: Callable[[], Any] = self._ready.popleft
        self._timers = TimerQueue()
        self._closed = False
        self._stopping = False
        self._thread_id: int | None = None
        self._debug = _compat.debug_mode_default()
        self._debug_setting: Any = self._debug
        self._clock = clock
        self._time: Callable[[], float] = _monotonic if clock is None else clock.time
        self._clock_resolution = time.get_clock_info("monotonic").resolution
        #: A subclass overrides call_at(): call_later() then goes through it.
        self._call_at_overridden = type(self).call_at is not KernelLoop.call_at
        #: The instance's own attributes, when it has any (a loop of an
        #: interpreted subclass): where a time() or _run_once() replaced
        #: on the instance is found (see _now).  Noted when a run starts
        #: (compiled, the instance has no __dict__ yet while __init__
        #: runs); let go of by close().
        self._instance_dict: dict[str, Any] | None = None
        #: time() is the kernel's (not overridden by the class, no clock
        #: seam): see _now().
        self._time_direct = False
        self._backend: IOBackend = default_backend() if backend is None else backend
        # asyncio's selector loops log the one they picked, at DEBUG.
        _compat.log(logging.DEBUG, "Using selector: %s", type(self._backend).__name__)
        self._readers: dict[int, Handle] = {}
        self._writers: dict[int, Handle] = {}
        # The file object (not an int) each watched fd was last added with.
        # Once that object is closed its fileno() is -1, and asyncio's
        # selector still finds the registration by the object itself, so
        # remove_reader(sock)/remove_writer(sock) after sock.close() works.
        self._fd_objects: dict[int, Any] = {}
        self._exception_handler: Callable[[Any, dict[str, Any]], object] | None = None
        self._default_executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._executor_shutdown_called = False
        self._asyncgens: weakref.WeakSet[Any] = weakref.WeakSet()
        self._asyncgens_shutdown_called = False
        self._old_agen_hooks: Any = None
        self._task_factory: Callable[..., Any] | None = None
        self._current_handle: Any = None
        self._coroutine_origin_tracking_enabled = False
        self._coroutine_origin_tracking_saved_depth: int | None = None
        # Seams (see seams.py).
        self._instruments: list[object] = []
        self._hooks: dict[str, list[Callable[..., object]]] | None = None
        self._ready_order: ReadyOrder | None = None
        self._slow = self._debug
        #: What call_soon returns when it queues a task for a Wakeup.
        self._wakeup_handle = Handle(_no_op, (), self, None)
        # Observation (see the module header).
        self._running_item: Any = None
        # While a task step throws an exception into its coroutine: that
        # exception and its traceback (see TaskCore._await).
        self._thrown: BaseException | None = None
        self._thrown_tb: Any = None
        self._io_wait_time = 0.0
        # Poll scheduling (step 1).  Items run = _items_polled + _since_poll
        # (the items since the last poll or look at the thread count).
        self._since_poll = 0
        self._items_polled = 0
        #: The next busy turn polls (another thread exists, a signal came,
        #: the first turn of a run).  Set from a signal handler, so only
        #: ever cleared right *before* a poll (see _poll).
        self._poll_next = True
        #: Counts batches (turns that ran something): the blocking
        #: detector's watchdog and the metrics read it.
        self._batch_serial = 0
        # Step 4: functions to run once at the end of the current batch.
        self._batch_end: list[Callable[[], object]] = []
        # Idle waiters: (cushion, seq, callback), smallest cushion first.
        self._idle_waiters: list[tuple[float, int, Callable[[], object]]] = []
        self._idle_seq = 0
        # True while the loop may be blocked in the backend: a thread that
        # adds work must then wake it through the pipe.
        self._waiting = False
        self._wake_r = -1
        self._wake_w = -1
        self._internal_fds = 0
        self._make_self_pipe()
        self._layers_init()

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} running={self.is_running()} "
                f"closed={self.is_closed()} debug={self.get_debug()}>")

    # ------------------------------------------------------------------
    # the wake-up pipe
    # ------------------------------------------------------------------

    def _make_self_pipe(self) -> None:
        r, w = os.pipe()
        os.set_blocking(r, False)
        os.set_blocking(w, False)
        self._wake_r, self._wake_w = r, w
        self._internal_fds += 1
        self._add_reader(r, self._read_from_self)

    def _close_self_pipe(self) -> None:
        if self._wake_r < 0:
            return
        self._remove_reader(self._wake_r)
        os.close(self._wake_r)
        os.close(self._wake_w)
        self._wake_r = self._wake_w = -1
        self._internal_fds -= 1

    def _write_to_self(self) -> None:
        """Wake the loop if it is blocked in its poller (any thread)."""
        fd = self._wake_w
        if fd < 0:
            return
        try:
            os.write(fd, b"\0")
        except OSError:
            # Full: a wake-up is already pending.  Closed: nothing to wake.
            pass

    def _read_from_self(self) -> None:
        while True:
            try:
                data = os.read(self._wake_r, 4096)
            except InterruptedError:
                continue
            except (BlockingIOError, OSError):
                return
            if not data:
                return
            self._process_self_data(data)
            if len(data) < 4096:
                return

    # ------------------------------------------------------------------
    # state checks
    # ------------------------------------------------------------------

    def _check_closed(self) -> None:
        if self._closed:
            raise RuntimeError("Event loop is closed")

    def _check_running(self) -> None:
        if self._thread_id is not None:
            raise RuntimeError("This event loop is already running")
        if _get_running_loop() is not None:
            raise RuntimeError(
                "Cannot run the event loop while another loop is running")

    def _check_thread(self) -> None:
        """In debug mode, non-thread-safe methods must be called from the
        thread running the loop."""
        if self._thread_id is None:
            return
        if threading.get_ident() != self._thread_id:
            raise RuntimeError(
                "Non-thread-safe operation invoked on an event loop other "
                "than the current one")

    def _check_callback(self, callback: Any, method: str) -> None:
        """Debug mode only, as on asyncio: otherwise a non-callable is
        accepted and fails when it runs, reported to the exception handler
        (programs and their tests rely on scheduling one: sanic's pass a
        Task to call_later())."""
        if _compat.iscoroutine(callback) or _compat.iscoroutinefunction(callback):
            raise TypeError(f"coroutines cannot be used with {method}()")
        if not callable(callback):
            raise TypeError(
                f"a callable object was expected by {method}(), got {callback!r}")

    def is_running(self) -> bool:
        return self._thread_id is not None

    def is_closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------
    # scheduling callbacks
    # ------------------------------------------------------------------

    def time(self) -> float:
        return self._time()

    def _now(self) -> float:
        """``self.time()``: what asyncio reads for deadlines and due timers,
        so a time() replaced on the class or the instance (tests patch it to
        steer timers) is what counts.  Compiled, ``self.time()`` on a loop
        of an interpreted subclass (every real loop) is a Python-level call
        of several hundred instructions, made a few times per request by a
        server with timers; while time() is the kernel's this reads the
        clock directly."""
        if self._time_direct:
            own = self._instance_dict
            if own is None or "time" not in own:
                return _monotonic()
        return self.time()

    def _look_for_overrides(self) -> bool:
        """At each start of run_forever(): note the instance's __dict__ and
        whether the class overrides time(); return whether it keeps the
        kernel's _run_once() (replacements on the instance are looked for
        at each use)."""
        self._instance_dict = _compat.instance_dict(self)
        cls = type(self)
        self._time_direct = self._clock is None and cls.time is KernelLoop.time
        return cls._run_once is KernelLoop._run_once

    # The handle types are treadle's, not subclasses of asyncio's (see
    # handles.py), hence the override ignores against typeshed below.
    def call_soon(self, callback: Callable[..., object], *args: Any,  # type: ignore[override]
                  context: Any = None) -> Handle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if type(callback) is Wakeup:
            # A future waking the task that awaits it: queue the task itself
            # (it knows its waiter and its context).  No Handle is needed;
            # the future that calls us ignores what we return.
            task = callback.task
            if args and task._fut_waiter is args[0] and task._ready is not None:
                self._kernel_ready_append(task)
                return self._wakeup_handle
        if self._debug:
            self._check_callback(callback, "call_soon")
            self._check_thread()
        handle = Handle(callback, args, self, context)
        self._kernel_ready_append(handle)
        return handle

    def call_soon_threadsafe(self, callback: Callable[..., object],  # type: ignore[override]
                             *args: Any, context: Any = None) -> Any:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        if self._debug:
            self._check_callback(callback, "call_soon_threadsafe")
        handle: Any
        if _ThreadSafeHandle is not None:
            # 3.14+: asyncio's own thread-safe handle, whose cancel() from
            # another thread waits for a callback that is running (a lock
            # per handle; the threads that call this pay a thread switch
            # anyway).  Before 3.14 asyncio hands out plain handles.
            handle = _ThreadSafeHandle(callback, args, self, context)
            if handle._source_traceback:
                # Where the caller scheduled it, not asyncio's constructor.
                handle._source_traceback = _format.caller_stack()
        else:
            handle = Handle(callback, args, self, context)
        self._ready.append(handle)
        # Only a loop that may be blocked needs the pipe (see _run_once for
        # why reading the flag after appending is race-free under the GIL).
        if self._waiting:
            self._write_to_self()
        return handle

    def call_later(self, delay: Any, callback: Callable[..., object],  # type: ignore[override]
                   *args: Any, context: Any = None) -> TimerHandle:
        if delay is None:
            raise TypeError("delay must not be None")
        if delay != delay:
            raise ValueError("delay must not be NaN")
        # self.time() (_now), not self._time(): as on asyncio, a time()
        # replaced on the instance (tests patch it to steer timers) counts.
        if self._call_at_overridden:
            # As asyncio's call_later does, through call_at: a subclass that
            # overrides it (to track or steer timers) sees these too.
            over: TimerHandle = self.call_at(KernelLoop._now(self) + delay, callback, *args,
                                             context=context)
            return over
        timer = KernelLoop._call_at(self, KernelLoop._now(self) + delay, callback, args, context)
        return timer

    def call_at(self, when: Any, callback: Callable[..., object],  # type: ignore[override]
                *args: Any, context: Any = None) -> TimerHandle:
        if when is None:
            raise TypeError("when cannot be None")
        if when != when:
            raise ValueError("when must not be NaN")
        timer = KernelLoop._call_at(self, when, callback, args, context)
        return timer

    # Public signatures take Any where asyncio accepts anything and checks
    # itself: compiled, a typed parameter would be rejected by the native
    # wrapper with its own message before asyncio's checks could run.
    def _call_at(self, when: Any, callback: Callable[..., object],
                 args: tuple[Any, ...], context: Any) -> TimerHandle:
        if self._closed:
            raise RuntimeError("Event loop is closed")
        given = when
        if type(when) is not float:
            when = _timer_time(when)
        if self._debug:
            self._check_callback(callback, "call_at")
            self._check_thread()
        timer = TimerHandle(when, callback, args, self, context)
        if given is not when:
            timer._given = given        # when() answers with it (see TimerHandle)
        self._timers.push(timer)
        return timer

    def _timer_handle_cancelled(self, handle: TimerHandle) -> None:
        self._timers.cancelled(handle)

    @property
    def _scheduled(self) -> list[TimerHandle]:
        """asyncio's private name for its timer heap, which test helpers
        walk to fire timers early (zeroconf's ``time_changed_millis``, Home
        Assistant's ``async_fire_time_changed``: ``list(loop._scheduled)``,
        then ``_run()`` and ``cancel()`` on the handles that are due).  The
        scheduled handles, cancelled ones included, in heap order, as
        asyncio's list holds them; a copy, so it cannot be changed."""
        return self._timers.entries()

    # ------------------------------------------------------------------
    # running
    # ------------------------------------------------------------------

    def run_forever(self) -> None:
        self._run_forever_setup()
        try:
            # A turn is a direct native call while _run_once() is the
            # kernel's: asyncio's loop calls self._run_once() each turn, and
            # code may replace it on the class or, at any time, on the
            # instance (treadle bench counts turns so).
            direct = KernelLoop._look_for_overrides(self)
            own = self._instance_dict
            while True:
                if direct and (own is None or "_run_once" not in own):
                    KernelLoop._run_once(self)
                else:
                    self._run_once()
                if self._stopping:
                    break
        finally:
            self._run_forever_cleanup()

    def _run_forever_setup(self) -> None:
        self._check_closed()
        self._check_running()
        self._set_coroutine_origin_tracking(self._debug)
        self._old_agen_hooks = sys.get_asyncgen_hooks()
        self._thread_id = threading.get_ident()
        sys.set_asyncgen_hooks(firstiter=self._asyncgen_firstiter_hook,
                               finalizer=self._asyncgen_finalizer_hook)
        _set_running_loop(self)
        # The first turn always polls, so I/O that is already pending is
        # seen before the first batch, as on asyncio.
        self._poll_next = True
        self._layers_run_started()

    def _run_forever_cleanup(self) -> None:
        try:
            self._layers_run_ending()
        finally:
            self._stopping = False
            # Left set if the batch raised.  Store first, release after (header).
            previous = self._running_item
            self._running_item = None
            if previous is None:
                pass
            self._thread_id = None
            _set_running_loop(None)
            self._set_coroutine_origin_tracking(False)
            if self._old_agen_hooks is not None:
                sys.set_asyncgen_hooks(*self._old_agen_hooks)
                self._old_agen_hooks = None

    def run_until_complete(self, future: Any) -> Any:
        self._check_closed()
        self._check_running()
        new_task = not asyncio.isfuture(future)
        future = asyncio.ensure_future(future, loop=self)
        if new_task:
            # The caller never sees this task: if it does not finish, the
            # RuntimeError below says so; no "destroyed pending" log.
            future._log_destroy_pending = False
        future.add_done_callback(_run_until_complete_cb)
        try:
            self.run_forever()
        except BaseException:
            if new_task and future.done() and not future.cancelled():
                # Consume the exception: the caller cannot reach the task.
                future.exception()
            raise
        finally:
            future.remove_done_callback(_run_until_complete_cb)
        if not future.done():
            raise RuntimeError("Event loop stopped before Future completed.")
        return future.result()

    def stop(self) -> None:
        self._stopping = True

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self._closed:
            return
        self._layers_close()
        if self._debug:
            _compat.log(logging.DEBUG, "Close %r", self)
        self._closed = True
        self._ready.clear()
        self._timers.clear()
        self._executor_shutdown_called = True
        executor = self._default_executor
        if executor is not None:
            self._default_executor = None
            executor.shutdown(wait=False)
        self._close_self_pipe()
        self._readers.clear()
        self._writers.clear()
        self._fd_objects.clear()
        self._backend.close()
        # A closed loop is freed by reference counting alone, as asyncio's
        # is: what it holds lets go of it (mixins do the same for theirs).
        self._wakeup_handle._detach()
        # (Interpreted, the instance's __dict__ holds this reference to
        # itself.)
        self._instance_dict = None
        self._layers_closed()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            _compat.warn(f"unclosed event loop {self!r}", ResourceWarning, source=self)
            if not self.is_running():
                self.close()

    def _run_once(self) -> None:
        """One turn: poll I/O, move due timers, run the batch (see the
        module docstring for why each step is what it is)."""
        ready = self._ready
        timers = self._timers
        # -- 1. I/O --------------------------------------------------------
        if ready or self._stopping:
            # Watching users' fds, or sharing the process with another
            # thread: every turn, as asyncio (delivering I/O turns later
            # changes the order programs observe; the poll releases the
            # GIL).  Otherwise only when a signal came, or a thread was
            # started (looked for every POLL_EVERY callbacks).
            if (len(self._readers) + len(self._writers) > self._internal_fds
                    or self._poll_next or self._stopping):
                KernelLoop._poll(self, 0.0)
            elif self._since_poll >= POLL_EVERY:
                KernelLoop._look_for_threads(self)
                if self._poll_next:
                    KernelLoop._poll(self, 0.0)
        else:
            # Publish "may block" *before* looking at the ready queue: a
            # thread appending after our look then sees the flag and writes
            # to the pipe; one appending before it is seen by the look.
            self._waiting = True
            deadline = timers.next_deadline()
            if ready:
                timeout: float | None = 0.0
            elif deadline is None:
                timeout = None
            elif self._clock is None:
                timeout = deadline - KernelLoop._now(self)
                if timeout < 0.0:
                    timeout = 0.0
                elif timeout > MAX_POLL_TIMEOUT:
                    timeout = MAX_POLL_TIMEOUT
            else:
                timeout = self._clock.sleep_time(deadline)
            idle_waiters = self._idle_waiters
            # (at equal waits the idle waiter goes first: trio's rule)
            if idle_waiters and (timeout is None or idle_waiters[0][0] <= timeout):
                timeout = idle_waiters[0][0]
                waking_idle = True
            else:
                waking_idle = False
            had_events = KernelLoop._poll(self, timeout)
            if not had_events and not ready:
                if waking_idle:
                    KernelLoop._wake_idle_waiters(self)
                elif self._clock is not None:
                    self._clock.idle(deadline)
        # -- 2. timers -----------------------------------------------------
        if timers._heap:
            # Through self.time() as asyncio does, so that a time() patched
            # on the instance decides which timers are due.
            timers.pop_due(KernelLoop._now(self) + self._clock_resolution, ready)
        # -- 3. the batch --------------------------------------------------
        n = len(ready)
        if not n:
            return
        self._since_poll += n
        self._batch_serial += 1
        if self._slow:
            KernelLoop._run_batch_slow(self, n)
        else:
            popleft = self._ready_popleft
            item: Any = None
            while n:
                n -= 1
                previous = item
                item = popleft()
                self._running_item = item
                if previous is item:    # store first, release after (header)
                    pass
                # Uncompiled, the local would keep the item that ran last
                # alive while this one runs (a task freed only then reports
                # its unretrieved exception one item late).
                previous = None
                # (type(item) is TaskCore, not isinstance(): interpreted,
                # a failed isinstance() on a Handle asks its __class__,
                # a property: see handles.py)
                if type(item) is TaskCore:
                    TaskCore._run(item)
                elif isinstance(item, Handle):
                    Handle._run(item)
                elif not item._cancelled:       # one of asyncio's handles
                    item._run()
            self._running_item = None
            if item is None:            # store first, release after (header)
                pass
            # No frame may keep a task alive (see Task._run).
            item = previous = None
        # -- 4. end of batch -------------------------------------------------
        if self._batch_end:
            KernelLoop._run_batch_end(self)

    def _items_run(self) -> int:
        """Callbacks and task steps run so far (any thread: an inconsistent
        pair of reads, across a poll, is read again)."""
        while True:
            polled = self._items_polled
            count = polled + self._since_poll
            if self._items_polled == polled:
                return count

    def _call_at_batch_end(self, fn: Callable[[], object]) -> None:
        """Run *fn()* once, after the current batch and before the loop can
        block (the caller makes sure not to register the same work twice)."""
        self._batch_end.append(fn)

    def _run_batch_end(self) -> None:
        # Until none is left: a flush may make another transport's callback
        # write, and that must not wait for a later batch either.
        while self._batch_end:
            pending = self._batch_end
            self._batch_end = []
            for fn in pending:
                try:
                    fn()
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self.call_exception_handler({
                        "message": f"Exception in end-of-batch callback {fn!r}",
                        "exception": exc,
                    })

    def _add_idle_waiter(self, cushion: float,
                         callback: Callable[[], object]) -> tuple[float, int, Callable[[], object]]:
        """Call *callback* (through the ready queue) once the loop has been
        idle - nothing ready, no I/O - for *cushion* real seconds.  Returns a
        key for ``_remove_idle_waiter``."""
        self._idle_seq += 1
        entry = (max(0.0, cushion), self._idle_seq, callback)
        heapq.heappush(self._idle_waiters, entry)
        return entry

    def _remove_idle_waiter(self, entry: tuple[float, int, Callable[[], object]]) -> None:
        try:
            self._idle_waiters.remove(entry)
        except ValueError:
            return
        heapq.heapify(self._idle_waiters)

    def _wake_idle_waiters(self) -> None:
        """Wake the waiters with the smallest cushion (trio's rule: the
        others keep waiting, since waking these makes the loop busy)."""
        waiters = self._idle_waiters
        cushion = waiters[0][0]
        while waiters and waiters[0][0] == cushion:
            _, _, callback = heapq.heappop(waiters)
            self.call_soon(callback)

    def _look_for_threads(self) -> None:
        """After a poll, and every POLL_EVERY callbacks of a busy loop that
        does not poll: bank the items count (items run stay _items_polled +
        _since_poll) and, if a thread other than treadle's own exists, poll
        on the next busy turn (it may be waiting for the GIL, which the poll
        releases: step 1)."""
        self._items_polled += self._since_poll
        self._since_poll = 0
        if _other_threads() > OWN_THREADS[0]:
            self._poll_next = True

    def _poll(self, timeout: float | None) -> bool:
        hooks = self._hooks
        if hooks is not None:
            self._call_hooks("before_io_wait", timeout)
        # Cleared before the poll, never after it: a signal handler that
        # runs from here on sets it again (its byte may have reached the
        # pipe only after the poll looked).
        self._poll_next = False
        if timeout != 0.0:
            # A wait that may block: timed for the I/O-wait counter.
            t0 = _perf_counter()
            try:
                events = self._backend.poll(timeout)
            finally:
                self._waiting = False
            dt = _perf_counter() - t0
            self._io_wait_time += dt
            if self._debug and dt >= 1.0:
                _compat.log(
                    logging.INFO if timeout is None or dt >= timeout else logging.DEBUG,
                    "poll %s took %.3f ms: %s events",
                    "forever" if timeout is None else f"{timeout * 1e3:.3f} ms",
                    dt * 1e3, len(events))
        else:
            try:
                events = self._backend.poll(timeout)
            finally:
                self._waiting = False
        KernelLoop._look_for_threads(self)
        if hooks is not None:
            self._call_hooks("after_io_wait", timeout)
        if not events:
            return False
        ready = self._ready
        readers = self._readers
        writers = self._writers
        for fd, mask in events:
            if mask & ~WRITABLE:
                handle = readers.get(fd)
                if handle is not None:
                    ready.append(handle)
            if mask & ~READABLE:
                handle = writers.get(fd)
                if handle is not None:
                    ready.append(handle)
        return True

    def _run_batch_slow(self, n: int) -> None:
        """The batch with a seam or debug mode active."""
        ready = self._ready
        if self._ready_order is not None:
            batch = [ready.popleft() for _ in range(n)]
            batch = self._ready_order(batch)
        else:
            batch = None
        debug = self._debug
        i = 0
        item: Any = None
        try:
            while i < n:
                previous = item
                item = batch[i] if batch is not None else ready.popleft()
                i += 1
                self._running_item = item
                if previous is item:    # store first, release after (header)
                    pass
                # Uncompiled, the local would keep the item that ran last
                # alive while this one runs (a task freed only then reports
                # its unretrieved exception one item late).
                previous = None
                try:
                    KernelLoop._run_one_slow(self, item, debug)
                except BaseException:
                    if batch is not None:
                        # Unrun items keep their place at the front.
                        ready.extendleft(reversed(batch[i:]))
                    raise
        finally:
            self._running_item = None
            if item is None:            # store first, release after (header)
                pass
            # No frame may outlive its call holding a task (see Task._run).
            item = previous = batch = None

    def _run_one_slow(self, item: Any, debug: bool) -> None:
        if not isinstance(item, TaskCore) and item._cancelled:
            return
        hooks = self._hooks
        if hooks is not None:
            # Instruments see the Task users hold, never the kernel's core.
            step = isinstance(item, TaskCore)
            task = item._task if step else None
            self._call_hooks("before_task_step" if step else "before_callback",
                             task if step else item)
        try:
            if debug:
                self._current_handle = item
                t0 = _perf_counter()
                try:
                    item._run()
                finally:
                    self._current_handle = None
                dt = _perf_counter() - t0
                if dt >= self.slow_callback_duration:
                    _compat.log(
                        logging.WARNING, "Executing %s took %.3f seconds",
                        repr(item) if isinstance(item, TaskCore) else _format.handle_label(item),
                        dt)
            else:
                item._run()
        finally:
            if hooks is not None:
                self._call_hooks("after_task_step" if step else "after_callback",
                                 task if step else item)
            item = task = None

    # ------------------------------------------------------------------
    # seams
    # ------------------------------------------------------------------

    def add_instrument(self, instrument: object) -> None:
        """Call *instrument*'s hook methods from now on (see
        ``treadle._kernel.seams`` for the hooks and when they run)."""
        if instrument in self._instruments:
            return
        self._instruments.append(instrument)
        self._rebuild_hooks()

    def remove_instrument(self, instrument: object) -> None:
        """Stop calling *instrument*.  ``KeyError`` if it was not added."""
        try:
            self._instruments.remove(instrument)
        except ValueError:
            raise KeyError(instrument) from None
        self._rebuild_hooks()

    def _rebuild_hooks(self) -> None:
        hooks: dict[str, list[Callable[..., object]]] = {}
        for instrument in self._instruments:
            for name, fn in hooks_of(instrument).items():
                hooks.setdefault(name, []).append(fn)
        self._hooks = hooks if self._instruments else None
        self._update_slow()

    def _call_hooks(self, name: str, *args: Any) -> None:
        hooks = self._hooks
        if hooks is None:
            return
        for fn in hooks.get(name, ()):
            try:
                fn(*args)
            except Exception as exc:
                owner = getattr(fn, "__self__", None)
                if owner in self._instruments:
                    self._instruments.remove(owner)
                    self._rebuild_hooks()
                self.call_exception_handler({
                    "message": f"Instrument {owner!r} raised in {name}(); "
                               f"it has been removed",
                    "exception": exc,
                })

    def set_ready_order(self, order: ReadyOrder | None) -> None:
        """Run each turn's batch in the order *order(batch)* returns
        (None: first in, first out)."""
        self._ready_order = order
        self._update_slow()

    def get_ready_order(self) -> ReadyOrder | None:
        return self._ready_order

    def get_clock(self) -> Clock | None:
        """The clock this loop reads (None: ``time.monotonic``)."""
        return self._clock

    def _update_slow(self) -> None:
        self._slow = bool(self._debug or self._hooks is not None
                          or self._ready_order is not None)

    # ------------------------------------------------------------------
    # futures and tasks
    # ------------------------------------------------------------------

    def create_future(self) -> asyncio.Future[Any]:
        return _Future(loop=self)

    def create_task(self, coro: Any, *, name: Any = _UNSET, context: Any = _UNSET,
                    eager_start: Any = _UNSET, **kwargs: Any) -> Any:
        """Wrap *coro* in a task.

        As on each Python's asyncio: from 3.14 a task factory receives
        exactly the keyword arguments given here, whatever they are; up to
        3.13 it receives *context* (when given) and the task is named
        afterwards.  *eager_start* (3.14's keyword) is accepted on every
        version: true runs the first step at once, false never does, and
        when it is not given the task factory decides."""
        if kwargs and not _PASS_ALL_KWARGS:
            # A signature error up to 3.13, raised before anything else.
            raise TypeError(f"create_task() got an unexpected keyword argument "
                            f"{next(iter(kwargs))!r}")
        if self._closed:
            raise RuntimeError("Event loop is closed")
        factory = self._task_factory
        task: Any
        if (factory is None or factory is _EAGER_FACTORY
                or factory is _PLAIN_FACTORY) and not kwargs:
            # No factory, or one of treadle's own, which would do exactly
            # this (here without its Python-level call, keyword for keyword).
            eager: Any = (factory is _EAGER_FACTORY if eager_start is _UNSET
                          else eager_start)
            ctx = None if context is _UNSET else context
            if factory is None or _PASS_ALL_KWARGS:
                return new_task(_TaskClass, coro, self,
                                None if name is _UNSET else name, ctx, eager)
            task = new_task(_TaskClass, coro, self, None, ctx, eager)
        elif factory is None:
            # Task's own constructor names the unexpected keyword.
            task = _TaskClass(coro, loop=self, **_given(name, context, eager_start),
                              **kwargs)
            return task
        elif _PASS_ALL_KWARGS:
            return factory(self, coro, **_given(name, context, eager_start), **kwargs)
        elif eager_start is not _UNSET:
            task = factory(self, coro, context=None if context is _UNSET else context,
                           eager_start=eager_start)
        elif context is _UNSET or context is None:
            task = factory(self, coro)
        else:
            task = factory(self, coro, context=context)
        if name is not _UNSET and name is not None:
            task.set_name(name)
        return task

    def set_task_factory(self, factory: Callable[..., Any] | None) -> None:
        if factory is not None and not callable(factory):
            raise TypeError("task factory must be a callable or None")
        self._task_factory = factory

    def get_task_factory(self) -> Callable[..., Any] | None:
        return self._task_factory

    # ------------------------------------------------------------------
    # file descriptors
    # ------------------------------------------------------------------

    def _add_reader(self, fd: Any, callback: Callable[..., object],
                    *args: Any, context: contextvars.Context | None = None) -> Handle:
        self._check_closed()
        fileobj = fd
        fd = fileobj_to_fd(fd)
        handle = Handle(callback, args, self, context)
        old = self._readers.get(fd)
        self._readers[fd] = handle
        if old is None:
            if fd in self._writers:
                self._backend.modify(fd, READABLE | WRITABLE)
            else:
                try:
                    self._backend.register(fd, READABLE)
                except BaseException:
                    del self._readers[fd]
                    raise
        else:
            old.cancel()
        self._remember_fileobj(fd, fileobj)
        return handle

    def _remove_reader(self, fd: Any) -> bool:
        if self._closed:
            return False
        fd = self._registered_fd(fd)
        handle = self._readers.pop(fd, None)
        if handle is None:
            return False
        if fd in self._writers:
            self._backend.modify(fd, WRITABLE)
        else:
            self._backend.unregister(fd)
            self._fd_objects.pop(fd, None)
        handle.cancel()
        return True

    def _add_writer(self, fd: Any, callback: Callable[..., object],
                    *args: Any, context: contextvars.Context | None = None) -> Handle:
        self._check_closed()
        fileobj = fd
        fd = fileobj_to_fd(fd)
        handle = Handle(callback, args, self, context)
        old = self._writers.get(fd)
        self._writers[fd] = handle
        if old is None:
            if fd in self._readers:
                self._backend.modify(fd, READABLE | WRITABLE)
            else:
                try:
                    self._backend.register(fd, WRITABLE)
                except BaseException:
                    del self._writers[fd]
                    raise
        else:
            old.cancel()
        self._remember_fileobj(fd, fileobj)
        return handle

    def _remove_writer(self, fd: Any) -> bool:
        if self._closed:
            return False
        fd = self._registered_fd(fd)
        handle = self._writers.pop(fd, None)
        if handle is None:
            return False
        if fd in self._readers:
            self._backend.modify(fd, READABLE)
        else:
            self._backend.unregister(fd)
            self._fd_objects.pop(fd, None)
        handle.cancel()
        return True

    def _remember_fileobj(self, fd: int, fileobj: Any) -> None:
        if isinstance(fileobj, int):
            self._fd_objects.pop(fd, None)
        else:
            self._fd_objects[fd] = fileobj

    def _registered_fd(self, fileobj: Any) -> int:
        """The fd *fileobj* is watched under.  A closed socket's fileno()
        is -1: it is then looked up by identity among the objects that
        were added, as asyncio's selector does, and ValueError is raised
        only if it was never added."""
        try:
            return fileobj_to_fd(fileobj)
        except ValueError:
            for fd, obj in self._fd_objects.items():
                if obj is fileobj:
                    return fd
            raise

    def add_reader(self, fd: Any, callback: Callable[..., object],  # type: ignore[override]
                   *args: Any) -> None:
        self._check_fd_free(fd)
        self._add_reader(fd, callback, *args)

    def remove_reader(self, fd: Any) -> bool:
        self._check_fd_free(fd)
        return self._remove_reader(fd)

    def add_writer(self, fd: Any, callback: Callable[..., object],  # type: ignore[override]
                   *args: Any) -> None:
        self._check_fd_free(fd)
        self._add_writer(fd, callback, *args)

    def remove_writer(self, fd: Any) -> bool:
        self._check_fd_free(fd)
        return self._remove_writer(fd)

    # ------------------------------------------------------------------
    # executors
    # ------------------------------------------------------------------

    def run_in_executor(self, executor: Any, func: Callable[..., Any],  # type: ignore[override]
                        *args: Any) -> asyncio.Future[Any]:
        self._check_closed()
        if self._debug:
            self._check_callback(func, "run_in_executor")
        if executor is None:
            executor = self._default_executor
            if self._executor_shutdown_called:
                raise RuntimeError("Executor shutdown has been called")
            if executor is None:
                executor = concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix="asyncio")
                self._default_executor = executor
        return asyncio.wrap_future(executor.submit(func, *args), loop=self)

    def set_default_executor(self, executor: Any) -> None:
        if not isinstance(executor, concurrent.futures.ThreadPoolExecutor):
            raise TypeError("executor must be ThreadPoolExecutor instance")
        self._default_executor = executor

    def _do_shutdown(self, future: asyncio.Future[Any]) -> None:
        try:
            assert self._default_executor is not None
            self._default_executor.shutdown(wait=True)
            if not self.is_closed():
                self.call_soon_threadsafe(set_result_unless_cancelled, future, None)
        except Exception as ex:
            if not self.is_closed() and not future.cancelled():
                self.call_soon_threadsafe(future.set_exception, ex)

    # ------------------------------------------------------------------
    # async generators
    # ------------------------------------------------------------------

    def _asyncgen_finalizer_hook(self, agen: Any) -> None:
        self._asyncgens.discard(agen)
        if not self.is_closed():
            self.call_soon_threadsafe(self.create_task, agen.aclose())

    def _asyncgen_firstiter_hook(self, agen: Any) -> None:
        if self._asyncgens_shutdown_called:
            _compat.warn(
                f"asynchronous generator {agen!r} was scheduled after "
                f"loop.shutdown_asyncgens() call",
                ResourceWarning, source=self)
        self._asyncgens.add(agen)

    # ------------------------------------------------------------------
    # errors and debug mode
    # ------------------------------------------------------------------

    def get_exception_handler(self) -> Callable[[Any, dict[str, Any]], object] | None:
        return self._exception_handler

    def set_exception_handler(
            self, handler: Callable[[Any, dict[str, Any]], object] | None) -> None:
        if handler is not None and not callable(handler):
            raise TypeError(f"A callable object or None is expected, got {handler!r}")
        self._exception_handler = handler

    # The context is Any, not dict: asyncio takes whatever it is given (and
    # fails on it as below), and a typed parameter of a compiled method
    # would be refused with the compiler's own message instead.
    def default_exception_handler(self, context: Any) -> None:
        message = context.get("message")
        if not message:
            message = "Unhandled exception in event loop"
        exception = context.get("exception")
        exc_info: Any
        if exception is not None:
            exc_info = (type(exception), exception, exception.__traceback__)
        else:
            exc_info = False
        current = self._current_handle
        if ("source_traceback" not in context and current is not None
                and getattr(current, "_source_traceback", None)):
            context["handle_traceback"] = current._source_traceback
        lines = [message]
        for key in sorted(context):
            if key in {"message", "exception"}:
                continue
            value = context[key]
            if key == "source_traceback":
                tb = "".join(traceback.format_list(value))
                text = "Object created at (most recent call last):\n" + tb.rstrip()
            elif key == "handle_traceback":
                tb = "".join(traceback.format_list(value))
                text = "Handle created at (most recent call last):\n" + tb.rstrip()
            else:
                text = repr(value)
            lines.append(f"{key}: {text}")
        _compat.default_exception_handler("\n".join(lines), exc_info)

    def call_exception_handler(self, context: Any) -> None:
        if self._exception_handler is None:
            try:
                self.default_exception_handler(context)
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                _compat.log(logging.ERROR, "Exception in default exception handler",
                            exc_info=True)
            return
        try:
            ctx = None
            if not _compat.PY312:
                # 3.11's asyncio calls the handler as it is, in the
                # caller's context, with whatever context it was given.
                self._exception_handler(self, context)
                return
            thing = context.get("task")
            if thing is None:
                thing = context.get("future")
            if thing is None:
                thing = context.get("handle")
            if thing is not None and hasattr(thing, "get_context"):
                ctx = thing.get_context()
            if ctx is not None and hasattr(ctx, "run"):
                ctx.run(self._exception_handler, self, context)
            else:
                self._exception_handler(self, context)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            try:
                self.default_exception_handler({
                    "message": "Unhandled error in exception handler",
                    "exception": exc,
                    "context": context,
                })
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException:
                _compat.log(logging.ERROR, "Exception in default exception handler "
                            "while handling an unexpected error in custom "
                            "exception handler", exc_info=True)

    def get_debug(self) -> Any:
        # What set_debug() was given, as asyncio returns it; _debug is its
        # truth value, for the kernel's checks.
        return self._debug_setting

    def set_debug(self, enabled: Any) -> None:
        self._debug_setting = enabled
        self._debug = bool(enabled)
        self._update_slow()
        if self.is_running():
            self.call_soon_threadsafe(self._set_coroutine_origin_tracking, self._debug)

    def _set_coroutine_origin_tracking(self, enabled: bool) -> None:
        if bool(enabled) == bool(self._coroutine_origin_tracking_enabled):
            return
        if enabled:
            self._coroutine_origin_tracking_saved_depth = (
                sys.get_coroutine_origin_tracking_depth())
            sys.set_coroutine_origin_tracking_depth(_format.DEBUG_STACK_DEPTH)
        else:
            sys.set_coroutine_origin_tracking_depth(
                self._coroutine_origin_tracking_saved_depth or 0)
        self._coroutine_origin_tracking_enabled = enabled


def _no_op() -> None:
    pass


def _timer_time(when: Any) -> float:
    """*when* (not a float) as a timer's time.  asyncio keeps any object
    and fails on its next turn, for good, if it is not a real number; a
    real number of another type (int, Fraction, numpy's floats) works as
    its float does.  (NaN is refused by call_at/call_later themselves.)"""
    if isinstance(when, numbers.Real):
        return float(when)
    raise TypeError(f"when must be a real number, not {type(when).__name__!r}")


#: 3.14+: create_task() hands every keyword argument to the task factory.
_PASS_ALL_KWARGS: Final = _compat.PY314


def _given(name: Any, context: Any, eager_start: Any) -> dict[str, Any]:
    given: dict[str, Any] = {}
    if name is not _UNSET:
        given["name"] = name
    if context is not _UNSET:
        given["context"] = context
    if eager_start is not _UNSET:
        given["eager_start"] = eager_start
    return given


def set_result_unless_cancelled(fut: asyncio.Future[Any], result: Any) -> None:
    if not fut.cancelled():
        fut.set_result(result)

