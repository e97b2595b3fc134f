"""wait_all_tasks_blocked(): on treadle's loop, real clock and virtual."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

import treadle
from treadle.testing import VirtualClock, wait_all_tasks_blocked


def _run(coro, clock=None):
    with asyncio.Runner(loop_factory=lambda: treadle.new_event_loop(clock=clock)) as r:
        return r.run(coro)


def test_returns_once_every_other_task_is_blocked():
    async def main():
        log = []
        event = asyncio.Event()

        async def chatter(name, steps):
            for i in range(steps):
                log.append(f"{name}{i}")
                await asyncio.sleep(0)
            await event.wait()
            log.append(f"{name} woke")

        tasks = [asyncio.create_task(chatter("a", 5)),
                 asyncio.create_task(chatter("b", 20))]
        await wait_all_tasks_blocked()
        snapshot = list(log)
        event.set()
        await asyncio.gather(*tasks)
        return snapshot, log

    snapshot, log = _run(main())
    # Everything the others could do without the event was done...
    assert snapshot == [x for x in log if "woke" not in x]
    assert len(snapshot) == 25
    # ...and nothing after it.
    assert log[-2:] == ["a woke", "b woke"]


def test_a_pending_timer_does_not_count_as_work():
    async def main():
        loop = asyncio.get_running_loop()
        fired = []
        loop.call_later(30, fired.append, 1)
        t0 = time.monotonic()
        await wait_all_tasks_blocked()
        return fired, time.monotonic() - t0

    fired, elapsed = _run(main())
    assert fired == []
    assert elapsed < 5.0


def test_cushion_is_real_idle_time():
    async def main():
        t0 = time.monotonic()
        await wait_all_tasks_blocked(0.05)
        return time.monotonic() - t0

    assert _run(main()) >= 0.045


def test_smallest_cushion_wakes_first_others_keep_waiting():
    async def main():
        log = []

        async def waiter(cushion, name):
            await wait_all_tasks_blocked(cushion)
            log.append(name)

        tasks = [asyncio.create_task(waiter(0.04, "slow")),
                 asyncio.create_task(waiter(0.0, "fast1")),
                 asyncio.create_task(waiter(0.0, "fast2"))]
        await asyncio.gather(*tasks)
        return log

    log = _run(main())
    assert sorted(log[:2]) == ["fast1", "fast2"]
    assert log[2] == "slow"


def test_cancelled_waiter_is_removed():
    async def main():
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(wait_all_tasks_blocked(10.0))
        await asyncio.sleep(0)
        assert len(loop._idle_waiters) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert loop._idle_waiters == []
        # the loop still works, and a new waiter wakes normally
        await wait_all_tasks_blocked()

    _run(main())


def test_wakes_even_while_a_thread_works():
    """Threads are not tasks: the loop is idle while it waits for them."""
    async def main():
        loop = asyncio.get_running_loop()
        gate = threading.Event()
        fut = loop.run_in_executor(None, gate.wait, 5)
        await wait_all_tasks_blocked()
        gate.set()
        return await fut

    assert _run(main()) is True


def test_under_virtual_clock_it_goes_before_autojump():
    async def main():
        loop = asyncio.get_running_loop()
        log = []

        async def sleeper():
            await asyncio.sleep(60)
            log.append(("slept", loop.time()))

        t = asyncio.create_task(sleeper())
        await wait_all_tasks_blocked()
        log.append(("blocked", loop.time()))
        await t
        await wait_all_tasks_blocked()
        log.append(("blocked again", loop.time()))
        return log

    assert _run(main(), VirtualClock()) == [
        ("blocked", 0.0), ("slept", 60.0), ("blocked again", 60.0)]


def test_autojump_goes_first_when_its_threshold_is_shorter():
    async def main():
        loop = asyncio.get_running_loop()
        log = []

        async def sleeper():
            await asyncio.sleep(60)
            log.append(("slept", loop.time()))

        t = asyncio.create_task(sleeper())
        await wait_all_tasks_blocked(0.05)
        log.append(("blocked", loop.time()))
        await t
        return log

    assert _run(main(), VirtualClock()) == [("slept", 60.0), ("blocked", 60.0)]


@pytest.mark.parametrize("bad, exc", [(-1, ValueError), (math.nan, ValueError),
                                      (math.inf, ValueError), ("0", TypeError),
                                      (None, TypeError)])
def test_bad_cushion(bad, exc):
    async def main():
        await wait_all_tasks_blocked(bad)

    with pytest.raises(exc):
        _run(main())


def test_needs_a_treadle_loop():
    async def main():
        await wait_all_tasks_blocked()

    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as r:
        with pytest.raises(RuntimeError, match="needs a treadle event loop"):
            r.run(main())
