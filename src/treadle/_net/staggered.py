"""A staggered race: start attempts one after another, first success wins.

Owns: ``staggered_race``, the engine of Happy Eyeballs (RFC 8305) in
``create_connection(happy_eyeballs_delay=...)``.
Never: knows sockets; the attempts are opaque coroutine functions.  It
does not use ``asyncio.staggered`` (whose semantics it follows).

The rule: attempt 0 starts at once.  Attempt *i+1* starts when attempt *i*
fails or *delay* seconds after attempt *i* started, whichever comes first
(*delay* None: only when it fails).  The first attempt to succeed wins;
every other attempt is cancelled, and the race returns only after all of
them have finished, handing any result that lost (a connection that
completed at the same moment) to *discard*, so nothing an attempt opened
outlives the race.  If the race itself is cancelled it cancels and awaits
its attempts, then re-raises.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable, Iterable


async def staggered_race(
        loop: Any, coro_fns: Iterable[Callable[[], Awaitable[Any]]],
        delay: float | None,
        discard: Callable[[Any], object] | None = None,
) -> tuple[Any, int | None, list[BaseException | None]]:
    """Returns ``(winner_result, winner_index, exceptions)``: the index is
    None when no attempt succeeded; ``exceptions`` has one entry per
    attempt started (None for the winner and for attempts cancelled)."""
    fns = iter(coro_fns)
    tasks: list[asyncio.Future[Any]] = []
    exceptions: list[BaseException | None] = []
    seen: list[bool] = []
    state = _Race(loop)
    winner_result: Any = None
    winner_index: int | None = None
    exhausted = False

    def start_next() -> bool:
        nonlocal exhausted
        if exhausted:
            return False
        fn = next(fns, None)
        if fn is None:
            exhausted = True
            return False
        task = asyncio.ensure_future(fn(), loop=loop)
        task.add_done_callback(state.poke)
        tasks.append(task)
        exceptions.append(None)
        seen.append(False)
        return True

    deadline: float | None = None
    try:
        start_next()
        if delay is not None:
            deadline = loop.time() + delay
        while True:
            start_now = False
            for i, task in enumerate(tasks):
                if seen[i] or not task.done():
                    continue
                seen[i] = True
                if task.cancelled():
                    exc: BaseException | None = asyncio.CancelledError()
                else:
                    exc = task.exception()
                if exc is None:
                    winner_result = task.result()
                    winner_index = i
                    break
                exceptions[i] = exc
                if i == len(tasks) - 1:
                    start_now = True        # the latest attempt failed
            if winner_index is not None:
                break
            if start_now or (deadline is not None and loop.time() >= deadline):
                if start_next():
                    if delay is not None:
                        deadline = loop.time() + delay
                    continue
            if all(seen) and (exhausted or not start_next()):
                break
            await state.wait(None if exhausted else deadline)
    finally:
        state.close()
        pending = [t for t in tasks if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
        for i, task in enumerate(tasks):
            if (i != winner_index and task.done() and not task.cancelled()
                    and task.exception() is None and discard is not None):
                discard(task.result())
    return winner_result, winner_index, exceptions


class _Race:
    """Wakes the coordinating coroutine when an attempt finishes or the
    next start is due."""

    __slots__ = ("loop", "waiter", "timer")

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.waiter: asyncio.Future[None] | None = None
        self.timer: Any = None

    def poke(self, _: Any = None) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, deadline: float | None) -> None:
        self.waiter = self.loop.create_future()
        if deadline is not None:
            self.timer = self.loop.call_at(deadline, self.poke)
        try:
            await self.waiter
        finally:
            self.waiter = None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
