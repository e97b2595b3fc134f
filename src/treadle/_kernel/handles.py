"""Handles: the objects ``call_soon``/``call_later``/``call_at`` return.

Owns: one scheduled callback, its arguments and the ``contextvars.Context``
it runs in; cancellation of that callback.
Never: touches the ready queue or the timer heap itself.  A cancelled
handle stays where it is and is skipped when reached; a cancelled timer
tells the loop (``_timer_handle_cancelled``) so the loop can count
tombstones and compact the heap when they pile up.  That is what makes
cancellation O(1).

The public surface is asyncio's: ``cancel()``, ``cancelled()``,
``get_context()``, ``when()`` for timers, and reprs of the same shape.
These are treadle's own classes, not subclasses of ``asyncio.Handle``: a
handle is allocated for every callback and must stay a small, compilable
object (a compiled class cannot subclass an interpreted one).  Yet
``isinstance(handle, asyncio.Handle)`` (and ``asyncio.TimerHandle`` for
timers) is true, as on asyncio's loop, since libraries and their tests
check it: when an object's type is not a subclass, ``isinstance()`` asks
the object's ``__class__``, and a handle answers with asyncio's class
there.  ``type(handle)`` is still the class defined here.  Compiled,
treadle's own ``isinstance()`` tests compare type pointers and never read
``__class__``; the interpreted kernel tells its ready items apart with
``type(item) is TaskCore`` for the same reason (``loop.py``).
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any, Callable, Final

from . import _format

_copy_context: Final = contextvars.copy_context
_ASYNCIO_HANDLE: Final = asyncio.Handle
_ASYNCIO_TIMER_HANDLE: Final = asyncio.TimerHandle


class Handle:
    """A callback scheduled on the loop."""

    __slots__ = ("_callback", "_args", "_cancelled", "_loop",
                 "_source_traceback", "_repr", "_context", "__weakref__")

    _callback: Any
    _args: Any
    _cancelled: bool
    _loop: Any
    _source_traceback: Any
    _repr: str | None
    _context: contextvars.Context

    def __init__(self, callback: Callable[..., object], args: tuple[Any, ...],
                 loop: Any, context: contextvars.Context | None = None) -> None:
        # One allocation besides the handle itself: the context copy that
        # asyncio's semantics require (the callback must see the context
        # as it was when it was scheduled).
        self._context = _copy_context() if context is None else context
        self._loop = loop
        self._callback = callback
        self._args = args
        self._cancelled = False
        self._repr = None
        if loop._debug:
            self._source_traceback = _format.caller_stack()
        else:
            self._source_traceback = None

    @property  # type: ignore[misc]
    def __class__(self) -> Any:
        """asyncio's class, for ``isinstance()`` (see the module docstring)."""
        return _ASYNCIO_HANDLE

    def _repr_info(self) -> list[str]:
        info = [type(self).__name__]
        if self._cancelled:
            info.append("cancelled")
        if self._callback is not None:
            info.append(_format.callback_source(
                self._callback, self._args,
                self._loop is not None and self._loop.get_debug()))
        if self._source_traceback:
            frame = self._source_traceback[-1]
            info.append(f"created at {frame[0]}:{frame[1]}")
        return info

    def __repr__(self) -> str:
        if self._repr is not None:
            return self._repr
        return "<" + " ".join(self._repr_info()) + ">"

    def get_context(self) -> contextvars.Context:
        return self._context

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            if self._loop._debug:
                # Keep the text: "Executing <Handle ...> took 2.5 seconds"
                # must still name the callback after it is dropped.
                self._repr = repr(self)
            # Store first, release after: observers read these from other
            # threads (see the header of loop.py).
            callback, args = self._callback, self._args
            self._callback = None
            self._args = None
            if callback is args:
                pass

    def cancelled(self) -> bool:
        return self._cancelled

    def _detach(self) -> None:
        """Never to run again (a closing loop's own handle): cancelled, and
        holding neither its callback nor its loop, so that no cycle through
        the loop is left for the cyclic GC."""
        self._cancelled = True
        self._callback = self._args = None
        self._loop = None

    def _run(self) -> None:
        if self._cancelled:
            return
        try:
            # Spelled out for the common arities: compiled, ``f(*args)``
            # builds a list and a tuple and goes through PyObject_Call
            # (about a thousand instructions per callback, measured with
            # callgrind), while a fixed call is one vectorcall.  No local
            # holds the arguments: a traceback can keep this frame alive
            # after cancel() dropped them (a future holding the error of
            # the callback that failed it would then outlive the error).
            if not self._args:
                self._context.run(self._callback)
            elif len(self._args) == 1:
                self._context.run(self._callback, self._args[0])
            else:
                self._context.run(self._callback, *self._args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._report(exc)
        finally:
            # A frame that was on the stack when a coroutine frame finished
            # outlives its call (it becomes that frame's f_back); it must
            # not keep the handle, and through it a task, alive.
            del self

    def _report(self, exc: BaseException) -> None:
        """The callback raised *exc*: tell the loop's exception handler."""
        cb = _format.callback_source(self._callback, self._args, self._loop.get_debug())
        context: dict[str, Any] = {
            "message": f"Exception in callback {cb}",
            "exception": exc,
            "handle": self,
        }
        if self._source_traceback:
            context["source_traceback"] = self._source_traceback
        self._loop.call_exception_handler(context)


class TimerHandle(Handle):
    """A callback scheduled for a point on the loop's clock.

    ``_deadline`` is that point as a float, what the timer queue orders by.
    ``when()`` (and ``_when``, which code outside reads too) answers with
    what ``call_at`` was given, as asyncio's does: ``call_at(5, f).when()``
    is ``5``, not ``5.0``.  ``_given`` holds it only when it is not that
    float, so the common timer stores no second object."""

    __slots__ = ("_scheduled", "_deadline", "_given", "_seq")

    _scheduled: bool
    _deadline: float
    _given: Any
    #: Set by the timer queue when scheduled: ties on ``_deadline`` fire in
    #: ``_seq`` order (see ``timers.py``).
    _seq: int

    def __init__(self, when: float, callback: Callable[..., object],
                 args: tuple[Any, ...], loop: Any,
                 context: contextvars.Context | None = None) -> None:
        super().__init__(callback, args, loop, context)
        self._deadline = when
        self._given = None
        self._scheduled = False
        self._seq = 0

    @property  # type: ignore[misc]
    def __class__(self) -> Any:
        """asyncio's class, for ``isinstance()`` (see the module docstring)."""
        return _ASYNCIO_TIMER_HANDLE

    @property
    def _when(self) -> Any:
        given = self._given
        return self._deadline if given is None else given

    @_when.setter
    def _when(self, value: Any) -> None:
        self._deadline = float(value)
        self._given = None if type(value) is float else value

    def _repr_info(self) -> list[str]:
        info = super()._repr_info()
        info.insert(2 if self._cancelled else 1, f"when={self._when}")
        return info

    def __hash__(self) -> int:
        return hash(self._when)

    def __lt__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._deadline < other._deadline
        return NotImplemented

    def __le__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._deadline < other._deadline or self.__eq__(other) is True
        return NotImplemented

    def __gt__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._deadline > other._deadline
        return NotImplemented

    def __ge__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return self._deadline > other._deadline or self.__eq__(other) is True
        return NotImplemented

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TimerHandle):
            return (self._deadline == other._deadline
                    and self._callback == other._callback
                    and self._args == other._args
                    and self._cancelled == other._cancelled)
        return NotImplemented

    def cancel(self) -> None:
        if not self._cancelled:
            self._loop._timer_handle_cancelled(self)
        super().cancel()

    def when(self) -> Any:
        """The absolute time on the loop's clock (``loop.time()``) at which
        the callback is due."""
        return self._when


def report_as_handle(callback: Callable[..., object], args: tuple[Any, ...], loop: Any,
                     exc: BaseException) -> None:
    """``callback(*args)``, called directly where asyncio's loop schedules
    it as a Handle of its own (a transport's ``connection_made``), raised
    *exc*: reported as that Handle reports it, its ``handle`` in the
    context and "Exception in callback ..." as the message, so exception
    handlers see what they see on asyncio.  The Handle gets a copy of the
    current context: the caller may be running inside the one it would
    pass, and the exception handler is run in the handle's (3.12+), which
    cannot be entered twice."""
    Handle(callback, args, loop)._report(exc)
