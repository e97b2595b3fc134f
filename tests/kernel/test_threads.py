"""A loop that spins must let other threads run (issue 13, part 0).

A thread that waits for the GIL gets it when the loop thread releases it,
which an event loop does in its I/O poll.  asyncio polls on every turn; a
loop that polled only now and then left a ``to_thread`` worker waiting for
up to a second while a task spun on ``await asyncio.sleep(0)`` (redis-py's
``test_pipeline_packing_does_not_block_event_loop``).

How long the worker waits is up to the OS scheduler, so these tests assert
what the loop does, which is deterministic: while another thread exists,
every turn of a busy loop polls (releases the GIL) at least once.  The
probe counts the calls into the loop's poller (asyncio's selector, or
treadle's backend), the one place either loop blocks or releases the GIL
between callbacks.
"""

from __future__ import annotations

import _thread
import asyncio
import concurrent.futures
import selectors
import threading

import pytest

import treadle
from treadle._io.backend import default_backend
from treadle._kernel.loop import OWN_THREADS, POLL_EVERY
from treadle.observe import _config as observe_config
from treadle.observe._observer import observer


class _CountingSelector(selectors.DefaultSelector):
    polls = 0

    def select(self, timeout=None):
        self.polls += 1
        return super().select(timeout)


class _CountingBackend:
    """treadle's default backend, counting its polls."""

    def __init__(self):
        self._inner = default_backend()
        self.polls = 0
        for name in ("register", "modify", "unregister", "close", "fileno"):
            setattr(self, name, getattr(self._inner, name))

    def poll(self, timeout):
        self.polls += 1
        return self._inner.poll(timeout)


@pytest.fixture
def counting_loop(loop_factory):
    """(loop, poller): a loop of the kind under test whose poller counts
    its polls in ``poller.polls``."""
    if loop_factory is treadle.new_event_loop:
        poller = _CountingBackend()
        loop = treadle.new_event_loop(backend=poller)
    else:
        poller = _CountingSelector()
        loop = asyncio.SelectorEventLoop(poller)
    yield loop, poller
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()


def test_spinning_task_lets_a_worker_thread_run(counting_loop):
    """The reproduction from the issue: a task spins on ``sleep(0)`` until a
    ``to_thread`` worker, which waits for the spinner's signal, has run.
    Every turn the spinner took released the GIL (it spins at least 200
    turns, so a loop that polled every 64th turn fails for sure)."""
    loop, poller = counting_loop
    # The executor's thread exists before the loop runs.  (treadle notices
    # a thread started during a busy stretch at its next poll, up to
    # POLL_EVERY callbacks later: a documented slack, not tested here.)
    executor = concurrent.futures.ThreadPoolExecutor(1)
    executor.submit(int).result()
    loop.set_default_executor(executor)

    async def main():
        go, done = threading.Event(), threading.Event()

        def work():
            go.wait()
            done.set()

        turns = 0
        polls_at_start = None

        async def spin():
            nonlocal turns, polls_at_start
            polls_at_start = poller.polls
            while not done.is_set() or turns < 200:
                go.set()
                turns += 1
                await asyncio.sleep(0)
            return poller.polls - polls_at_start

        spinner = asyncio.create_task(spin())
        await asyncio.to_thread(work)
        polls = await spinner
        return turns, polls, done.is_set()

    turns, polls, worked = loop.run_until_complete(main())
    assert worked
    assert polls >= turns


def test_busy_loop_polls_every_turn_while_a_thread_waits(counting_loop):
    """Any thread counts, not just the loop's executor: one started with
    ``threading`` that the loop knows nothing of."""
    loop, poller = counting_loop
    release = threading.Event()
    thread = threading.Thread(target=release.wait)
    thread.start()
    try:
        async def main():
            await asyncio.sleep(0)
            start = poller.polls
            for _ in range(300):
                await asyncio.sleep(0)
            return poller.polls - start

        assert loop.run_until_complete(main()) >= 300
    finally:
        release.set()
        thread.join()


def test_alone_in_its_process_a_busy_loop_skips_polls():
    """treadle only: with no other thread (treadle's own observation
    threads aside) and no fd of its users to watch, pure computation makes
    no syscall at all (the speed of chained callbacks and task switches
    depends on it, and so does the blocking detector's watchdog: a poll now
    and then would keep it from the GIL, see the kernel's step 1)."""
    assert _thread._count() == 0, "another thread is running: cannot test"
    poller = _CountingBackend()
    loop = treadle.new_event_loop(backend=poller)
    try:
        async def main():
            # treadle's threads start with the loop and count themselves (in
            # both counts) once they run.
            started = [t for t in (observer._watchdog, observer._server) if t is not None]
            for _ in range(5000):
                if _thread._count() == OWN_THREADS[0] == len(started):
                    break
                await asyncio.sleep(0.001)
            assert _thread._count() == OWN_THREADS[0] == len(started)
            assert len(started) >= observe_config.enabled()
            start = poller.polls
            for _ in range(POLL_EVERY * 10):
                await asyncio.sleep(0)
            return poller.polls - start

        assert loop.run_until_complete(main()) == 0
    finally:
        loop.close()
