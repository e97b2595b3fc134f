"""``treadle.run()``: ``asyncio.run()`` with treadle's loop."""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, TypeVar

from ._loop import new_event_loop

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
    """Run the coroutine *main* on a new treadle loop and return its result.

    Exactly ``asyncio.run(main, debug=debug, loop_factory=treadle.new_event_loop)``
    (through ``asyncio.Runner`` on Python 3.11): tasks left running are
    cancelled, async generators and the default executor are shut down, the
    loop is closed, and Ctrl-C cancels *main* and raises KeyboardInterrupt.
    """
    if asyncio.events._get_running_loop() is not None:
        raise RuntimeError("treadle.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=new_event_loop) as runner:
        return runner.run(main)
