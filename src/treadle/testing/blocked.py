"""``wait_all_tasks_blocked()``: wake up once nothing else can run.

Owns: turning the kernel's idle-waiter seam (``loop._add_idle_waiter``)
into an awaitable, and cleaning the waiter up if the awaiting task is
cancelled.
Never: polls, sleeps or reads the clock itself.  "Every task is blocked"
is a fact only the run loop knows (nothing ready, no I/O for a while), so
the kernel decides and this module only waits for its word.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def wait_all_tasks_blocked(cushion: float = 0.0) -> None:
    """Return once every other task on this loop is blocked and the loop
    has had nothing to do (no callback ready, no I/O) for *cushion* real
    seconds.

    Use it in tests to let everything else run as far as it can before
    checking state.  Takes priority over a ``VirtualClock``'s autojump at
    the same threshold: time does not move while a waiter whose cushion is
    not longer than the clock's threshold is waiting.  When several tasks
    wait, those with the smallest cushion wake first and the others keep
    waiting (waking them makes the loop busy again).

    Needs a treadle loop (``RuntimeError`` on another loop).
    """
    if isinstance(cushion, bool) or not isinstance(cushion, (int, float)):
        raise TypeError(f"cushion must be a number, got {type(cushion).__name__}")
    if not math.isfinite(cushion) or cushion < 0:
        raise ValueError(f"cushion must be a finite number >= 0, got {cushion!r}")
    loop: Any = asyncio.get_running_loop()
    add = getattr(loop, "_add_idle_waiter", None)
    if add is None:
        raise RuntimeError(
            f"wait_all_tasks_blocked() needs a treadle event loop, "
            f"not {type(loop).__module__}.{type(loop).__qualname__}")
    waiter: asyncio.Future[None] = loop.create_future()
    key = add(float(cushion), lambda: _wake(waiter))
    try:
        await waiter
    finally:
        # Gone already if it fired; still queued if we were cancelled.
        loop._remove_idle_waiter(key)
