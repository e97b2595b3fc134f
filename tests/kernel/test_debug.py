"""Debug mode, as asyncio's: slow callbacks, source tracebacks, origin
tracking, wrong-thread checks, PYTHONASYNCIODEBUG and -X dev."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time

import pytest

import treadle


def test_slow_callback_is_logged(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    def slow():
        time.sleep(0.03)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(slow)
        loop.call_soon(loop.stop)
        loop.run_forever()
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("Executing <Handle ") and "slow()" in m and "took" in m
               for m in messages), messages


def test_slow_task_step_names_the_task(loop, caplog):
    loop.set_debug(True)
    loop.slow_callback_duration = 0.01

    async def blocker():
        time.sleep(0.03)

    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.run_until_complete(loop.create_task(blocker(), name="the-blocker"))
    messages = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    assert any("the-blocker" in m and "blocker()" in m for m in messages), messages


def test_fast_callbacks_are_not_logged(loop, caplog):
    loop.set_debug(True)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        loop.call_soon(lambda: None)
        loop.call_soon(loop.stop)
        loop.run_forever()
    assert not [r for r in caplog.records if "took" in r.getMessage()]


def test_handle_records_where_it_was_created(loop):
    loop.set_debug(True)
    h = loop.call_soon(print)
    assert h._source_traceback
    assert h._source_traceback[-1].name == "test_handle_records_where_it_was_created"
    assert "created at" in repr(h)
    h.cancel()


def test_exception_log_shows_handle_traceback(loop, caplog):
    loop.set_debug(True)

    def bad():
        raise ValueError("debug me")

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_soon(bad)
        loop.call_soon(loop.stop)
        loop.run_forever()
    text = caplog.text
    assert "Exception in callback" in text and "debug me" in text
    assert "Object created at (most recent call last)" in text


def test_coroutine_origin_tracking_in_debug(loop):
    loop.set_debug(True)

    async def main():
        return sys.get_coroutine_origin_tracking_depth()

    depth = loop.run_until_complete(main())
    assert depth > 0
    assert sys.get_coroutine_origin_tracking_depth() == 0


async def _lose_a_failed_task():
    """Start a task that fails, and drop it without retrieving its
    exception (reported when it is collected)."""
    async def fail():
        raise KeyError("lost")

    asyncio.ensure_future(fail())
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def test_never_retrieved_exception_logged_with_source(loop, caplog):
    loop.set_debug(True)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.run_until_complete(_lose_a_failed_task())
        import gc
        gc.collect()
    assert "exception was never retrieved" in caplog.text
    assert "KeyError" in caplog.text


def test_a_tasks_source_traceback_is_the_whole_stack(loop):
    """Debug mode: where a task was created, all of the stack, as asyncio's
    C task records it (a task made deep in a call chain still shows the
    code that started the chain)."""
    loop.set_debug(True)

    def nest(n, fn):
        return fn() if n == 0 else nest(n - 1, fn)

    async def noop():
        pass

    async def main():
        task = nest(20, lambda: asyncio.get_running_loop().create_task(noop()))
        await task
        return task._source_traceback

    stack = loop.run_until_complete(main())
    names = [frame.name for frame in stack]
    assert names.count("nest") == 21 and "main" in names


def _made_by_the_loop(path: str) -> bool:
    return any(os.path.dirname(os.path.abspath(path)).startswith(os.path.dirname(p))
               for p in (asyncio.__file__, treadle.__file__))


def test_log_records_and_warnings_of_the_loop_name_the_loop_not_the_callers_line(
        loop, loop_factory, caplog):
    """A record the loop logs ("Task exception was never retrieved") and the
    warning an unclosed loop gives come from the loop's own code, not from
    whichever line of the program set off the collection (compiled code has
    no Python frame to attribute them to)."""
    import gc
    import warnings

    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.run_until_complete(_lose_a_failed_task())
        gc.collect()
    records = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert records and all(_made_by_the_loop(r.pathname) for r in records), \
        [(r.pathname, r.lineno) for r in records]
    assert {r.funcName for r in records} == {"default_exception_handler"}

    def leak():
        unclosed = loop_factory()
        unclosed.call_soon(print)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        leak()
        gc.collect()
    unclosed = [w for w in caught if "unclosed event loop" in str(w.message)]
    assert unclosed and all(_made_by_the_loop(w.filename) for w in unclosed), \
        [(w.filename, w.lineno) for w in unclosed]


@pytest.mark.parametrize("how", ["env", "devmode"])
def test_debug_mode_from_environment(how):
    code = ("import asyncio, treadle\n"
            "async def main(): return asyncio.get_running_loop().get_debug()\n"
            "print(treadle.run(main()))\n")
    env = dict(os.environ)
    args = [sys.executable]
    if how == "env":
        env["PYTHONASYNCIODEBUG"] = "1"
    else:
        env.pop("PYTHONASYNCIODEBUG", None)
        args += ["-X", "dev"]
    out = subprocess.run([*args, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "True", out.stderr


def test_debug_mode_off_by_default():
    env = dict(os.environ)
    env.pop("PYTHONASYNCIODEBUG", None)
    code = "import treadle; l = treadle.new_event_loop(); print(l.get_debug()); l.close()"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_set_debug_while_running(loop):
    async def main():
        loop.set_debug(True)
        await asyncio.sleep(0)
        return loop.get_debug(), sys.get_coroutine_origin_tracking_depth()

    debug, depth = loop.run_until_complete(main())
    assert debug is True and depth > 0
    loop.set_debug(False)
    assert loop.get_debug() is False


def test_debug_source_traceback_makes_no_path_syscalls(loop, monkeypatch):
    """Recording where a handle was created reads the stack only: no
    abspath()/getcwd() for every callback scheduled in debug mode (asyncio
    makes none; aiohttp's tests run blockbuster, which flags them as
    blocking calls in the event loop)."""
    loop.set_debug(True)
    calls: list[str] = []
    real_abspath, real_getcwd = os.path.abspath, os.getcwd

    def abspath(path: str) -> str:
        calls.append("abspath")
        return real_abspath(path)

    def getcwd() -> str:
        calls.append("getcwd")
        return real_getcwd()

    monkeypatch.setattr(os.path, "abspath", abspath)
    monkeypatch.setattr(os, "getcwd", getcwd)
    handle = loop.call_soon(lambda: None)
    monkeypatch.undo()
    handle.cancel()
    assert handle._source_traceback
    assert calls == []


def test_a_new_loop_logs_its_poller_at_debug_level(loop_factory, caplog):
    """asyncio's selector loops log "Using selector: ..." on the asyncio
    logger at DEBUG when they are made; treadle's name their poller."""
    with caplog.at_level(logging.DEBUG, logger="asyncio"):
        loop_factory().close()
    assert any(r.levelno == logging.DEBUG and r.getMessage().startswith("Using selector: ")
               for r in caplog.records), caplog.records
