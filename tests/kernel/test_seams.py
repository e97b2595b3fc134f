"""The kernel's seams (treadle only): clock, ready order, instruments, idle
waiters, end-of-batch callbacks, and the poll schedule."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

import treadle
from treadle._kernel.loop import POLL_EVERY


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def before_callback(self, handle):
        self.events.append(("before_callback", handle))

    def after_callback(self, handle):
        self.events.append(("after_callback", handle))

    def before_task_step(self, task):
        self.events.append(("before_task_step", task))

    def after_task_step(self, task):
        self.events.append(("after_task_step", task))

    def task_spawned(self, task):
        self.events.append(("task_spawned", task))

    def task_exited(self, task):
        self.events.append(("task_exited", task))

    def before_io_wait(self, timeout):
        self.events.append(("before_io_wait", timeout))

    def after_io_wait(self, timeout):
        self.events.append(("after_io_wait", timeout))

    def names(self):
        return [e[0] for e in self.events]


def test_instruments_see_callbacks_steps_spawns_and_io_waits():
    loop = treadle.new_event_loop()
    rec = Recorder()
    loop.add_instrument(rec)
    loop.add_instrument(rec)  # idempotent

    async def child():
        await asyncio.sleep(0)
        await asyncio.sleep(0.001)
        return 5

    async def main():
        t = asyncio.create_task(child())
        return t, await t

    try:
        handle = loop.call_soon(lambda: None)
        task, result = loop.run_until_complete(main())
    finally:
        loop.close()
    assert result == 5
    names = rec.names()
    assert ("task_spawned", task) in rec.events
    assert ("task_exited", task) in rec.events
    steps = [e for e in rec.events if e[0] == "before_task_step" and e[1] is task]
    # first step, after sleep(0), after the 1 ms sleep
    assert len(steps) == 3
    assert names.count("before_task_step") == names.count("after_task_step")
    assert ("before_callback", handle) in rec.events
    assert ("after_callback", handle) in rec.events
    waits = [e for e in rec.events if e[0] == "before_io_wait"]
    assert waits and any(w[1] and w[1] > 0 for w in waits)
    assert names.count("before_io_wait") == names.count("after_io_wait")


def test_remove_instrument_and_unknown_instrument():
    loop = treadle.new_event_loop()
    try:
        rec = Recorder()
        loop.add_instrument(rec)
        loop.remove_instrument(rec)
        loop.call_soon(loop.stop)
        loop.run_forever()
        assert rec.events == []
        with pytest.raises(KeyError):
            loop.remove_instrument(rec)
    finally:
        loop.close()


def test_failing_instrument_is_reported_and_removed():
    loop = treadle.new_event_loop()
    reported = []
    loop.set_exception_handler(lambda lp, ctx: reported.append(ctx))

    class Broken:
        calls = 0

        def before_callback(self, handle):
            Broken.calls += 1
            raise RuntimeError("instrument bug")

    try:
        loop.add_instrument(Broken())
        loop.call_soon(lambda: None)
        loop.call_soon(lambda: None)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert Broken.calls == 1
    assert len(reported) == 1 and "removed" in reported[0]["message"]
    assert isinstance(reported[0]["exception"], RuntimeError)


def test_ready_order_seam():
    loop = treadle.new_event_loop()
    out = []
    seen_batches = []

    def reverse(batch):
        seen_batches.append(len(batch))
        return list(reversed(batch))

    try:
        loop.set_ready_order(reverse)
        assert loop.get_ready_order() is reverse
        for i in range(4):
            loop.call_soon(out.append, i)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    # the batch of 5 ran in reverse: stop first, so nothing else... except
    # that stop() only ends the loop after the batch.
    assert out == [3, 2, 1, 0]
    assert seen_batches[0] == 5


def test_ready_order_keeps_unrun_items_on_interrupt():
    loop = treadle.new_event_loop()
    out = []

    def boom():
        raise KeyboardInterrupt

    try:
        loop.set_ready_order(lambda batch: batch)
        loop.call_soon(boom)
        loop.call_soon(out.append, "kept")
        with pytest.raises(KeyboardInterrupt):
            loop.run_forever()
        loop.set_ready_order(None)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert out == ["kept"]


class StepClock:
    """A clock the test moves by hand; idle() jumps to the next deadline."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.idled = 0

    def time(self) -> float:
        return self.now

    def sleep_time(self, deadline):
        return 0.0 if deadline is not None else None

    def idle(self, deadline):
        self.idled += 1
        if deadline is not None and deadline > self.now:
            self.now = deadline
            return True
        return False


def test_clock_seam_drives_time_and_timers():
    clock = StepClock()
    loop = treadle.new_event_loop(clock=clock)
    try:
        assert loop.get_clock() is clock
        assert loop.time() == 1000.0

        async def main():
            t0 = loop.time()
            await asyncio.sleep(3600)
            return loop.time() - t0

        elapsed = loop.run_until_complete(main())
    finally:
        loop.close()
    assert elapsed == 3600.0
    assert clock.idled >= 1


def test_idle_waiter_wakes_once_everything_is_blocked():
    loop = treadle.new_event_loop()
    order = []

    async def worker(n):
        for _ in range(n):
            await asyncio.sleep(0)
        order.append(f"worker{n} parked")
        await asyncio.sleep(3600)

    async def main():
        tasks = [asyncio.create_task(worker(n)) for n in (1, 5)]
        woke = loop.create_future()
        loop._add_idle_waiter(0.0, lambda: woke.set_result(None))
        await woke
        order.append("idle")
        key = loop._add_idle_waiter(0.0, lambda: order.append("never"))
        loop._remove_idle_waiter(key)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    assert order == ["worker1 parked", "worker5 parked", "idle"]


def test_batch_end_runs_before_blocking_until_none_is_left():
    loop = treadle.new_event_loop()
    out = []

    def second():
        out.append("second flush")

    def first():
        out.append("first flush")
        loop._call_at_batch_end(second)

    def cb():
        out.append("callback")
        loop._call_at_batch_end(first)

    try:
        loop.call_soon(cb)
        loop.call_soon(loop.stop)
        loop.run_forever()
    finally:
        loop.close()
    assert out == ["callback", "first flush", "second flush"]


def test_busy_loop_polls_io_on_every_turn():
    """With callbacks ready the loop still polls (zero timeout) on every
    turn, as asyncio does, so I/O is seen on the turn after it arrives."""
    loop = treadle.new_event_loop()
    polls = []

    class Waits:
        def before_io_wait(self, timeout):
            polls.append(timeout)

    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    got = []
    n = 200
    remaining = [n]

    def chain():
        remaining[0] -= 1
        if remaining[0] == n // 2:
            b.send(b"x")
        if remaining[0]:
            loop.call_soon(chain)
        else:
            loop.stop()

    try:
        loop.add_instrument(Waits())
        loop.add_reader(a, lambda: got.append((a.recv(10), remaining[0])))
        loop.call_soon(chain)
        loop.run_forever()
        loop.remove_reader(a)
    finally:
        loop.close()
        a.close()
        b.close()
    assert len(polls) >= n
    assert all(t == 0.0 for t in polls[1:])
    # sent during one turn, read in the next: the chain took one more step
    assert got == [(b"x", n // 2 - 1)]


def test_busy_loop_watching_no_fd_polls_at_a_bounded_interval():
    """With no fd watched but the loop's own wake-up pipe, a chain of
    call_soon callbacks polls at most once per POLL_EVERY callbacks (when it
    finds another thread), not per turn: there is nothing a poll could find,
    and a call_soon_threadsafe from another thread still runs (its callback
    is queued, the pipe only wakes)."""
    loop = treadle.new_event_loop()
    polls = []

    class Waits:
        def before_io_wait(self, timeout):
            polls.append(timeout)

    n = 2000
    remaining = [n]
    got = []

    def chain():
        remaining[0] -= 1
        if remaining[0] == n // 2:
            t = threading.Thread(target=loop.call_soon_threadsafe,
                                 args=(got.append, "threadsafe"))
            t.start()
            t.join()
        if remaining[0]:
            loop.call_soon(chain)
        else:
            loop.stop()

    try:
        loop.add_instrument(Waits())
        loop.call_soon(chain)
        loop.run_forever()
    finally:
        loop.close()
    assert len(polls) <= n // POLL_EVERY + 3
    assert got == ["threadsafe"]
