"""Shared fixtures.

Behavioural tests take the ``loop_factory`` fixture and so run twice: on
asyncio's own loop (proving the test tests asyncio's behaviour) and on
treadle's.  Every test is checked for leaks: file descriptors, threads and
tasks must be back to what they were before it.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from typing import Any, Callable, Coroutine, TypeVar

import pytest

import treadle

T = TypeVar("T")

LOOP_FACTORIES = {
    "asyncio": asyncio.new_event_loop,
    "treadle": treadle.new_event_loop,
}


@pytest.fixture(params=list(LOOP_FACTORIES), ids=list(LOOP_FACTORIES))
def loop_factory(request: pytest.FixtureRequest) -> Callable[[], asyncio.AbstractEventLoop]:
    return LOOP_FACTORIES[request.param]


@pytest.fixture
def loop(loop_factory: Callable[[], asyncio.AbstractEventLoop]):
    loop = loop_factory()
    yield loop
    if not loop.is_closed():
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.run_until_complete(loop.shutdown_default_executor())
        loop.close()


@pytest.fixture
def run(loop_factory: Callable[[], asyncio.AbstractEventLoop]):
    """run(coro) -> result, on a fresh loop from the factory (asyncio.Runner)."""
    def _run(coro: Coroutine[Any, Any, T], *, debug: bool | None = None) -> T:
        with asyncio.Runner(loop_factory=loop_factory, debug=debug) as runner:
            return runner.run(coro)
    return _run


def _open_fds() -> set[int]:
    try:
        return {int(fd) for fd in os.listdir("/proc/self/fd")}
    except FileNotFoundError:          # not Linux: nothing to compare
        return set()


def _threads() -> set[threading.Thread]:
    return set(threading.enumerate())


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest):
    """Fail a test that leaves an fd, a thread or an event loop behind."""
    gc.collect()
    fds_before = _open_fds()
    threads_before = _threads()
    yield
    if request.node.get_closest_marker("leaks_ok"):
        gc.collect()
    else:
        _check_for_leaks(fds_before, threads_before)
    # What outlives a test (pytest's reports, imported modules, caches) is
    # moved out of the cyclic collector's sight, so that every later
    # gc.collect() - the two here and those in tests - walks only what
    # later tests made.  Walking the whole heap twice per test was four
    # fifths of the suite's time (58 ms a collection with hypothesis, mypy
    # and every test module loaded).  What a test made is frozen only after
    # its end, once collected and checked.
    gc.freeze()


def _check_for_leaks(fds_before: set[int], threads_before: set[threading.Thread]) -> None:
    deadline = time.monotonic() + 2.0
    while True:
        gc.collect()
        new_fds = _open_fds() - fds_before
        # listdir itself opens one fd while it runs; ignore fds gone now
        new_fds = {fd for fd in new_fds if os.path.exists(f"/proc/self/fd/{fd}")}
        new_threads = {t for t in _threads() - threads_before if t.is_alive()}
        if not new_fds and not new_threads:
            break
        if time.monotonic() > deadline:
            details = {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in new_fds
                       if os.path.exists(f"/proc/self/fd/{fd}")}
            pytest.fail(f"leaked fds {details} threads {new_threads}")
        time.sleep(0.01)
    assert asyncio.events._get_running_loop() is None


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "leaks_ok: skip the fd/thread leak check")
