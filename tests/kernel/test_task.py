"""The Task API, on asyncio's task (asyncio loop) and treadle's (treadle loop)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import io
import os
import re
import sys
import traceback
import types

import pytest

import treadle


def test_create_task_type(run, loop_factory):
    async def main():
        t = asyncio.get_running_loop().create_task(asyncio.sleep(0))
        await t
        return type(t)
    cls = run(main())
    if loop_factory is treadle.new_event_loop:
        assert cls is treadle.Task
    else:
        assert issubclass(cls, asyncio.Task)


def test_task_is_future_and_current(run):
    async def child():
        return asyncio.current_task()

    async def main():
        t = asyncio.create_task(child())
        assert asyncio.isfuture(t)
        assert t in asyncio.all_tasks()
        me = asyncio.current_task()
        assert me in asyncio.all_tasks()
        assert await t is t
        assert t not in asyncio.all_tasks()  # done tasks are not listed
        assert asyncio.current_task() is me
        return True
    assert run(main())


def test_result_and_exception_states(run):
    async def main():
        fut_task = asyncio.create_task(asyncio.sleep(0.01, "r"))
        with pytest.raises(asyncio.InvalidStateError, match="Result is not set"):
            fut_task.result()
        with pytest.raises(asyncio.InvalidStateError, match="Exception is not set"):
            fut_task.exception()
        assert not fut_task.done()
        assert await fut_task == "r"
        assert fut_task.done() and not fut_task.cancelled()
        assert fut_task.exception() is None

        async def fail():
            raise KeyError("k")
        t = asyncio.create_task(fail())
        with pytest.raises(KeyError):
            await t
        assert isinstance(t.exception(), KeyError)
        with pytest.raises(KeyError):
            t.result()
        with pytest.raises(RuntimeError, match="Task does not support set_result operation"):
            t.set_result(1)
        with pytest.raises(RuntimeError, match="Task does not support set_exception operation"):
            t.set_exception(ValueError())
        return True
    assert run(main())


def test_cancel_with_message_and_counts(run):
    async def main():
        started = asyncio.Event()

        async def sleeper():
            started.set()
            await asyncio.sleep(10)

        t = asyncio.create_task(sleeper())
        await started.wait()
        assert t.cancelling() == 0
        assert t.cancel("bye")
        assert t.cancelling() == 1
        assert t.cancel()
        assert t.cancelling() == 2
        assert t.uncancel() == 1
        with pytest.raises(asyncio.CancelledError) as info:
            await t
        assert info.value.args == ("bye",)
        assert t.cancelled()
        assert not t.cancel()
        with pytest.raises(asyncio.CancelledError):
            t.result()
        return True
    assert run(main())


def test_cancel_before_first_step(run):
    async def main():
        ran = []

        async def child():
            ran.append(1)

        t = asyncio.create_task(child())
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return ran
    assert run(main()) == []


def test_cancel_swallowed_then_cancel_again(run):
    async def main():
        ready = asyncio.Event()
        log = []

        async def stubborn():
            try:
                ready.set()
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                log.append("swallowed")
            await asyncio.sleep(10)

        t = asyncio.create_task(stubborn())
        await ready.wait()
        t.cancel()
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert not t.done()
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return log
    assert run(main()) == ["swallowed"]


def test_cancel_propagates_to_awaited_task(run):
    async def main():
        inner_started = asyncio.Event()

        async def inner():
            inner_started.set()
            await asyncio.sleep(10)

        async def outer(t):
            await t

        i = asyncio.create_task(inner())
        o = asyncio.create_task(outer(i))
        await inner_started.wait()
        await asyncio.sleep(0)
        o.cancel()
        with pytest.raises(asyncio.CancelledError):
            await o
        assert i.cancelled()
        return True
    assert run(main())


def test_awaiting_failed_task_raises_its_exception(run):
    async def main():
        async def fail():
            await asyncio.sleep(0)
            raise ValueError("inner")

        async def waiter(t):
            try:
                await t
            except ValueError as exc:
                return str(exc)

        t = asyncio.create_task(fail())
        return await asyncio.create_task(waiter(t))
    assert run(main()) == "inner"


def _tb_frames(exc, own=False):
    """The names of the traceback's frames in this file (*own*: in treadle
    too, as (name, treadle?) pairs)."""
    entries = traceback.extract_tb(exc.__traceback__)
    if own:
        package = os.path.dirname(treadle.__file__) + os.sep
        return [(e.name, e.filename.startswith(package)) for e in entries]
    return [e.name for e in entries if e.filename == __file__]


def test_an_awaited_failure_shows_the_frames_that_raised_it_once(run, loop_factory):
    # asyncio's C future hands a failure's traceback on with the exception
    # the first time it is taken (result(), or a task waking on it) and lets
    # go of it then: later takers see only their own frames.  exception()
    # keeps it.  The same on 3.11-3.15.
    async def fail():
        await asyncio.sleep(0)
        raise ValueError("x")

    async def sleeper():
        await asyncio.sleep(10)

    async def awaiter(t):
        return await t

    async def main():
        seen = []

        async def record(label, awaitable_or_call):
            try:
                if callable(awaitable_or_call):
                    awaitable_or_call()
                else:
                    await awaitable_or_call
            except (ValueError, asyncio.CancelledError) as exc:
                seen.append((label, _tb_frames(exc)))
                return exc

        t = asyncio.ensure_future(fail())
        exc = await record("await", t)
        own = [_tb_frames(exc, own=True)]
        own.append(_tb_frames(await record("await again", t), own=True))
        own.append(_tb_frames(await record("result", t.result), own=True))
        t = asyncio.ensure_future(fail())
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(("exception()", _tb_frames(t.exception())))
        await record("result first", t.result)
        await record("then await", t)
        t = asyncio.ensure_future(fail())
        await record("through a task", asyncio.ensure_future(awaiter(t)))
        t = asyncio.ensure_future(sleeper())
        a = asyncio.ensure_future(awaiter(t))
        await asyncio.sleep(0)
        t.cancel()
        await record("cancelled, through a task", a)
        return seen, own

    seen, own = run(main())
    assert seen == [
        ("await", ["record", "fail"]),
        ("await again", ["record"]),
        ("result", ["record"]),
        ("exception()", ["fail"]),
        ("result first", ["record", "fail"]),
        ("then await", ["record"]),
        ("through a task", ["record", "awaiter", "fail"]),
        ("cancelled, through a task", ["record", "awaiter", "sleeper"]),
    ]
    # No frame of the loop's own between the caller and the frames that
    # raised (asyncio's C task raises from C).
    for frames in own:
        assert frames[0] == ("record", False) and not any(mine for _, mine in frames)


def test_a_coroutine_named_like_the_loops_own_steps_keeps_its_frame(run, loop_factory):
    # This file's name ends in "task.py", as the kernel's does: a user's
    # coroutine named _run, _wakeup or _step_body is still the user's frame
    # (treadle once told its own frames by name and file suffix).
    async def _run():
        await asyncio.sleep(0)
        raise ValueError("mine")

    async def _wakeup():
        raise KeyError("mine too")

    async def main():
        errors = []
        for coro in (_run(), _wakeup()):
            t = asyncio.ensure_future(coro)
            await asyncio.wait([t])
            errors.append(_tb_frames(t.exception()))
        return errors

    assert run(main()) == [["_run"], ["_wakeup"]]


def test_names(run):
    async def main():
        t = asyncio.create_task(asyncio.sleep(0), name="worker")
        assert t.get_name() == "worker"
        t.set_name(42)
        assert t.get_name() == "42"
        u = asyncio.create_task(asyncio.sleep(0))
        assert re.fullmatch(r"Task-\d+", u.get_name())
        await asyncio.gather(t, u)
        return True
    assert run(main())


def test_get_coro_and_context(run):
    async def main():
        coro = asyncio.sleep(0)
        ctx = contextvars.copy_context()
        t = asyncio.get_running_loop().create_task(coro, context=ctx)
        assert t.get_coro() is coro
        if hasattr(t, "get_context"):  # asyncio.Task has it from 3.12
            assert t.get_context() is ctx
        await t
        return True
    assert run(main())


def test_each_step_runs_in_task_context(run):
    var = contextvars.ContextVar("var", default="none")

    async def child(value):
        var.set(value)
        seen = []
        for _ in range(3):
            await asyncio.sleep(0)
            seen.append(var.get())
        await asyncio.sleep(0.001)
        seen.append(var.get())
        return seen

    async def main():
        var.set("main")
        a = asyncio.create_task(child("a"))
        b = asyncio.create_task(child("b"))
        ra, rb = await asyncio.gather(a, b)
        return ra, rb, var.get()
    assert run(main()) == (["a"] * 4, ["b"] * 4, "main")


def test_done_callbacks_scheduled_through_loop(run):
    async def main():
        calls = []
        t = asyncio.create_task(asyncio.sleep(0, "x"))
        t.add_done_callback(lambda f: calls.append(("a", f.result())))
        t.add_done_callback(calls.append)
        assert t.remove_done_callback(calls.append) == 1
        assert t.remove_done_callback(calls.append) == 0
        # Callbacks were queued on completion, before our own wake-up.
        await t
        assert calls == [("a", "x")]
        # on a done task, the callback is still scheduled, not called
        t.add_done_callback(lambda f: calls.append("late"))
        assert calls == [("a", "x")]
        await asyncio.sleep(0)
        return calls
    assert run(main())[-1] == "late"


def test_a_finished_tasks_callbacks_run_in_a_row_in_order(run):
    # asyncio queues them one after the other when the task finishes:
    # what the first schedules runs after the last; none can be removed
    # once the task is done, even before they have run.
    async def main():
        loop = asyncio.get_running_loop()
        order = []

        def callback(name):
            def cb(task):
                order.append(name)
                loop.call_soon(order.append, name + "'")
            return cb

        t = loop.create_task(asyncio.sleep(0))
        cbs = [callback(name) for name in "abc"]
        for cb in cbs:
            t.add_done_callback(cb)
        while not t.done():
            await asyncio.sleep(0)
        assert order == []                      # queued, not yet run
        assert t.remove_done_callback(cbs[1]) == 0
        assert t._callbacks is None
        for _ in range(3):
            await asyncio.sleep(0)
        return order
    assert run(main()) == ["a", "b", "c", "a'", "b'", "c'"]


def test_a_failing_done_callback_is_reported_and_the_next_ones_run(run):
    async def main():
        loop = asyncio.get_running_loop()
        reports, order = [], []
        loop.set_exception_handler(lambda loop, context: reports.append(context))

        def fail(task):
            order.append("fail")
            raise ValueError("from a done-callback")

        async def nop():
            pass

        t = loop.create_task(nop())
        t.add_done_callback(lambda task: order.append("first"))
        t.add_done_callback(fail)
        t.add_done_callback(lambda task: order.append("last"))
        for _ in range(3):
            await asyncio.sleep(0)
        return order, reports, t
    order, reports, t = run(main())
    assert order == ["first", "fail", "last"]
    [context] = reports
    assert isinstance(context["exception"], ValueError)
    assert context["message"].startswith("Exception in callback ")
    assert "fail" in context["message"]
    assert not context["handle"].cancelled()
    assert "fail" in repr(context["handle"])


def test_a_done_callback_interrupting_the_loop_leaves_the_rest_queued(loop):
    order = []

    def interrupt(task):
        order.append("b")
        raise KeyboardInterrupt

    async def nop():
        pass

    t = loop.create_task(nop())
    t.add_done_callback(lambda task: order.append("a"))
    t.add_done_callback(interrupt)
    t.add_done_callback(lambda task: order.append("c"))
    t.add_done_callback(lambda task: order.append("d"))
    with pytest.raises(KeyboardInterrupt):
        loop.run_forever()
    assert order == ["a", "b"]
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert order == ["a", "b", "c", "d"]


def test_done_callback_context(run):
    var = contextvars.ContextVar("var", default="default")

    async def main():
        seen = []
        ctx = contextvars.copy_context()
        ctx.run(var.set, "cb ctx")
        t = asyncio.create_task(asyncio.sleep(0))
        t.add_done_callback(lambda f: seen.append(var.get()), context=ctx)
        await t
        await asyncio.sleep(0)
        return seen
    assert run(main()) == ["cb ctx"]


def test_repr(run):
    async def main():
        async def sleeper():
            await asyncio.sleep(10)
        t = asyncio.create_task(sleeper(), name="zz")
        await asyncio.sleep(0)
        pending = repr(t)
        t.cancel()
        cancelling = repr(t)
        with pytest.raises(asyncio.CancelledError):
            await t
        done = repr(t)
        ok = asyncio.create_task(asyncio.sleep(0, 5))
        await ok
        return pending, cancelling, done, repr(ok)
    pending, cancelling, done, ok = run(main())
    assert re.match(r"<Task pending name='zz' coro=<.*sleeper\(\) running at .*:\d+> "
                    r"wait_for=<Future pending", pending), pending
    assert cancelling.startswith("<Task cancelling name='zz'"), cancelling
    assert done.startswith("<Task cancelled name='zz'"), done
    assert re.match(r"<Task finished name='Task-\d+' coro=<sleep\(\) done, defined at .*> result=5>", ok), ok


def test_get_stack_and_print_stack(run):
    async def main():
        async def sleeper():
            await asyncio.sleep(10)
        t = asyncio.create_task(sleeper())
        await asyncio.sleep(0)
        frames = t.get_stack()
        buf = io.StringIO()
        t.print_stack(file=buf)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return [f.f_code.co_name for f in frames], buf.getvalue()
    names, text = run(main())
    assert names == ["sleeper"]
    assert text.startswith("Stack for <Task") and "sleeper" in text


def test_get_stack_of_failed_task(run):
    async def main():
        async def fail():
            raise ValueError("x")
        t = asyncio.create_task(fail())
        await asyncio.wait([t])
        buf = io.StringIO()
        t.print_stack(file=buf)
        return [f.f_code.co_name for f in t.get_stack()], buf.getvalue()
    names, text = run(main())
    assert names == ["fail"]
    assert text.startswith("Traceback for <Task") and "ValueError: x" in text


def test_bad_yield_errors(run):
    @types.coroutine
    def bad_yield():
        yield 42

    @types.coroutine
    def yield_generator():
        yield (x for x in ())

    async def main():
        with pytest.raises(RuntimeError, match="Task got bad yield: 42"):
            await asyncio.create_task(_wrap(bad_yield()))
        with pytest.raises(RuntimeError, match="yield was used instead of yield from for generator"):
            await asyncio.create_task(_wrap(yield_generator()))
        return True

    async def _wrap(aw):
        return await aw

    assert run(main())


def test_yield_future_without_blocking_flag(run):
    @types.coroutine
    def yield_future_plainly(fut):
        yield fut

    async def main():
        fut = asyncio.get_running_loop().create_future()

        async def body():
            await yield_future_plainly(fut)
        with pytest.raises(RuntimeError, match="yield was used instead of yield from in task"):
            await asyncio.create_task(body())
        return True
    assert run(main())


def test_task_awaits_itself(run):
    async def main():
        async def selfish():
            await asyncio.sleep(0)
            await t
        t = asyncio.create_task(selfish())
        with pytest.raises(RuntimeError, match="Task cannot await on itself"):
            await t
        return True
    assert run(main())


def test_future_from_other_loop(run, loop_factory):
    other = loop_factory()
    try:
        async def main():
            fut = other.create_future()

            async def body():
                await fut
            with pytest.raises(RuntimeError, match="attached to a different loop"):
                await asyncio.create_task(body())
            return True
        assert run(main())
    finally:
        other.close()


def test_non_coroutine_rejected(run):
    async def main():
        with pytest.raises(TypeError, match="a coroutine was expected, got 1"):
            asyncio.get_running_loop().create_task(1)
        return True
    assert run(main())


def test_pending_task_destroyed_is_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def forever():
        await loop.create_future()

    async def main():
        asyncio.ensure_future(forever())
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    gc.collect()
    messages = [c["message"] for c in contexts]
    assert "Task was destroyed but it is pending!" in messages


def test_unretrieved_exception_is_reported(loop):
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx))

    async def fail():
        raise ValueError("lost")

    async def main():
        asyncio.ensure_future(fail())
        await asyncio.sleep(0)
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    gc.collect()
    assert any(c["message"] == "Task exception was never retrieved"
               and isinstance(c["exception"], ValueError) for c in contexts)


def test_private_attributes_libraries_read(run):
    async def main():
        fut = asyncio.get_running_loop().create_future()

        async def waiter():
            await fut

        t = asyncio.create_task(waiter())
        assert t._must_cancel is False
        assert t._fut_waiter is None
        await asyncio.sleep(0)
        assert t._fut_waiter is fut
        assert t._log_destroy_pending is True
        t._log_destroy_pending = False
        assert t._source_traceback is None
        assert t._loop is asyncio.get_running_loop()
        t.cancel()
        assert fut.cancelled()
        with pytest.raises(asyncio.CancelledError):
            await t
        t2 = asyncio.create_task(asyncio.sleep(0))
        t2.cancel()
        assert t2._must_cancel is True
        with pytest.raises(asyncio.CancelledError):
            await t2
        return True
    assert run(main())


def test_source_traceback_in_debug(run):
    async def main():
        t = asyncio.create_task(asyncio.sleep(0))
        await t
        return t._source_traceback
    tb = run(main(), debug=True)
    assert tb and "main" in [frame.name for frame in tb]


def test_arbitrary_attributes_on_tasks(run):
    async def main():
        t = asyncio.create_task(asyncio.sleep(0))
        t.some_library_tag = 1
        await t
        return t.some_library_tag
    assert run(main()) == 1


def test_task_class_getitem():
    assert treadle.Task[int] is not None


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
def test_asyncio_eager_task_factory(run):
    async def main():
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
        order = []

        async def child():
            order.append("child start")
            await asyncio.sleep(0)
            order.append("child end")
            return 1

        t = asyncio.create_task(child())
        order.append("after create")
        assert await t == 1
        done_t = asyncio.create_task(asyncio.sleep(0) if False else _instant())
        assert done_t.done() and done_t.result() == "instant"
        return order

    async def _instant():
        return "instant"

    assert run(main()) == ["child start", "after create", "child end"]


def test_treadle_eager_task_factory():
    async def main():
        asyncio.get_running_loop().set_task_factory(treadle.eager_task_factory)
        order = []

        async def child():
            order.append(("child start", asyncio.current_task() is t_holder[0] if t_holder else None))
            await asyncio.sleep(0)
            order.append("child end")

        t_holder = []
        t = asyncio.create_task(child())
        t_holder.append(t)
        order.append("after create")
        await t

        async def instant():
            return asyncio.current_task()
        u = asyncio.create_task(instant())
        assert u.done() and u.result() is u
        assert asyncio.current_task() is not u
        return order
    order = treadle.run(main())
    assert order[0][0] == "child start" and order[1:] == ["after create", "child end"]


@pytest.mark.parametrize("factory", ["eager_task_factory", "task_factory"])
def test_treadle_factories_through_create_task(factory):
    """create_task() with one of treadle's own factories set: the same task
    a call of the factory makes (name, context, eager_start as given, the
    current task swapped around an eager step and restored, from a task
    and from a plain callback)."""
    chosen = getattr(treadle, factory)
    eager_default = factory == "eager_task_factory"
    var = contextvars.ContextVar("var", default="unset")

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(chosen)
        me = asyncio.current_task()
        seen = []

        async def child():
            seen.append((asyncio.current_task().get_name(), var.get()))
            return asyncio.current_task()

        ctx = contextvars.copy_context()
        ctx.run(var.set, "in ctx")
        t = loop.create_task(child(), name="kid", context=ctx)
        assert type(t) is treadle.Task and t.get_name() == "kid"
        assert t.done() is eager_default
        assert asyncio.current_task() is me
        assert await t is t
        assert seen[-1][1] == "in ctx"
        lazy = loop.create_task(child(), eager_start=False)
        assert not lazy.done()
        await lazy
        eager = loop.create_task(child(), eager_start=True)
        assert eager.done() and eager.result() is eager
        assert asyncio.current_task() is me

        from_callback = loop.create_future()

        def callback():
            u = loop.create_task(child(), eager_start=True)
            from_callback.set_result((u.done(), asyncio.current_task()))
        loop.call_soon(callback)
        assert await from_callback == (True, None)
        if sys.version_info >= (3, 14):
            coro = child()
            with pytest.raises(TypeError, match="bogus"):
                loop.create_task(coro, bogus=1)
            coro.close()
        return seen

    seen = treadle.run(main())
    # Up to 3.13 create_task() names the task after the factory returns, as
    # asyncio's does: an eager first step still sees the default name.
    eager_sees_name = sys.version_info >= (3, 14) or not eager_default
    assert seen[0] == ("kid" if eager_sees_name else seen[0][0], "in ctx")
    assert eager_sees_name or seen[0][0].startswith("Task-")


def test_stock_asyncio_task_factory_on_treadle():
    """The documented way to get asyncio's C task on treadle's loop."""
    def factory(loop, coro, **kwargs):
        return asyncio.Task(coro, loop=loop, **kwargs)

    async def main():
        asyncio.get_running_loop().set_task_factory(factory)

        async def child():
            await asyncio.sleep(0)
            await asyncio.sleep(0.001)
            return asyncio.current_task()

        t = asyncio.create_task(child())
        assert type(t) is asyncio.Task
        assert await t is t
        # and mixing: a treadle task awaiting a C task and the reverse
        asyncio.get_running_loop().set_task_factory(None)
        tt = asyncio.create_task(child())
        assert type(tt) is treadle.Task
        asyncio.get_running_loop().set_task_factory(factory)

        async def await_it(x):
            return await x
        assert await asyncio.create_task(await_it(tt)) is tt
        return True
    assert treadle.run(main())


def test_task_switch_allocates_no_handle():
    """Rule 1 of the kernel's task: a bare yield requeues the task itself
    (its kernel core, no Handle)."""
    from treadle._kernel.task import TaskCore
    seen = []

    async def main():
        loop = asyncio.get_running_loop()

        async def spinner():
            for _ in range(3):
                await asyncio.sleep(0)

        t = asyncio.create_task(spinner())
        await asyncio.sleep(0)
        seen.extend(type(item) for item in loop._ready)
        await t
    treadle.run(main())
    assert seen and all(cls is TaskCore for cls in seen), seen


def test_task_to_task_wait_is_direct():
    """Rule 2: a treadle task waiting on another is stored as itself."""
    async def main():
        gate = asyncio.Event()

        async def inner():
            await gate.wait()

        async def outer(t):
            await t

        i = asyncio.create_task(inner())
        o = asyncio.create_task(outer(i))
        await asyncio.sleep(0)
        callbacks = i._core.callback_entries()
        gate.set()
        await o
        return callbacks, o._core
    callbacks, o_core = treadle.run(main())
    assert callbacks == [o_core]


def _registry_refs_to(task):
    from treadle._kernel import _compat
    return [r for r in _compat._registry.data if r() is task]


def test_finished_task_leaves_the_registry_at_once():
    """A treadle task takes its weak reference out of asyncio's registry when
    it finishes, not when it is freed (no WeakSet._remove call per task),
    and all_tasks() reads the same before and after."""
    async def child():
        await asyncio.sleep(0)

    from treadle._kernel import _compat
    assert _compat.registry_set_add is not None     # the fast path, on every Python

    async def main():
        t = asyncio.create_task(child())
        assert len(_registry_refs_to(t)) == 1 and t in asyncio.all_tasks()
        await t
        return t            # still referenced

    t = treadle.run(main())
    assert t.done() and _registry_refs_to(t) == []


def test_task_finishing_while_the_registry_is_iterated():
    """While someone iterates asyncio's registry, a finishing task leaves it
    alone (the set may not change size under the iteration); its reference
    goes through WeakSet's deferred removal once the task is freed."""
    from treadle._kernel import _compat
    registry = _compat._registry

    async def child():
        await asyncio.sleep(0)

    async def main():
        me = asyncio.current_task()
        t = asyncio.create_task(child())
        walk = iter(registry)
        seen = [next(walk)]           # an iteration is now open
        await t
        seen.extend(walk)             # no "set changed size"
        assert me in seen
        if hasattr(registry, "_iterating"):     # up to 3.13: a guarded iteration
            assert len(_registry_refs_to(t)) == 1   # left for the callback
        else:                                   # 3.14+: it iterates over a copy
            assert _registry_refs_to(t) == []
        del t
        gc.collect()
        registry.add(me)              # commits the deferred removals
        return True

    assert treadle.run(main())


def test_failed_task_freed_without_cyclic_gc(loop):
    """A failed, unreferenced task is freed (and its exception reported) by
    reference counting alone: no frame left behind by the kernel holds it."""
    contexts = []
    loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx["message"]))

    async def fail():
        await asyncio.sleep(0)
        1 / 0

    async def main():
        asyncio.ensure_future(fail())
        for _ in range(4):
            await asyncio.sleep(0)
        return list(contexts)

    gc.disable()
    try:
        seen = loop.run_until_complete(main())
    finally:
        gc.enable()
    assert "Task exception was never retrieved" in seen


def test_task_defines_every_attribute_of_asyncio_task():
    """treadle.Task subclasses the C asyncio.Task without ever running its
    __init__ (its fields stay zero): every method and attribute of the Task
    and Future APIs must therefore be treadle's own (taskclass.py's rule).
    The one exception is the awaited-by set, which asyncio's own functions
    write into the C fields on 3.14+."""
    own: set[str] = set()
    for cls in treadle.Task.__mro__:
        if cls is asyncio.Task:
            break
        own |= set(vars(cls))
    must = [n for n in dir(asyncio.Task)
            if not n.startswith("__")
            or n in ("__repr__", "__del__", "__await__", "__iter__", "__init__")]
    left_to_c = [n for n in must if n not in own and n != "_asyncio_awaited_by"]
    assert left_to_c == []


# -- where a failure came from survives the wait -------------------------------

def _frames(exc):
    import traceback
    return [f.name for f in traceback.extract_tb(exc.__traceback__)]


async def _boom():
    raise ValueError("boom")


def test_awaited_task_failure_keeps_its_traceback(run):
    """``await task`` re-raises the task's exception with the frames it
    was raised in (the compiled build lost them: a generator compiled by
    mypyc drops the traceback of what is thrown into it)."""
    async def main():
        t = asyncio.get_running_loop().create_task(_boom())
        try:
            await t
        except ValueError as exc:
            return _frames(exc)
    frames = run(main())
    assert frames[0] == "main" and frames[-1] == "_boom", frames


def test_failure_through_a_future_keeps_its_traceback(run):
    """A failure that reaches a task through a future (gather's) shows the
    awaiting coroutine and where it was raised, no frame of the loop's."""
    async def main():
        try:
            await asyncio.gather(_boom())
        except ValueError as exc:
            return _frames(exc)
    frames = run(main())
    assert frames[0] == "main" and frames[-1] == "_boom", frames
    assert not [f for f in frames if f in ("_run", "_step", "_step_body", "_wakeup")], frames


def test_a_handled_failure_is_not_the_context_of_the_next_error(run):
    """After ``except`` handled what an awaited task or future raised, the
    coroutine is handling nothing: ``sys.exc_info()`` is empty and a new
    error has no ``__context__`` (treadle's kernel stepped the coroutine
    from inside its own ``except`` block, so the failure it threw in stayed
    "being handled" for the rest of the step)."""
    async def failing():
        await asyncio.sleep(0)
        raise ValueError("awaited")

    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        future = loop.create_future()
        loop.call_soon(future.set_exception, OSError("future"))
        for awaitable in (loop.create_task(failing()), future):
            try:
                await awaitable
            except (ValueError, OSError):
                pass
            seen.append(sys.exc_info())
            try:
                raise KeyError("next")
            except KeyError as exc:
                seen.append(exc.__context__)
        return seen
    assert run(main()) == [(None, None, None), None] * 2


def test_awaiting_a_cancelled_task_shows_where_it_was_cancelled(run):
    """The CancelledError ``await task`` raises for a cancelled task is the
    one its coroutine raised, with its frames (compiled on 3.12+ they were
    lost on the way into the awaiting coroutine, as in the failure case)."""
    async def forever():
        await asyncio.sleep(100)

    async def main():
        t = asyncio.get_running_loop().create_task(forever())
        await asyncio.sleep(0)
        t.cancel("stop")
        try:
            await t
        except asyncio.CancelledError as exc:
            return exc.args, _frames(exc)
    args, frames = run(main())
    assert args == ("stop",)
    assert frames[0] == "main" and "forever" in frames, frames
