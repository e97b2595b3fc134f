"""VirtualClock: the pure state machine first, then loops that read it.

The scenario tests at the bottom run the same asyncio program on asyncio's
loop in real time (short delays) and on treadle's loop with a virtual
clock, and compare what the program observed: virtual time must not change
what asyncio code sees, only how long it takes.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time

import pytest

import treadle
from treadle.testing import VirtualClock, wait_all_tasks_blocked
from treadle.testing.clock import MAX_WAIT


# ---------------------------------------------------------------------------
# the clock alone
# ---------------------------------------------------------------------------

def test_defaults_start_at_zero_and_stand_still():
    clock = VirtualClock()
    assert clock.time() == 0.0
    assert clock.rate == 0.0
    assert clock.autojump_threshold == 0.0
    time.sleep(0.01)
    assert clock.time() == 0.0


def test_start_and_jump():
    clock = VirtualClock(start=100)
    assert clock.time() == 100.0
    clock.jump(2.5)
    assert clock.time() == 102.5
    clock.jump(0)
    assert clock.time() == 102.5


@pytest.mark.parametrize("bad, exc", [
    (-1, ValueError), (math.nan, ValueError), (math.inf, ValueError),
    ("1", TypeError), (None, TypeError), (True, TypeError),
])
def test_jump_rejects_bad_values(bad, exc):
    clock = VirtualClock()
    with pytest.raises(exc):
        clock.jump(bad)
    assert clock.time() == 0.0


@pytest.mark.parametrize("kwargs, exc", [
    ({"rate": -1.0}, ValueError),
    ({"rate": math.nan}, ValueError),
    ({"rate": math.inf}, ValueError),
    ({"rate": "fast"}, TypeError),
    ({"autojump_threshold": -0.1}, ValueError),
    ({"autojump_threshold": math.nan}, ValueError),
    ({"start": math.inf}, ValueError),
    ({"start": math.nan}, ValueError),
    ({"start": None}, TypeError),
])
def test_constructor_validates(kwargs, exc):
    with pytest.raises(exc):
        VirtualClock(**kwargs)


def test_arguments_are_keyword_only():
    with pytest.raises(TypeError):
        VirtualClock(0.0)  # type: ignore[misc]


def test_rate_makes_time_flow_and_changes_are_continuous():
    clock = VirtualClock(rate=1000.0)
    t0 = clock.time()
    time.sleep(0.01)
    t1 = clock.time()
    assert t1 - t0 >= 9.0          # at least 10 ms of real time at 1000x
    clock.rate = 0.0
    frozen = clock.time()
    assert frozen >= t1
    time.sleep(0.005)
    assert clock.time() == frozen
    with pytest.raises(ValueError):
        clock.rate = -2.0
    assert clock.rate == 0.0


def test_time_never_moves_backwards():
    clock = VirtualClock(rate=1.0, autojump_threshold=0.0)
    last = clock.time()
    for i in range(200):
        if i % 3 == 0:
            clock.jump(0.001)
        if i % 7 == 0:
            clock.rate = (i % 5) / 2
        # idle() with a deadline in the past must not move time back
        clock.sleep_time(last - 1.0)
        clock.idle(last - 1.0)
        now = clock.time()
        assert now >= last
        last = now


def test_sleep_time_without_deadline_blocks_until_io():
    assert VirtualClock().sleep_time(None) is None
    assert VirtualClock().idle(None) is False


def test_sleep_time_for_a_due_deadline_is_zero():
    clock = VirtualClock(start=10.0)
    assert clock.sleep_time(10.0) == 0.0
    assert clock.sleep_time(3.0) == 0.0


def test_autojump_at_zero_threshold_asks_for_no_wait_then_jumps():
    clock = VirtualClock()
    wait = clock.sleep_time(5.0)
    assert wait == 0.0
    assert clock.idle(5.0) is True
    assert clock.time() == 5.0          # exactly the deadline
    # idle() without a matching sleep_time() does nothing
    assert clock.idle(9.0) is False
    assert clock.time() == 5.0


def test_autojump_threshold_is_the_real_wait():
    clock = VirtualClock(autojump_threshold=0.25)
    assert clock.sleep_time(100.0) == 0.25
    assert clock.idle(100.0) is True
    assert clock.time() == 100.0


def test_idle_for_another_deadline_does_not_jump():
    clock = VirtualClock()
    clock.sleep_time(5.0)
    assert clock.idle(7.0) is False
    assert clock.time() == 0.0


def test_no_autojump_and_no_rate_waits_for_io_only():
    clock = VirtualClock(autojump_threshold=math.inf)
    assert clock.sleep_time(5.0) is None
    assert clock.idle(5.0) is False
    assert clock.time() == 0.0


def test_rate_without_autojump_waits_the_scaled_real_time():
    clock = VirtualClock(rate=10.0, autojump_threshold=math.inf)
    wait = clock.sleep_time(clock.time() + 5.0)
    assert wait == pytest.approx(0.5, abs=0.01)


def test_threshold_shorter_than_the_scaled_wait_wins():
    clock = VirtualClock(rate=1.0, autojump_threshold=0.1)
    assert clock.sleep_time(clock.time() + 60.0) == 0.1


def test_very_long_waits_are_capped_and_do_not_jump():
    clock = VirtualClock(rate=1e-9, autojump_threshold=math.inf)
    start = clock.time()
    assert clock.sleep_time(start + 10.0) == MAX_WAIT
    assert clock.idle(start + 10.0) is False
    assert clock.time() < start + 1.0


def test_autojump_threshold_can_change():
    clock = VirtualClock(autojump_threshold=math.inf)
    clock.autojump_threshold = 0.0
    assert clock.sleep_time(1.0) == 0.0
    with pytest.raises(ValueError):
        clock.autojump_threshold = -1
    with pytest.raises(TypeError):
        clock.autojump_threshold = None  # type: ignore[assignment]


def test_repr():
    text = repr(VirtualClock(start=3.0))
    assert text.startswith("<VirtualClock time=3.000000")
    assert "rate=0.0" in text and "autojump_threshold=0.0" in text


# ---------------------------------------------------------------------------
# on a loop
# ---------------------------------------------------------------------------

def _run_virtual(coro_fn, clock=None, **kwargs):
    clock = VirtualClock(**kwargs) if clock is None else clock
    with asyncio.Runner(loop_factory=lambda: treadle.new_event_loop(clock=clock)) as r:
        return r.run(coro_fn())


def test_loop_reads_the_clock():
    clock = VirtualClock(start=42.0)
    loop = treadle.new_event_loop(clock=clock)
    try:
        assert loop.time() == 42.0
        assert loop.get_clock() is clock
        clock.jump(1.0)
        assert loop.time() == 43.0
    finally:
        loop.close()


def test_sleep_wait_for_timeout_and_call_later_follow_virtual_time():
    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        loop.call_later(30, lambda: seen.append(("call_later", loop.time())))
        loop.call_at(45, lambda: seen.append(("call_at", loop.time())))
        await asyncio.sleep(10)
        seen.append(("sleep", loop.time()))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 60)
        seen.append(("wait_for", loop.time()))
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3600):
                await asyncio.sleep(7200)
        seen.append(("timeout", loop.time()))
        async with asyncio.timeout_at(loop.time() + 5):
            await asyncio.sleep(4)
        seen.append(("timeout_at", loop.time()))
        return seen

    t0 = time.perf_counter()
    seen = _run_virtual(main)
    assert time.perf_counter() - t0 < 5.0   # an hour of virtual time
    assert seen == [("sleep", 10.0), ("call_later", 30.0), ("call_at", 45.0),
                    ("wait_for", 70.0), ("timeout", 3670.0), ("timeout_at", 3674.0)]


def test_many_timers_autojump_one_after_another():
    async def main():
        loop = asyncio.get_running_loop()
        for _ in range(2000):
            await asyncio.sleep(1)
        return loop.time()

    assert _run_virtual(main) == 2000.0


def test_jump_from_a_task_fires_due_timers():
    clock = VirtualClock(autojump_threshold=math.inf)

    async def main():
        loop = asyncio.get_running_loop()
        fired = []
        loop.call_later(10, fired.append, "ten")
        loop.call_later(20, fired.append, "twenty")
        clock.jump(15)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert fired == ["ten"]
        clock.jump(5)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return fired, loop.time()

    assert _run_virtual(main, clock) == (["ten", "twenty"], 20.0)


def test_time_does_not_move_while_tasks_are_busy():
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        # A busy loop (always something ready) never autojumps.
        for _ in range(500):
            await asyncio.sleep(0)
        return loop.time() - t0

    assert _run_virtual(main) == 0.0


def test_positive_threshold_waits_that_long_in_real_time_first():
    async def main():
        loop = asyncio.get_running_loop()
        real0 = time.monotonic()
        await asyncio.sleep(1000)
        return loop.time(), time.monotonic() - real0

    virtual, real = _run_virtual(main, autojump_threshold=0.05)
    assert virtual == 1000.0
    assert real >= 0.045


def test_only_io_pending_waits_for_it_in_real_time():
    """No timer at all: nothing to jump to, the loop blocks for the I/O."""
    a, b = socket.socketpair()

    def later():
        time.sleep(0.05)
        b.send(b"x")

    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_reader(a.fileno(), lambda: got.done() or got.set_result(a.recv(1)))
        real0 = time.monotonic()
        thread = threading.Thread(target=later)
        thread.start()
        try:
            data = await got
        finally:
            thread.join()
            loop.remove_reader(a.fileno())
        return data, loop.time(), time.monotonic() - real0

    try:
        a.setblocking(False)
        data, virtual, real = _run_virtual(main)
    finally:
        a.close()
        b.close()
    assert (data, virtual) == (b"x", 0.0)
    assert real >= 0.045


def test_reader_callbacks_wake_a_loop_with_virtual_time():
    """add_reader I/O is delivered; time moves only when idle with timers."""
    a, b = socket.socketpair()

    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_reader(a.fileno(), lambda: got.set_result(a.recv(10)))
        try:
            b.send(b"ping")
            data = await asyncio.wait_for(got, 30)
        finally:
            loop.remove_reader(a.fileno())
        return data, loop.time()

    try:
        a.setblocking(False)
        assert _run_virtual(main) == (b"ping", 0.0)
    finally:
        a.close()
        b.close()


def test_threadsafe_callback_is_not_lost_under_virtual_time():
    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        t = threading.Thread(
            target=lambda: (time.sleep(0.02),
                            loop.call_soon_threadsafe(fut.set_result, "hi")))
        t.start()
        try:
            return await fut
        finally:
            t.join()

    assert _run_virtual(main) == "hi"


def test_wait_all_tasks_blocked_goes_before_autojump():
    async def main():
        loop = asyncio.get_running_loop()
        log = []

        async def sleeper():
            await asyncio.sleep(5)
            log.append(("slept", loop.time()))

        task = asyncio.create_task(sleeper())
        await wait_all_tasks_blocked()
        log.append(("blocked", loop.time()))
        await task
        return log

    assert _run_virtual(main) == [("blocked", 0.0), ("slept", 5.0)]


def test_clock_shared_by_two_loops_in_turn_never_goes_back():
    clock = VirtualClock()

    async def main():
        await asyncio.sleep(3)
        return asyncio.get_running_loop().time()

    assert _run_virtual(main, clock) == 3.0
    assert _run_virtual(main, clock) == 6.0


# ---------------------------------------------------------------------------
# the same program, asyncio in real time vs treadle in virtual time
# ---------------------------------------------------------------------------

SCALE = 0.02   # seconds per unit on asyncio's real-time run


async def _scenario(unit: float) -> list[str]:
    log: list[str] = []

    async def worker(name: str, delay: float) -> str:
        log.append(f"{name} start")
        await asyncio.sleep(delay * unit)
        log.append(f"{name} done")
        return name

    results = await asyncio.gather(worker("tea", 5), worker("toast", 3),
                                   worker("egg", 4))
    log.append(f"gather {results}")
    try:
        await asyncio.wait_for(worker("slow", 10), 2 * unit)
    except TimeoutError:
        log.append("wait_for timed out")
    try:
        async with asyncio.timeout(1 * unit):
            await worker("slower", 3)
    except TimeoutError:
        log.append("timeout() expired")
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def producer() -> None:
        for i in range(3):
            await asyncio.sleep(unit)
            await queue.put(i)

    async def consumer() -> None:
        for _ in range(3):
            log.append(f"got {await queue.get()}")

    async with asyncio.TaskGroup() as tg:
        tg.create_task(producer())
        tg.create_task(consumer())
    done, pending = await asyncio.wait(
        [asyncio.create_task(worker("a", 1)), asyncio.create_task(worker("b", 6))],
        timeout=3 * unit)
    log.append(f"wait: {len(done)} done, {len(pending)} pending")
    for task in pending:
        task.cancel()
    return log


@pytest.mark.parametrize("flavour", ["asyncio-real-time", "treadle-virtual-time"])
def test_same_observations_as_asyncio_in_real_time(flavour):
    if flavour == "asyncio-real-time":
        with asyncio.Runner(loop_factory=asyncio.new_event_loop) as r:
            log = r.run(_scenario(SCALE))
    else:
        clock = VirtualClock()
        with asyncio.Runner(loop_factory=lambda: treadle.new_event_loop(clock=clock)) as r:
            log = r.run(_scenario(1.0))
    assert log == [
        "tea start", "toast start", "egg start",
        "toast done", "egg done", "tea done",
        "gather ['tea', 'toast', 'egg']",
        "slow start", "wait_for timed out",
        "slower start", "timeout() expired",
        "got 0", "got 1", "got 2",
        "a start", "b start", "a done", "wait: 1 done, 1 pending",
    ]


def test_cancel_scopes_and_deadlines_follow_virtual_time():
    """treadle's own scopes read loop.time() and call_at: virtual too."""
    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        with treadle.move_on_after(3600) as scope:
            assert treadle.current_effective_deadline() == 3600.0
            await asyncio.sleep(7200)
        seen.append(("move_on_after", scope.cancelled_caught, loop.time()))
        with pytest.raises(TimeoutError):
            with treadle.fail_after(60):
                await asyncio.Event().wait()
        seen.append(("fail_after", loop.time()))
        with treadle.CancelScope(deadline=loop.time() + 10) as scope:
            scope.deadline += 20            # deadlines can move
            await asyncio.sleep(100)
        seen.append(("moved deadline", loop.time()))

        async def worker(delay, name):
            await asyncio.sleep(delay)
            seen.append((name, loop.time()))

        with treadle.move_on_after(25):
            async with treadle.TaskGroup() as tg:
                tg.start_soon(worker, 10, "worker 10")
                tg.start_soon(worker, 40, "worker 40")
        seen.append(("group cut", loop.time()))
        return seen

    t0 = time.perf_counter()
    seen = _run_virtual(main)
    assert time.perf_counter() - t0 < 5.0
    assert seen == [("move_on_after", True, 3600.0), ("fail_after", 3660.0),
                    ("moved deadline", 3690.0), ("worker 10", 3700.0),
                    ("group cut", 3715.0)]
