"""call_soon / call_later / call_at / call_soon_threadsafe, on both loops."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import math
import threading
import time
import weakref

import pytest

import treadle
from treadle._kernel._format import HIDES_ARGUMENTS


def test_call_soon_runs_in_fifo_order_with_args(loop):
    out = []
    for i in range(5):
        loop.call_soon(out.append, i)
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == [0, 1, 2, 3, 4]


def test_callbacks_scheduled_by_callbacks_run_next_turn(loop):
    out = []

    def first():
        out.append("first")
        loop.call_soon(out.append, "nested")

    loop.call_soon(first)
    loop.call_soon(out.append, "second")
    loop.call_soon(loop.stop)
    loop.run_forever()
    # stop() ends the loop after the current batch: "nested" has not run.
    assert out == ["first", "second"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == ["first", "second", "nested"]


def test_handle_cancel(loop):
    out = []
    h = loop.call_soon(out.append, 1)
    assert not h.cancelled()
    h.cancel()
    assert h.cancelled()
    h.cancel()  # idempotent
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == []


def test_handles_are_asyncio_handles_to_isinstance(loop):
    """``isinstance(h, asyncio.Handle)`` holds for what call_soon() returns,
    and ``asyncio.TimerHandle`` for timers, as on asyncio (aiocache's tests
    check it); a plain handle is no TimerHandle."""
    soon = [loop.call_soon(print), loop.call_soon_threadsafe(print)]
    timers = [loop.call_later(60, print), loop.call_at(loop.time() + 60, print)]
    for h in soon + timers:
        assert isinstance(h, asyncio.Handle)
        assert isinstance(h, type(h))
        assert not isinstance(h, (asyncio.Future, int))
    for h in soon:
        assert not isinstance(h, asyncio.TimerHandle)
    for h in timers:
        assert isinstance(h, asyncio.TimerHandle)
        assert h == h and not h < h and h.when() > loop.time()
    for h in soon + timers:
        h.cancel()
    loop.run_until_complete(asyncio.sleep(0))


def test_a_handles_type_is_treadles_own():
    """treadle's handles are its own classes (compiled), which only answer
    asyncio's for ``isinstance()``."""
    loop = treadle.new_event_loop()
    try:
        h = loop.call_later(60, print)
        assert type(h).__module__.startswith("treadle.")
        assert h.__class__ is asyncio.TimerHandle
        assert type(h).__class__ is type
        assert "TimerHandle" in repr(h)
        h.cancel()
    finally:
        loop.close()


def test_handles_take_weak_references(loop):
    """As asyncio's do (uvloop's suite checks it; mypyc gives a compiled
    class no weak reference slot of its own, setup.py adds it)."""
    dead: list[str] = []
    handles = {
        "call_soon": loop.call_soon(print),
        "call_later": loop.call_later(60, print),
        "call_at": loop.call_at(loop.time() + 60, print),
        "call_soon_threadsafe": loop.call_soon_threadsafe(print),
    }
    refs = {name: weakref.ref(h, lambda _, name=name: dead.append(name))
            for name, h in handles.items()}
    table = weakref.WeakValueDictionary(handles)
    assert all(refs[name]() is h for name, h in handles.items())
    for h in handles.values():
        h.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()                 # the cancelled timers leave the loop's heap
    del handles, h
    gc.collect()
    assert [name for name, ref in refs.items() if ref() is not None] == []
    assert sorted(dead) == sorted(refs) and len(table) == 0


def test_call_soon_context(loop):
    var = contextvars.ContextVar("var", default="unset")
    seen = []
    ctx = contextvars.copy_context()
    ctx.run(var.set, "in ctx")
    loop.call_soon(lambda: seen.append(var.get()), context=ctx)
    var.set("outer")
    loop.call_soon(lambda: seen.append(var.get()))
    var.set("later")
    loop.call_soon(loop.stop)
    loop.run_forever()
    # The second callback saw the context as it was when it was scheduled.
    assert seen == ["in ctx", "outer"]


def test_callbacks_do_not_leak_context_changes(loop):
    var = contextvars.ContextVar("var", default=0)
    seen = []
    loop.call_soon(var.set, 1)
    loop.call_soon(lambda: seen.append(var.get()))
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert seen == [0]


def test_call_later_order_and_when(loop):
    out = []
    t0 = loop.time()
    h2 = loop.call_later(0.02, out.append, 2)
    h1 = loop.call_later(0.01, out.append, 1)
    loop.call_later(0.03, loop.stop)
    assert isinstance(h1.when(), float)
    assert h1.when() >= t0 + 0.01 and h2.when() >= t0 + 0.02
    loop.run_forever()
    assert out == [1, 2]
    assert loop.time() - t0 >= 0.03 - loop_resolution()


def loop_resolution() -> float:
    return time.get_clock_info("monotonic").resolution + 0.001


def test_call_at_in_the_past_runs_soon(loop):
    out = []
    loop.call_at(loop.time() - 10, out.append, "late")
    loop.call_later(-5, out.append, "negative")
    loop.call_soon(loop.call_soon, loop.stop)
    loop.run_forever()
    assert sorted(out) == ["late", "negative"]


def test_cancelled_timer_does_not_run(loop):
    out = []
    h = loop.call_later(0.001, out.append, 1)
    h.cancel()
    assert h.cancelled()
    loop.call_later(0.01, loop.stop)
    loop.run_forever()
    assert out == []


def test_timer_handle_repr_and_context(loop):
    h = loop.call_later(10, print, "x")
    assert "when=" in repr(h) and "print" in repr(h)
    assert isinstance(h.get_context(), contextvars.Context) if hasattr(h, "get_context") else True
    h.cancel()
    assert "cancelled" in repr(h)


def test_call_soon_threadsafe_wakes_blocked_loop(loop):
    out = []

    def worker():
        time.sleep(0.05)
        loop.call_soon_threadsafe(out.append, "from thread")
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=worker)
    t0 = time.monotonic()
    t.start()
    loop.run_forever()  # blocks in the poller with nothing to do
    t.join()
    assert out == ["from thread"]
    assert time.monotonic() - t0 < 5


def test_many_threadsafe_calls_all_arrive(loop):
    n = 2000
    out = []
    done = loop.create_future()

    def add(i):
        out.append(i)
        if len(out) == n:
            done.set_result(None)

    def worker(base):
        for i in range(n // 4):
            loop.call_soon_threadsafe(add, base + i)

    threads = [threading.Thread(target=worker, args=(k * 10_000,)) for k in range(4)]
    for t in threads:
        t.start()
    loop.run_until_complete(asyncio.wait_for(done, 10))
    for t in threads:
        t.join()
    assert len(set(out)) == n


def test_stop_before_run_forever_runs_one_turn(loop):
    out = []
    loop.call_soon(out.append, 1)
    loop.stop()
    loop.run_forever()
    assert out == [1]
    assert not loop.is_running()


# -- bad input ---------------------------------------------------------------

def test_call_later_none_delay(loop):
    with pytest.raises(TypeError, match="delay must not be None"):
        loop.call_later(None, print)


def test_call_at_none(loop):
    with pytest.raises(TypeError, match="when cannot be None"):
        loop.call_at(None, print)


def test_call_later_str_delay(loop):
    with pytest.raises(TypeError):
        loop.call_later("1", print)


def test_nan_delay_is_rejected_by_treadle():
    # asyncio accepts NaN and fires the callback at once (its heap breaks);
    # uvloop raises ValueError.  treadle raises ValueError: documented.
    loop = treadle.new_event_loop()
    try:
        with pytest.raises(ValueError, match="NaN"):
            loop.call_later(math.nan, print)
        with pytest.raises(ValueError, match="NaN"):
            loop.call_at(math.nan, print)
    finally:
        loop.close()


def test_coroutine_object_rejected_in_debug(loop):
    loop.set_debug(True)
    coro = asyncio.sleep(0)
    with pytest.raises(TypeError, match=r"coroutines cannot be used with call_soon\(\)"):
        loop.call_soon(coro)
    with pytest.raises(TypeError, match=r"coroutines cannot be used with call_later|call_at"):
        loop.call_later(1, coro)
    coro.close()


def test_coroutine_function_rejected_in_debug(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError, match=r"coroutines cannot be used with call_soon_threadsafe\(\)"):
        loop.call_soon_threadsafe(asyncio.sleep)
    with pytest.raises(TypeError, match=r"coroutines cannot be used with call_soon\(\)"):
        loop.call_soon(asyncio.sleep)


def test_non_callable_rejected_in_debug(loop):
    loop.set_debug(True)
    with pytest.raises(TypeError, match=r"a callable object was expected by call_soon\(\), got 1"):
        loop.call_soon(1)


def test_non_callable_accepted_outside_debug_and_reported_when_run(loop):
    # As asyncio: only debug mode checks at the call; otherwise the handle
    # fails when it runs, through the exception handler, and the loop goes
    # on (sanic's tests schedule a Task with call_later()).
    errors = []
    loop.set_exception_handler(lambda loop, context: errors.append(context))
    coro = asyncio.sleep(0)
    handles = [loop.call_soon(1), loop.call_later(0, "not callable"),
               loop.call_soon_threadsafe(coro), loop.call_at(loop.time(), None)]
    loop.run_until_complete(asyncio.sleep(0.01))
    assert sorted(id(c["handle"]) for c in errors) == sorted(map(id, handles))
    for context in errors:
        assert context["message"].startswith("Exception in callback ")
        assert isinstance(context["exception"], TypeError)
        assert "not callable" in str(context["exception"])
    coro.close()


@pytest.mark.parametrize("debug", [False, True])
def test_a_callbacks_arguments_are_shown_where_asyncio_shows_them(loop, debug):
    # From 3.14 asyncio leaves them out of handle reprs and "Exception in
    # callback" messages outside debug mode (they may hold secrets).
    loop.set_debug(debug)
    errors = []
    loop.set_exception_handler(lambda loop, context: errors.append(context))

    def fails(secret):
        raise RuntimeError

    handle = loop.call_soon(fails, "s3cret")
    shown = "s3cret" in repr(handle)
    loop.run_until_complete(asyncio.sleep(0))
    assert len(errors) == 1
    assert ("s3cret" in errors[0]["message"]) is shown
    assert shown is (debug or not HIDES_ARGUMENTS)
    assert ".fails()" in errors[0]["message"] or shown


def test_wrong_thread_detected_in_debug(loop):
    loop.set_debug(True)
    errors = []

    def other_thread():
        try:
            loop.call_soon(print)
        except RuntimeError as exc:
            errors.append(str(exc))

    async def main():
        t = threading.Thread(target=other_thread)
        t.start()
        await loop.run_in_executor(None, t.join)

    loop.run_until_complete(main())
    assert errors and "Non-thread-safe operation" in errors[0]


def test_closed_loop_rejects_everything(loop):
    loop.close()
    assert loop.is_closed()
    loop.close()  # idempotent
    for call in (lambda: loop.call_soon(print), lambda: loop.call_later(1, print),
                 lambda: loop.call_at(1, print),
                 lambda: loop.call_soon_threadsafe(print),
                 lambda: loop.run_forever()):
        with pytest.raises(RuntimeError, match="Event loop is closed"):
            call()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.run_until_complete(coro)
    coro.close()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        loop.create_task(coro)
    coro.close()
