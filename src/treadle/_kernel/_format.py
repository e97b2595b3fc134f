"""Text for reprs, log lines and debug tracebacks.

Owns: how callbacks, coroutines and futures are described to humans.
Never: runs on a hot path.  Everything here is called from ``__repr__``,
from the exception handler or in debug mode only, so it may be slow and
allocate freely.

The shapes of the strings follow asyncio's (``<Handle cb() at f.py:3>``,
``<Task pending name='Task-1' coro=<main() running at f.py:5>>``) because
people grep their logs for them and tests match them with regexes.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import os
import reprlib
import sys
import traceback
from types import FrameType
from typing import Any, Final, Sequence


def _asyncio_hides_arguments() -> bool:
    """Whether this Python's asyncio leaves the arguments out of a
    callback's description outside debug mode (3.14 on: they may hold
    secrets, and end up in logs).  Read from asyncio itself, so that a
    release that takes the change in a patch release is followed too."""
    try:
        from asyncio import format_helpers
        return "debug" in inspect.signature(format_helpers._format_args_and_kwargs).parameters
    except (ImportError, AttributeError, TypeError, ValueError):
        return sys.version_info >= (3, 14)


#: True where asyncio writes ``cb()`` for ``call_soon(cb, secret)`` outside
#: debug mode; the functions below take *debug* (the loop's) for that.
HIDES_ARGUMENTS: Final = _asyncio_hides_arguments()

#: How many frames debug mode records for source tracebacks (asyncio's
#: DEBUG_STACK_DEPTH).
DEBUG_STACK_DEPTH = 10


def function_source(func: Any) -> tuple[str, int] | None:
    """(filename, first line) of the Python function behind *func*."""
    try:
        func = inspect.unwrap(func)
    except ValueError:
        return None
    if inspect.isfunction(func):
        code = func.__code__
        return (code.co_filename, code.co_firstlineno)
    if isinstance(func, (functools.partial, functools.partialmethod)):
        return function_source(func.func)
    return None


def format_args(args: Sequence[Any] | None, kwargs: dict[str, Any] | None,
                debug: object = False) -> str:
    if HIDES_ARGUMENTS and not debug:
        return "()"
    items: list[str] = []
    if args:
        items.extend(reprlib.repr(arg) for arg in args)
    if kwargs:
        items.extend(f"{k}={reprlib.repr(v)}" for k, v in kwargs.items())
    return "(" + ", ".join(items) + ")"


def format_callback(func: Any, args: Sequence[Any] | None,
                    kwargs: dict[str, Any] | None = None, suffix: str = "",
                    debug: object = False) -> str:
    """``name(arg, ...)``; partials are unwrapped to the function they call.
    The arguments are left out where asyncio leaves them out
    (``HIDES_ARGUMENTS``) unless *debug*."""
    if isinstance(func, functools.partial):
        suffix = format_args(args, kwargs, debug) + suffix
        return format_callback(func.func, func.args, func.keywords, suffix, debug)
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    text = name if isinstance(name, str) else repr(func)
    return text + format_args(args, kwargs, debug) + suffix


def callback_source(func: Any, args: Sequence[Any] | None, debug: object = False) -> str:
    """``format_callback`` plus `` at file:line`` when the source is known."""
    text = format_callback(func, args, debug=debug)
    source = function_source(func)
    if source:
        text += f" at {source[0]}:{source[1]}"
    return text


# No abspath(): a frame's co_filename is spelled like the __file__ of the
# module it came from, so plain string comparison finds the kernel's frames,
# and debug mode makes no getcwd() syscall for every callback it schedules
# (asyncio makes none; blockbuster, for one, reports it as a blocking call).
_KERNEL_DIR = os.path.dirname(__file__)


def caller_stack(limit: int | None = DEBUG_STACK_DEPTH) -> traceback.StackSummary:
    """The stack of whoever called into the kernel (its own frames are left
    out), for debug-mode source tracebacks; all of it with *limit* None.
    Works the same compiled, where kernel functions have no frames, and
    uncompiled, where they do."""
    frame: FrameType | None = sys._getframe(0)
    while frame is not None and os.path.dirname(
            frame.f_code.co_filename) == _KERNEL_DIR:
        frame = frame.f_back
    return extract_stack(frame, limit)


def extract_stack(frame: FrameType | None = None,
                  limit: int | None = DEBUG_STACK_DEPTH) -> traceback.StackSummary:
    """The caller's stack, oldest first, without reading source lines
    (reading them is what makes naive debug modes slow)."""
    if frame is None:
        frame = sys._getframe(1)
    stack = traceback.StackSummary.extract(
        traceback.walk_stack(frame), limit=limit, lookup_lines=False)
    stack.reverse()
    return stack


def coroutine_repr(coro: Any) -> str:
    """``name() running at file:line`` / ``name() done, defined at file:line``."""
    name = getattr(coro, "__qualname__", None) or getattr(coro, "__name__", None)
    if not isinstance(name, str) or not name:
        name = f"<{type(coro).__name__} without __name__>"
    text = name + "()"
    code = getattr(coro, "cr_code", None) or getattr(coro, "gi_code", None)
    if not code:
        running = getattr(coro, "cr_running", getattr(coro, "gi_running", False))
        return text + " running" if running else text
    frame = getattr(coro, "gi_frame", None) or getattr(coro, "cr_frame", None)
    filename = code.co_filename or "<empty co_filename>"
    if frame is not None:
        return f"{text} running at {filename}:{frame.f_lineno}"
    return f"{text} done, defined at {filename}:{code.co_firstlineno}"


def callbacks_repr(callbacks: Sequence[Any]) -> str:
    """The ``cb=[...]`` part of a future's repr; long lists are elided."""
    def one(entry: Any) -> str:
        fn = entry[0] if isinstance(entry, tuple) else entry
        if not isinstance(entry, tuple):      # a treadle task waiting on us
            return "Task.task_wakeup()"
        return format_callback(fn, ())

    n = len(callbacks)
    if n == 0:
        return ""
    if n == 1:
        body = one(callbacks[0])
    elif n == 2:
        body = f"{one(callbacks[0])}, {one(callbacks[1])}"
    else:
        body = f"{one(callbacks[0])}, <{n - 2} more>, {one(callbacks[-1])}"
    return f"cb=[{body}]"


def frames_of(coro: Any, exception: BaseException | None,
              limit: int | None) -> list[FrameType]:
    """The stack of a task: suspended frames of its coroutine chain, or the
    traceback of the exception it ended with."""
    frames: list[FrameType] = []
    frame = (getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
             or getattr(coro, "ag_frame", None))
    if frame is not None:
        while frame is not None:
            if limit is not None:
                if limit <= 0:
                    break
                limit -= 1
            frames.append(frame)
            frame = frame.f_back
        frames.reverse()
    elif exception is not None:
        tb = exception.__traceback__
        while tb is not None:
            if limit is not None:
                if limit <= 0:
                    break
                limit -= 1
            frames.append(tb.tb_frame)
            tb = tb.tb_next
    return frames


def print_stack(task: Any, frames: list[FrameType], exception: BaseException | None,
                file: Any) -> None:
    """Write a task's stack the way ``asyncio.Task.print_stack`` does."""
    extracted = []
    seen: set[str] = set()
    for f in frames:
        lineno = f.f_lineno
        co = f.f_code
        filename = co.co_filename
        if filename not in seen:
            seen.add(filename)
            linecache.checkcache(filename)
        line = linecache.getline(filename, lineno, f.f_globals)
        extracted.append((filename, lineno, co.co_name, line))
    if file is None:
        file = sys.stderr
    if not extracted:
        print(f"No stack for {task!r}", file=file)
    elif exception is not None:
        print(f"Traceback for {task!r} (most recent call last):", file=file)
    else:
        print(f"Stack for {task!r} (most recent call last):", file=file)
    traceback.print_list(extracted, file=file)
    if exception is not None:
        for line in traceback.format_exception_only(exception.__class__, exception):
            print(line, file=file, end="")


def handle_label(item: Any) -> str:
    """How the slow-callback warning names what ran: the task itself when the
    handle steps a task (uvloop prints an opaque wrapper here)."""
    cb = getattr(item, "_callback", None)
    owner = getattr(cb, "__self__", None)
    if owner is not None and hasattr(owner, "get_coro"):
        return repr(owner)
    return str(item)


__all__ = [
    "DEBUG_STACK_DEPTH", "callback_source", "callbacks_repr", "coroutine_repr",
    "extract_stack", "format_callback", "frames_of", "function_source",
    "handle_label", "print_stack",
]
