"""``treadle.run()``: ``asyncio.run()`` with treadle's loop."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Coroutine, TypeVar

from ._kernel.seams import Clock
from ._loop import new_event_loop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None,
        clock: Clock | None = None, seed: int | None = None) -> T:
    """Run the coroutine *main* on a new treadle loop and return its result.

    Exactly ``asyncio.run(main, debug=debug, loop_factory=treadle.new_event_loop)``
    (through ``asyncio.Runner`` on Python 3.11): tasks left running are
    cancelled, async generators and the default executor are shut down, the
    loop is closed, and Ctrl-C cancels *main* and raises KeyboardInterrupt.
    *clock* and *seed* are passed to ``new_event_loop`` (virtual time,
    seeded scheduling).
    """
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError("treadle.run() cannot be called from a running event loop")
    # (a bad seed fails in new_event_loop before any loop exists)
    factory = functools.partial(new_event_loop, clock=clock, seed=seed)
    with asyncio.Runner(debug=debug, loop_factory=factory) as runner:
        return runner.run(main)
