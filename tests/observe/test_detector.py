"""The blocking detector (treadle only): what it reports, when, and the
switches that turn it off."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import textwrap
import threading
import time

import pytest

import treadle
from treadle._kernel._format import HIDES_ARGUMENTS

from ._util import child_env

LOGGER = "treadle.blocking"


def _records(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


class _Reported(logging.Handler):
    """Sets an event once the detector has reported something still
    running: a test blocks the loop until then (a bounded wait), so the
    report does not depend on how soon a loaded machine runs the watchdog."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "still running" in record.getMessage():
            self.seen.set()

    def __enter__(self) -> threading.Event:
        logging.getLogger(LOGGER).addHandler(self)
        return self.seen

    def __exit__(self, *exc: object) -> None:
        logging.getLogger(LOGGER).removeHandler(self)


def _run(coro_fn, threshold: float = 0.05):
    loop = treadle.new_event_loop()
    loop.blocking_threshold = threshold
    try:
        return loop.run_until_complete(coro_fn(loop))
    finally:
        loop.close()


def test_blocking_step_names_task_line_and_total(caplog):
    async def crunch(seen):
        await asyncio.sleep(0)
        seen.wait(60)   # the blocking line

    async def main(loop):
        await loop.create_task(crunch(seen), name="cruncher")

    with caplog.at_level(logging.WARNING, logger=LOGGER), _Reported() as seen:
        _run(main)
    assert seen.is_set()
    messages = _records(caplog)
    assert len(messages) == 2, messages
    first, second = messages
    assert first.startswith("Task 'cruncher' (")
    assert "crunch() at " in first and __file__ in first
    assert "by Task " in first                       # who started it
    assert "is still running" in first
    # The stack was sampled inside the step, at the blocking line.
    assert f'File "{__file__}", line' in first
    assert "seen.wait(60)   # the blocking line" in first
    assert "in crunch" in first
    assert second.startswith("Task 'cruncher' (") and "in total" in second
    value, unit = second.split("held the event loop for ")[1].split(" ")[:2]
    total = float(value) / (1000 if unit == "ms" else 1)
    assert total >= 0.05           # (how much more depends on the machine)


def test_reported_while_it_still_blocks(caplog):
    """The first report arrives while the step is still blocking: the step
    waits for it (a logging handler sets the event)."""
    seen = threading.Event()

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "still running" in record.getMessage():
                seen.set()

    handler = Handler()
    logging.getLogger(LOGGER).addHandler(handler)
    got: list[bool] = []

    async def wait_for_report():
        got.append(seen.wait(10))   # blocks the loop until reported

    async def main(loop):
        await loop.create_task(wait_for_report(), name="waiter")

    try:
        with caplog.at_level(logging.WARNING, logger=LOGGER):
            _run(main)
    finally:
        logging.getLogger(LOGGER).removeHandler(handler)
    assert got == [True]
    assert any("seen.wait(10)" in m for m in _records(caplog))


def test_blocking_callback_is_named(caplog):
    def slow_callback(seen):
        seen.wait(60)

    async def main(loop):
        loop.call_soon(slow_callback, seen)
        await asyncio.sleep(0.01)

    with caplog.at_level(logging.WARNING, logger=LOGGER), _Reported() as seen:
        _run(main)
    messages = _records(caplog)
    assert messages and messages[0].startswith("Callback "), messages
    # Its arguments too where asyncio shows them outside debug mode: up to
    # 3.13 (from 3.14 asyncio leaves them out, they may hold secrets).
    shown = "()" if HIDES_ARGUMENTS else "(<threading.Ev"
    assert f".slow_callback{shown}" in messages[0]
    assert "test_detector.py:" in messages[0]
    assert "seen.wait(60)" in messages[0]


def test_eager_first_step_is_named(caplog):
    async def eager(seen):
        seen.wait(60)

    async def main(loop):
        loop.set_task_factory(treadle.eager_task_factory)
        await loop.create_task(eager(seen), name="eager-one")

    with caplog.at_level(logging.WARNING, logger=LOGGER), _Reported() as seen:
        _run(main)
    messages = _records(caplog)
    # (up to 3.13 the name is given after the factory ran the first step)
    assert messages and messages[0].startswith("Task '"), messages
    assert ".eager() at " in messages[0] and "seen.wait(60)" in messages[0]


def test_slow_iteration_of_many_fast_callbacks(caplog):
    def little():
        time.sleep(0.002)

    async def main(loop):
        for _ in range(250):           # ~0.5 s in one batch, 2 ms each
            loop.call_soon(little)
        await asyncio.sleep(0.01)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _run(main, threshold=0.1)
    messages = _records(caplog)
    slow = [m for m in messages if m.startswith("A loop iteration has been running")]
    assert len(slow) == 1, messages
    assert "callbacks and task steps" in slow[0]
    assert "little()" in slow[0]                   # caught running
    assert not [m for m in messages if m.startswith("Callback little")]


def test_fast_program_reports_nothing(caplog):
    async def main(loop):
        for _ in range(200):
            await asyncio.sleep(0)

    # (a generous threshold: on a loaded machine a step may be descheduled
    # for tens of milliseconds, and that is not what this test is about)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _run(main, threshold=1.0)
    assert not _records(caplog)


def test_switched_off_per_loop(caplog):
    async def main(loop):
        time.sleep(0.2)

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        _run(main, threshold=None)
    assert not _records(caplog)


def test_threshold_validation():
    loop = treadle.new_event_loop()
    try:
        assert loop.blocking_threshold == 0.1
        for bad in (0, -1, float("nan"), float("inf")):
            with pytest.raises(ValueError):
                loop.blocking_threshold = bad
        for bad in ("1", True):
            with pytest.raises(TypeError):
                loop.blocking_threshold = bad
        loop.blocking_threshold = 2
        assert loop.blocking_threshold == 2.0
        loop.blocking_threshold = None
        assert loop.blocking_threshold is None
    finally:
        loop.close()


def test_block_events_are_counted():
    async def main(loop):
        time.sleep(0.5)

    loop = treadle.new_event_loop()
    loop.blocking_threshold = 0.2
    try:
        loop.run_until_complete(main(loop))
        from treadle.metrics import loop_stats
        stats = loop_stats(loop)
    finally:
        loop.close()
    assert stats.blocked == 1
    assert stats.longest_block >= 0.4


@pytest.mark.parametrize("value, expect", [("off", False), ("0", False), ("0.02", True)])
def test_environment_variable(value, expect):
    script = textwrap.dedent("""
        import asyncio, time, treadle
        async def main():
            time.sleep(0.3)
        loop = treadle.new_event_loop()
        print(loop.blocking_threshold, flush=True)
        loop.run_until_complete(main())
        loop.close()
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env=child_env(TREADLE_BLOCKING_THRESHOLD=value))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("0.02" if expect else "None")
    assert ("has held the event loop" in out.stderr) == expect, out.stderr


def test_observe_switch_turns_every_thread_off():
    script = textwrap.dedent("""
        import _thread, asyncio, time, treadle
        async def main():
            time.sleep(0.2)
            return _thread._count()         # (threads started, running)
        print(treadle.run(main()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env=child_env(TREADLE_OBSERVE="0"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "0"
    assert "held the event loop" not in out.stderr


def test_threads_that_count_threads_see_none_of_ours_even_after_a_report():
    # The watchdog logs its report from its own thread (logging asks
    # threading who that is); asyncio runs no thread, and neither seems to.
    before = threading.active_count()

    async def main():
        time.sleep(0.3)                 # reported while it blocks
        await asyncio.sleep(0.05)
        return threading.active_count()

    assert treadle.run(main()) == before


def test_the_watchdog_keeps_ticking_while_the_loop_is_busy():
    """A loop busy with pure computation (a task spinning on ``sleep(0)``,
    no fd of its users) must not keep the watchdog from the GIL: it ticks
    about every half threshold plus a switch interval.  (A loop that
    released the GIL now and then restarted the watchdog's wait for it each
    time, and ticks came hundreds of milliseconds apart.)"""
    from treadle.observe import _watchdog

    async def main(loop):
        await asyncio.sleep(0.05)
        first = _watchdog.ticks
        start = time.monotonic()
        while time.monotonic() - start < 0.6:
            await asyncio.sleep(0)
        return _watchdog.ticks - first

    # Nominally 0.6 s / (0.025 + 0.005) = 20 ticks; a loaded machine delays
    # some, a starved watchdog got a handful.
    nominal = 0.6 / (0.05 / _watchdog.TICKS_WHILE_HEALTHY + 0.005)
    ticks = _run(main, threshold=0.05)
    assert ticks >= 0.4 * nominal, ticks


def test_a_loop_the_watchdog_ticked_is_collected_once_dropped():
    """The watchdog's thread keeps no reference to a loop it watched once
    the loop stops: an unclosed loop dropped by its owner is freed (and
    warns "unclosed event loop") by the next collection, as asyncio's is
    (it is in reference cycles on both), not whenever the watchdog next
    ticks another loop: litestar's suite, which turns warnings into
    errors, saw the warning inside a later test."""
    import gc
    import warnings
    import weakref
    from treadle.observe import _watchdog

    loop = treadle.new_event_loop()

    async def main():
        first = _watchdog.ticks
        while _watchdog.ticks < first + 3:      # ticked while running
            await asyncio.sleep(0.01)

    loop.run_until_complete(main())
    ref = weakref.ref(loop)
    seen: list[str] = []
    with warnings.catch_warnings():
        # (recorded as text only: a recorded warning keeps its source, the
        # loop, alive, and 3.15 no longer clears the weak reference first)
        warnings.simplefilter("always", ResourceWarning)
        warnings.showwarning = lambda message, *args, **kwargs: seen.append(str(message))
        del loop
        gc.collect()
        assert ref() is None
    assert any("unclosed event loop" in text for text in seen)


def test_the_detector_leaves_the_count_of_objects_steady(loop_factory):
    # Leak checks compare len(gc.get_objects()) after identical runs
    # (psycopg's suite does): the watchdog, ticking while steps run, must
    # not add or hold objects of its own that come and go with its ticks.
    import gc

    def spin(seconds):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    async def work():
        for _ in range(10):
            spin(0.004)                 # running when the watchdog looks
            await asyncio.sleep(0.001)

    def count():
        for _ in range(3):
            gc.collect()
        return len(gc.get_objects())

    async def main():
        # Counted on a thread of the executor, while the loop waits: the
        # collections can take longer than the detector's threshold in a
        # big test process, and a step that long would be reported.
        loop = asyncio.get_running_loop()
        for _ in range(3):
            await work()
            await loop.run_in_executor(None, count)
        counts = []
        for _ in range(12):
            await work()
            counts.append(await loop.run_in_executor(None, count))
        return [b - a for a, b in zip(counts, counts[1:])]

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main()) == [0] * 11


def test_the_watchdogs_wake_survives_a_set_racing_its_wait():
    # set() from another thread can release the lock between wait()'s
    # acquire and its release: wait() must take that as "set".
    import _thread

    from treadle.observe._watchdog import _Wake

    class SetInBetween:
        """A lock whose acquire() is followed at once by another thread's
        set() (which releases it)."""

        def __init__(self):
            self.lock = _thread.allocate_lock()

        def acquire(self, **kwargs):
            got = self.lock.acquire(**kwargs)
            if got:
                self.lock.release()         # the racing set()
            return got

        def release(self):
            self.lock.release()

    wake = _Wake()
    wake.set()
    wake._lock = SetInBetween()
    wake.wait(0.01)                         # no RuntimeError
