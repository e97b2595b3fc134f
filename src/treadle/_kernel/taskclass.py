"""``treadle.Task``, the class users see, and the task factories.

Owns: nothing but the final class.  All behaviour is in ``TaskCore``
(``task.py``).  This module is never compiled, on purpose: a class compiled
by mypyc cannot support weak references (asyncio's task registry holds
tasks weakly) or an instance ``__dict__`` (asyncio's C task accepts
arbitrary attributes, and libraries set them).  An interpreted subclass of
the compiled class gets both from CPython, including the clearing of weak
references when a task is freed.
"""

from __future__ import annotations

import contextvars
from typing import Any

from .task import TaskCore


class Task(TaskCore):
    """A coroutine wrapped in a future, stepped by the treadle kernel.

    Same constructor and API as ``asyncio.Task``.  Use ``loop.create_task()``
    (or ``asyncio.create_task()``) rather than the constructor.
    """

    __slots__ = ("__weakref__", "__dict__")


def eager_task_factory(loop: Any, coro: Any, *, name: object = None,
                       context: contextvars.Context | None = None) -> Task:
    """A task factory whose tasks run their first step inside
    ``create_task()`` (``loop.set_task_factory(treadle.eager_task_factory)``).

    Like ``asyncio.eager_task_factory``, on every supported Python."""
    return Task(coro, loop=loop, name=name, context=context, eager_start=True)


def task_factory(loop: Any, coro: Any, *, name: object = None,
                 context: contextvars.Context | None = None) -> Task:
    """The default factory, for code that wants to set it explicitly."""
    return Task(coro, loop=loop, name=name, context=context)
