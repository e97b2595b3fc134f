"""Unix signal handlers run by the loop.

Owns: ``add_signal_handler``/``remove_signal_handler`` and the process-wide
signal state they change (the Python-level handler of each signal, the
signal wakeup fd).
Never: runs a handler from inside the Python-level signal handler (which
only tells the loop to poll soon: the handler runs in the loop), and never
touches a signal it was not asked to handle.

How a signal reaches its callback: Python's C-level handler writes the
signal number as one byte to the fd given to ``signal.set_wakeup_fd``,
which is the write end of the kernel's wake-up pipe.  The kernel reads the
pipe as any other reader and hands non-zero bytes to
``_process_self_data``, which queues the registered Handle.  The
Python-level handler only sets the kernel's ``_poll_next``: a busy loop
that watches no fd of its users does not poll otherwise (the kernel's step
1), and the byte would wait in the pipe.  So a callback always runs in the
loop, between callbacks, never inside whatever code the signal interrupted;
and a burst of N signals (N bytes) runs the callback N times.

Rules:

1. Only the main thread may add handlers (``set_wakeup_fd`` enforces it;
   its ``ValueError`` becomes asyncio's ``RuntimeError``).
2. Removing the last handler of a signal restores the Python handler that
   was installed before treadle's first one (asyncio restores SIG_DFL, or
   ``default_int_handler`` for SIGINT, whatever was there before; restoring
   the previous one is the documented improvement).  Removing the last
   handler of all restores the previous wakeup fd, unless someone else has
   set one since (another loop's: it stays).  ``close()`` removes all.
3. Bad arguments fail at the call, with asyncio's types: ``TypeError`` for
   a signal that is not an int, a coroutine (function) or, unlike asyncio,
   which only fails when the signal arrives, any non-callable; ``ValueError``
   for a number that is not a signal; ``RuntimeError`` for a signal that
   cannot be caught (SIGKILL, SIGSTOP), a closed loop, or a thread other
   than the main one.
4. While a loop runs in the main thread, the signal wakeup fd is its
   wake-up pipe, handlers or not (unless another owner set one: it stays
   theirs), and is given back when it stops.  Python runs a Python-level
   handler (asyncio.Runner's SIGINT handler, say) only when the interpreter
   next executes bytecode; compiled code that is about to block in the
   poller executes none, so a signal that lands just before the wait would
   go unhandled until the wait ends, which may be never.  With the wakeup
   fd, the signal's byte ends the wait, and the loop hands it to
   ``_process_self_data`` below, an interpreted function: entering it runs
   the pending handlers.
"""

from __future__ import annotations

import errno
import signal
import sys
import threading
import warnings
import weakref
from typing import Any, Callable

from .._kernel import _compat
from .._kernel.handles import Handle
from .._kernel.layers import Layer
from .._kernel.loop import KernelLoop


def _python_level_handler(loop: KernelLoop) -> Callable[[int, Any], None]:
    """The Python-level handler of the signals *loop* handles: the real work
    happens in the loop, at its next poll, which this asks for.  (Through a
    weak reference: the signal module keeps the handler, and a loop that is
    dropped without being closed must still be freed.)"""
    ref = weakref.ref(loop)

    def poll_soon(signum: int, frame: Any) -> None:
        target = ref()
        if target is not None:
            target._poll_next = True

    return poll_soon


class SignalMixin(Layer):
    """Adds Unix signal handling to the kernel loop."""

    def _layers_init(self) -> None:
        super()._layers_init()
        self._signal_handlers: dict[int, Handle] = {}
        self._signal_previous: dict[int, Any] = {}
        self._previous_wakeup_fd: int | None = None
        #: The wakeup fd is ours for the length of a run (rule 4).
        self._wakeup_fd_borrowed = False
        self._python_handler = _python_level_handler(self)

    def _check_signal(self, sig: Any) -> None:
        if not isinstance(sig, int):
            raise TypeError(f"sig must be an int, not {sig!r}")
        if sig not in signal.valid_signals():
            raise ValueError(f"invalid signal number {sig}")

    def add_signal_handler(self, sig: int,  # type: ignore[override]
                           callback: Callable[..., object], *args: Any) -> None:
        if _compat.iscoroutine(callback) or _compat.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        self._check_signal(sig)
        self._check_closed()
        if not callable(callback):
            # (asyncio's own checks first, in its order: rule 3)
            raise TypeError(f"a callable object was expected by "
                            f"add_signal_handler(), got {callback!r}")
        try:
            # Raises ValueError outside the main thread: calling it first
            # keeps a loop in another thread from half-installing a handler.
            old_fd = signal.set_wakeup_fd(self._wake_w)
        except (ValueError, OSError) as exc:
            raise RuntimeError(str(exc)) from None
        if self._previous_wakeup_fd is None:
            self._previous_wakeup_fd = old_fd if old_fd != self._wake_w else -1
        handle = Handle(callback, args, self, None)
        first = sig not in self._signal_handlers
        self._signal_handlers[sig] = handle
        try:
            previous = signal.signal(sig, self._python_handler)
            if first and sig not in self._signal_previous:
                self._signal_previous[sig] = previous
            # SA_RESTART: fewer EINTRs in code the signal interrupts.
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._restore_wakeup_fd()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise

    def remove_signal_handler(self, sig: int) -> bool:
        self._check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        previous = self._signal_previous.pop(sig, None)
        if previous is None:
            previous = (signal.default_int_handler if sig == signal.SIGINT
                        else signal.SIG_DFL)
        try:
            signal.signal(sig, previous)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        if not self._signal_handlers:
            self._restore_wakeup_fd()
        return True

    def _layers_run_started(self) -> None:
        super()._layers_run_started()
        if self._signal_handlers or self._wake_w < 0:
            return  # add_signal_handler has made it ours already
        try:
            old_fd = signal.set_wakeup_fd(self._wake_w)
        except (ValueError, OSError):
            return  # not the main thread (of the main interpreter)
        if old_fd not in (-1, self._wake_w):
            signal.set_wakeup_fd(old_fd)  # someone else's: it stays theirs
        else:
            self._wakeup_fd_borrowed = True

    def _layers_run_ending(self) -> None:
        try:
            if self._wakeup_fd_borrowed and not self._signal_handlers:
                self._give_back_wakeup_fd(-1)
            self._wakeup_fd_borrowed = False
        finally:
            super()._layers_run_ending()

    def _restore_wakeup_fd(self) -> None:
        fd = self._previous_wakeup_fd
        self._previous_wakeup_fd = None
        if fd in (None, -1) and self._thread_id == threading.main_thread().ident:
            self._wakeup_fd_borrowed = True
            return  # kept until the run ends (rule 4)
        self._give_back_wakeup_fd(fd)

    def _give_back_wakeup_fd(self, fd: int | None) -> None:
        try:
            current = signal.set_wakeup_fd(-1 if fd is None else fd)
            if current not in (self._wake_w, -1):
                # Another loop took the wakeup fd after us: it is its now.
                signal.set_wakeup_fd(current)
        except (ValueError, OSError) as exc:
            _compat.asyncio_logger().info("set_wakeup_fd(-1) failed: %s", exc)

    def _process_self_data(self, data: bytes) -> None:
        # Interpreted, so that calling it runs the Python-level handlers of
        # the signals that sent these bytes (rule 4).
        for signum in data:
            if signum:
                self._handle_signal(signum)

    def _handle_signal(self, sig: int) -> None:
        handle = self._signal_handlers.get(sig)
        if handle is None:
            return  # removed while the byte was in flight
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self._ready.append(handle)

    def _layers_close(self) -> None:
        if self._signal_handlers:
            if sys.is_finalizing():
                warnings.warn(
                    f"Closing the loop {self!r} on interpreter shutdown stage, "
                    f"skipping signal handlers removal",
                    ResourceWarning, source=self)
                self._signal_handlers.clear()
            else:
                for sig in list(self._signal_handlers):
                    self.remove_signal_handler(sig)
        super()._layers_close()
