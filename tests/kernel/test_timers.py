"""The timer queue (unit tests, no loop) and timers on both loops."""

from __future__ import annotations

import asyncio
import heapq
from collections import deque

import pytest

import treadle
from treadle._kernel.timers import COMPACT_MIN, TimerQueue


class _FakeLoop:
    _debug = False

    def __init__(self, queue: TimerQueue) -> None:
        self.queue = queue

    def _timer_handle_cancelled(self, handle) -> None:
        self.queue.cancelled(handle)


def _handle(queue: TimerQueue, when: float, tag: object = None):
    loop = _FakeLoop(queue)
    h = treadle.TimerHandle(when, lambda: None, (tag,), loop)
    queue.push(h)
    return h


def test_due_timers_come_out_in_deadline_order_fifo_for_ties():
    q = TimerQueue()
    handles = [_handle(q, w, i) for i, w in enumerate([3.0, 1.0, 2.0, 1.0, 1.0])]
    out: deque = deque()
    assert q.pop_due(10.0, out) == 5
    assert [h._args[0] for h in out] == [1, 3, 4, 2, 0]
    assert all(not h._scheduled for h in handles)
    assert len(q) == 0 and q.next_deadline() is None


def test_pop_due_stops_at_the_bound():
    q = TimerQueue()
    _handle(q, 1.0)
    later = _handle(q, 5.0)
    out: deque = deque()
    assert q.pop_due(5.0, out) == 1    # `until` is exclusive
    assert q.next_deadline() == 5.0
    assert later._scheduled


def test_cancel_is_a_tombstone_and_next_deadline_skips_it():
    q = TimerQueue()
    first = _handle(q, 1.0)
    _handle(q, 2.0)
    first.cancel()
    assert len(q) == 1
    assert q.next_deadline() == 2.0
    assert not first._scheduled        # dropped when it reached the head
    out: deque = deque()
    q.pop_due(10.0, out)
    assert len(out) == 1


def test_mass_cancellation_compacts_without_scanning_each_turn():
    """100,000 cancelled timers: the heap is rebuilt once tombstones are more
    than half of it, so it never holds more than twice the live timers plus
    COMPACT_MIN, and no turn has to step over the tombstones."""
    q = TimerQueue()
    live = [_handle(q, 1e6 + i) for i in range(100)]
    doomed = [_handle(q, 10.0 + i * 1e-3) for i in range(100_000)]
    for h in doomed:
        h.cancel()
        assert len(q._heap) <= 2 * (len(q) + 1) + COMPACT_MIN + 1
    assert len(q) == 100
    assert len(q._heap) <= 2 * len(live) + COMPACT_MIN + 1
    assert q.next_deadline() == 1e6
    # What remains is still a valid heap.
    heap = list(q._heap)
    heapq.heapify(heap)
    assert sorted(heap) == sorted(q._heap)


def test_cancel_after_firing_is_harmless():
    q = TimerQueue()
    h = _handle(q, 1.0)
    out: deque = deque()
    q.pop_due(2.0, out)
    h.cancel()
    assert q._tombstones == 0 and len(q) == 0


def test_handles_lists_live_timers_earliest_first():
    q = TimerQueue()
    a = _handle(q, 3.0)
    b = _handle(q, 1.0)
    c = _handle(q, 2.0)
    c.cancel()
    assert q.handles() == [b, a]


def test_the_heap_matches_the_build():
    """Compiled, the heap holds handles ordered by this module's sift
    functions; interpreted, tuples ordered by heapq (timers.py, rule 2)."""
    from treadle._kernel import timers
    assert timers.NATIVE_HEAP is treadle.__compiled__


@pytest.mark.parametrize("seed", range(5))
def test_native_sift_functions_order_by_deadline_then_seq(seed):
    """The compiled build's own heap functions (run here in whichever build
    is installed): pushes, pops and a heapify give (deadline, seq) order,
    ties first in first out."""
    import random
    from treadle._kernel import timers
    rnd = random.Random(seed)
    made = []
    for seq in range(500):
        h = treadle.TimerHandle(float(rnd.randrange(50)), lambda: None, (), _FakeLoop(None))
        h._seq = seq
        made.append(h)
    key = lambda h: (h._deadline, h._seq)
    heap: list = []
    pending: list = []                  # the reference: what is in the heap
    for h in made:
        heap.append(h)
        timers._sift_up(heap, 0, len(heap) - 1)
        pending.append(h)
        if rnd.random() < 0.3:
            first = min(pending, key=key)
            assert timers._native_pop(heap) is first
            pending.remove(first)
    assert [timers._native_pop(heap) for _ in range(len(pending))] == sorted(pending, key=key)
    assert heap == []
    heap = list(made)
    rnd.shuffle(heap)
    for pos in reversed(range(len(heap) // 2)):
        timers._sift_down(heap, pos)
    assert [timers._native_pop(heap) for _ in range(len(made))] == sorted(made, key=key)


def test_timers_pop_in_deadline_order_across_compaction():
    q = TimerQueue()
    import random
    rnd = random.Random(7)
    handles = [_handle(q, float(rnd.randrange(40)), i) for i in range(COMPACT_MIN * 4)]
    for h in handles[::3] + handles[1::3]:
        h.cancel()                      # compacts on the way
    assert len(q._heap) < len(handles)
    out: deque = deque()
    q.pop_due(100.0, out)
    live = [h for h in handles if not h.cancelled()]
    assert list(out) == sorted(live, key=lambda h: (h._deadline, h._seq))


# -- on both loops -------------------------------------------------------------

def test_hundred_thousand_cancelled_timers_then_more_work(loop):
    """A loop with 100,000 cancelled timers keeps running its callbacks (on
    treadle the tombstones are compacted away, see the unit test above)."""
    fired = []
    handles = [loop.call_later(3600 + i, fired.append, i) for i in range(100_000)]
    for h in handles:
        h.cancel()
    loop.call_later(0.001, fired.append, "due")
    loop.call_later(0.002, loop.stop)
    loop.run_forever()
    assert fired == ["due"]
    if isinstance(loop, treadle.EventLoop):
        assert len(loop._timers._heap) < 1000


def test_sleep_timeouts_cost_few_turns(loop_factory):
    """asyncio's own test_timeout_rounding, without its private selector:
    five sleeps of 1e-2 .. 1e-10 s take few loop turns (12 ideally)."""
    loop = loop_factory()
    turns = 0
    original = loop._run_once

    def counting():
        nonlocal turns
        turns += 1
        original()

    loop._run_once = counting

    async def wait():
        for delay in (1e-2, 1e-4, 1e-6, 1e-8, 1e-10):
            await asyncio.sleep(delay)
    try:
        loop.run_until_complete(wait())
    finally:
        del loop._run_once
        loop.close()
    assert turns <= 20


def test_call_at_absolute_time(loop):
    out = []
    when = loop.time() + 0.01
    h = loop.call_at(when, out.append, "x")
    assert h.when() == when
    loop.call_at(when + 0.005, loop.stop)
    loop.run_forever()
    assert out == ["x"]
    assert loop.time() >= when


@pytest.mark.parametrize("delay", [0, -1, 1e-9])
def test_tiny_and_negative_delays_run_next_turn(loop, delay):
    out = []
    loop.call_later(delay, out.append, 1)
    loop.call_soon(out.append, 0)
    loop.call_soon(loop.call_soon, loop.stop)
    loop.run_forever()
    assert out == [0, 1]


def test_time_patched_on_the_instance_drives_timers(run):
    """asyncio's loop reads self.time() to compute call_later()'s deadline
    and to decide which timers are due, so a test that patches time() on
    the loop instance moves timers (aiohttp's keep-alive test does)."""
    from unittest import mock

    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        now = loop.time()
        fired: list[str] = []
        with mock.patch.object(loop, "time") as fake_time:
            fake_time.return_value = now
            handle = loop.call_later(3600, fired.append, "late")
            assert handle.when() == now + 3600
            fake_time.return_value = now + 3600
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        return fired

    assert run(main()) == ["late"]


def test_time_overridden_by_a_subclass_drives_timers(loop_factory):
    """The same for a loop class whose time() is its own (treadle reads the
    clock directly only while time() is the kernel's)."""
    probe = loop_factory()
    base = type(probe)
    probe.close()

    class SteeredLoop(base):
        now = 1000.0

        def time(self):
            return self.now

    loop = SteeredLoop()
    try:
        fired: list[str] = []

        async def main() -> None:
            handle = loop.call_later(3600, fired.append, "late")
            assert handle.when() == 1000.0 + 3600
            await asyncio.sleep(0)
            assert fired == []
            loop.now += 3600
            await asyncio.sleep(0)
            await asyncio.sleep(0)

        loop.run_until_complete(main())
        assert fired == ["late"]
    finally:
        loop.close()


def test_time_replaced_on_the_instance_while_running_drives_timers(loop):
    # Replaced after the loop started, and put back before it stopped.
    fired: list[str] = []

    async def main() -> None:
        now = loop.time()
        loop.time = lambda: now          # type: ignore[method-assign]
        try:
            handle = loop.call_later(3600, fired.append, "late")
            assert handle.when() == now + 3600
            loop.time = lambda: now + 3600   # type: ignore[method-assign]
            await asyncio.sleep(0)
            await asyncio.sleep(0)
        finally:
            del loop.time
        assert fired == ["late"]
        # The real clock again: a timer an hour away does not fire.
        loop.call_later(3600, fired.append, "too early")
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert fired == ["late"]


def test_run_once_replaced_on_the_instance_is_what_run_forever_calls(loop):
    # asyncio's run_forever() calls self._run_once(); tests wrap it.
    turns: list[int] = []
    real = loop._run_once

    def counting() -> None:
        turns.append(1)
        real()

    loop._run_once = counting
    try:
        loop.run_until_complete(asyncio.sleep(0))
    finally:
        del loop._run_once
    assert len(turns) >= 2


def test_run_once_replaced_on_the_instance_while_running_is_called_next_turn(loop):
    turns: list[int] = []

    async def main() -> None:
        real = loop._run_once

        def counting() -> None:
            turns.append(1)
            real()

        loop._run_once = counting
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        del loop._run_once
        n = len(turns)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert len(turns) == n

    loop.run_until_complete(main())
    assert len(turns) >= 2


@pytest.mark.parametrize("when_of", [int, float, lambda t: __import__("fractions").Fraction(t)])
def test_when_is_what_call_at_was_given(loop, when_of):
    # asyncio keeps call_at's argument: call_at(5, f).when() is 5, an int
    # (aiohttp's timeout helper rounds deadlines up to whole seconds).
    when = when_of(int(loop.time()) + 100)
    handle = loop.call_at(when, lambda: None)
    assert handle.when() == when and type(handle.when()) is type(when)
    assert type(handle._when) is type(when)
    assert f"when={when}" in repr(handle)
    later = loop.call_at(int(loop.time()) + 50, lambda: None)
    assert later < handle and handle > later
    handle.cancel()
    later.cancel()


def test_a_replaced_time_monotonic_moves_the_loops_time(loop):
    # asyncio's time() reads time.monotonic at each call: tests replace it
    # (freezegun's tick(), mock.patch) to move the loop's clock and fire
    # its timers without waiting.
    import time
    from unittest import mock

    now = [time.monotonic()]
    fired = []

    async def main():
        loop.call_later(30, fired.append, "late")
        now[0] += 60
        for _ in range(3):
            await asyncio.sleep(0)

    with mock.patch("time.monotonic", lambda: now[0]):
        t0 = loop.time()
        assert t0 == now[0]
        loop.run_until_complete(main())
        assert loop.time() == t0 + 60
    assert fired == ["late"]


def test_test_helpers_fire_timers_early_through_the_private_scheduled_list(loop):
    # zeroconf's and Home Assistant's test helpers walk asyncio's private
    # loop._scheduled and run the TimerHandles that are due themselves.
    fired = []

    async def main():
        keep = loop.call_later(3600, fired.append, "hour")
        gone = loop.call_later(60, fired.append, "cancelled")
        gone.cancel()
        loop.call_later(120, fired.append, "later")
        for handle in list(loop._scheduled):
            assert isinstance(handle, asyncio.TimerHandle)
            if handle.cancelled() or handle.when() > loop.time() + 600:
                continue
            handle._run()
            handle.cancel()
        assert keep in loop._scheduled
        await asyncio.sleep(0)
        keep.cancel()

    loop.run_until_complete(main())
    assert fired == ["later"]


def test_a_subclass_overriding_call_at_sees_call_later_and_sleep(loop_factory):
    """asyncio's call_later() goes through call_at(): a loop subclass that
    overrides it (test loops that track or steer timers) sees every timer,
    asyncio.sleep()'s and wait_for()'s included."""
    probe = loop_factory()
    base = type(probe)
    probe.close()

    class Tracking(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            super().__init__()
            self.delays: list[float] = []

        def call_at(self, when, callback, *args, context=None):
            self.delays.append(round(when - self.time(), 2))
            return super().call_at(when, callback, *args, context=context)

    async def main() -> None:
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().call_later(0.01, lambda: None)
        await asyncio.wait_for(asyncio.sleep(0.02), 10)

    loop = Tracking()
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert loop.delays[:2] == [0.05, 0.01]
    assert 10.0 in loop.delays and 0.02 in loop.delays


def test_mock_patch_object_restores_the_loops_private_attributes(loop):
    """unittest.mock.patch.object() on an attribute asyncio's loop keeps in
    its instance (aiotools' virtual clock patches _clock_resolution): on
    exit mock deletes it, then puts the original back."""
    from unittest import mock

    for name, value in [("_clock_resolution", 0.001), ("_debug", True),
                        ("_task_factory", None), ("_exception_handler", None),
                        ("_default_executor", None)]:
        before = getattr(loop, name)
        with mock.patch.object(loop, name, value):
            assert getattr(loop, name) == value
        assert getattr(loop, name) == before, name
