"""``treadle.run()``: ``asyncio.run()`` with treadle's loop."""

from __future__ import annotations

import asyncio
import functools
import inspect
from typing import Any, Awaitable, TypeVar

from ._kernel.seams import Clock
from ._loop import new_event_loop

T = TypeVar("T")


def run(main: Awaitable[T], *, debug: bool | None = None,
        clock: Clock | None = None, seed: int | None = None) -> T:
    """Run *main* (a coroutine, or any awaitable as 3.14's asyncio.run()
    accepts, on every version) on a new treadle loop; return its result.

    Exactly ``asyncio.run(main, debug=debug, loop_factory=treadle.new_event_loop)``
    (through ``asyncio.Runner`` on Python 3.11): tasks left running are
    cancelled, async generators and the default executor are shut down, the
    loop is closed, and Ctrl-C cancels *main* and raises KeyboardInterrupt.
    *clock* and *seed* are passed to ``new_event_loop`` (virtual time,
    seeded scheduling).
    """
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError("treadle.run() cannot be called from a running event loop")
    coro: Any = main
    if not asyncio.iscoroutine(main) and inspect.isawaitable(main):
        coro = _awaiting(main)
    # (anything else is refused by asyncio.Runner, with its own version's
    # exception)
    # (a bad seed fails in new_event_loop before any loop exists)
    factory = functools.partial(new_event_loop, clock=clock, seed=seed)
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        result: T = runner.run(coro)
        return result


async def _awaiting(awaitable: Awaitable[T]) -> T:
    return await awaitable
