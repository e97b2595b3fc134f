"""``treadle.metrics``: loop counters (always on) and per-task timing
(when switched on)."""

from __future__ import annotations

import asyncio
import math
import threading
import time

import pytest

import treadle
from treadle import metrics


def _run(coro_fn):
    loop = treadle.new_event_loop()
    try:
        return loop, loop.run_until_complete(coro_fn(loop))
    finally:
        loop.close()


def test_loop_counters():
    async def main(loop):
        before = metrics.loop_stats()
        for _ in range(50):
            await asyncio.sleep(0)
        await asyncio.sleep(0.05)            # the loop blocks in its poller
        timers = [loop.call_later(0.001 * i, lambda: None) for i in range(10)]
        await asyncio.sleep(0.03)
        return before, metrics.loop_stats(), timers

    loop, (before, after, _) = _run(main)
    assert after.running and after.tasks == 1
    assert after.turns - before.turns >= 50
    assert after.callbacks - before.callbacks >= 50
    assert after.callbacks >= after.turns
    assert after.io_wait - before.io_wait >= 0.04
    assert after.run_time >= after.io_wait
    assert after.busy_time == pytest.approx(after.run_time - after.io_wait)
    assert after.timers_fired - before.timers_fired >= 11
    assert len(after.timer_lateness) == len(metrics.LATENESS_BOUNDS) + 1
    p50 = after.lateness_percentile(0.5)
    assert p50 is not None and p50 in metrics.LATENESS_BOUNDS + (math.inf,)
    assert after.lateness_percentile(0.99) >= p50
    assert after.blocking_threshold == 0.1 and not after.tracking
    done = metrics.loop_stats(loop)
    assert not done.running and done.run_time >= after.run_time


def test_loop_stats_from_another_thread_while_the_loop_runs():
    seen = []

    async def main(loop):
        def read():
            for _ in range(50):
                seen.append(metrics.loop_stats(loop))
        thread = threading.Thread(target=read)
        thread.start()
        while thread.is_alive():
            await asyncio.sleep(0)
        thread.join()

    _run(main)
    assert len(seen) == 50 and all(s.running for s in seen)
    assert [s.callbacks for s in seen] == sorted(s.callbacks for s in seen)


def test_no_percentile_without_timers():
    async def main(loop):
        return metrics.loop_stats()

    _, stats = _run(main)
    assert stats.lateness_percentile(0.5) is None
    with pytest.raises(ValueError):
        metrics.lateness_percentile((1, 2), 1.5)


def test_task_stats_when_tracking():
    async def spinner():
        for _ in range(20):
            await asyncio.sleep(0)

    async def sleeper():
        await asyncio.sleep(0.05)
        time.sleep(0.02)

    async def main(loop):
        untracked = asyncio.create_task(asyncio.sleep(0))
        assert metrics.task_stats(untracked) is None
        await untracked
        metrics.track_tasks()
        assert metrics.loop_stats().tracking
        spin = asyncio.create_task(spinner(), name="spin")
        sleep = asyncio.create_task(sleeper(), name="sleep")
        await asyncio.sleep(0)
        running = metrics.task_stats(spin)
        await asyncio.gather(spin, sleep)
        return running, metrics.task_stats(spin), metrics.task_stats(sleep)

    _, (early, spin, sleep) = _run(main)
    assert early is not None and early.steps >= 1
    # Finished tasks: their stats are no longer kept per task...
    assert spin is None and sleep is None


def test_task_stats_numbers():
    async def spinner():
        for _ in range(20):
            await asyncio.sleep(0)
        await asyncio.sleep(1)

    async def sleeper():
        await asyncio.sleep(0.05)
        time.sleep(0.02)
        await asyncio.sleep(1)

    async def main(loop):
        with metrics.tracking():
            spin = asyncio.create_task(spinner(), name="spin")
            sleep = asyncio.create_task(sleeper(), name="sleep")
            await asyncio.sleep(0.15)
            result = metrics.task_stats(spin), metrics.task_stats(sleep)
            spin.cancel()
            sleep.cancel()
            await asyncio.gather(spin, sleep, return_exceptions=True)
        assert not metrics.loop_stats().tracking
        return result

    _, (spin, sleep) = _run(main)
    assert spin.name == "spin" and spin.steps == 21
    assert spin.wakes == 21 and spin.self_wakes == 20
    assert spin.spawned_at is not None and __file__ in spin.spawned_at
    assert "in main" in spin.spawned_at
    assert spin.running_for is None
    assert sleep.steps == 2 and sleep.self_wakes == 0
    assert sleep.busy >= 0.02 and sleep.longest_step >= 0.02
    assert sleep.idle >= 0.04
    assert sleep.busy + sleep.idle + sleep.scheduled == pytest.approx(sleep.tracked_for,
                                                                       abs=0.01)


def test_tracking_puts_the_kernel_back_as_it_was():
    async def waiter(fut):
        await fut

    async def main(loop):
        append = loop._kernel_ready_append
        fut = loop.create_future()
        before = asyncio.create_task(waiter(fut))
        await asyncio.sleep(0)
        metrics.track_tasks(loop)
        assert loop._kernel_ready_append is not append
        assert before._core._ready is loop._kernel_ready_append
        during = asyncio.create_task(waiter(fut))
        await asyncio.sleep(0)
        metrics.track_tasks(loop, False)
        assert loop._kernel_ready_append is append
        assert before._core._ready is append and during._core._ready is append
        assert not loop._slow
        fut.set_result(None)
        await asyncio.gather(before, during)

    _run(main)


def test_task_stats_of_a_task_from_another_loop():
    async def main():
        return asyncio.current_task()

    loop = asyncio.new_event_loop()
    try:
        task = loop.run_until_complete(loop.create_task(main()))
    finally:
        loop.close()
    assert metrics.task_stats(task) is None
    with pytest.raises(TypeError, match="needs a treadle event loop"):
        metrics.loop_stats(loop)
