"""treadle's cancel scopes: level-triggered cancellation, deadlines, shields,
and their interplay with asyncio's own cancellation (treadle-only feature;
asyncio's primitives are the things being cancelled)."""

from __future__ import annotations

import asyncio
import math
import socket
import sys

import pytest

import treadle
from treadle import CancelScope, fail_after, fail_at, move_on_after, move_on_at


def run(coro):
    return treadle.run(coro)


# -- basics ------------------------------------------------------------------

def test_move_on_after_leaves_silently_and_restores_counts():
    async def main():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with move_on_after(0.02) as scope:
            await asyncio.sleep(10)
            pytest.fail("not reached")
        return scope.cancel_called, scope.cancelled_caught, loop.time() - t0, task.cancelling()
    called, caught, elapsed, cancelling = run(main())
    assert called and caught
    assert 0.015 < elapsed < 5
    assert cancelling == 0


def test_scope_not_cancelled_is_transparent():
    async def main():
        with CancelScope() as scope:
            await asyncio.sleep(0)
            value = 7
        return value, scope.cancel_called, scope.cancelled_caught
    assert run(main()) == (7, False, False)


def test_level_triggered_every_await_raises_until_leaving():
    async def main():
        raised = 0
        with CancelScope() as scope:
            scope.cancel()
            for _ in range(5):
                try:
                    await asyncio.sleep(1)
                except asyncio.CancelledError:
                    raised += 1
            try:
                await asyncio.sleep(0)          # even a bare checkpoint
            except asyncio.CancelledError:
                raised += 1
        await asyncio.sleep(0)                  # outside: no cancellation
        return raised, asyncio.current_task().cancelling()
    assert run(main()) == (6, 0)


def test_cancel_before_enter_and_reason_message():
    async def main():
        scope = CancelScope()
        scope.cancel("because")
        msgs = []
        with scope:
            try:
                await asyncio.sleep(1)
            except asyncio.CancelledError as exc:
                msgs.append(exc.args)
                raise
        return scope.cancelled_caught, msgs
    assert run(main()) == (True, [("because",)])


def test_deadline_in_the_past_cancels_at_once():
    async def main():
        loop = asyncio.get_running_loop()
        with move_on_at(loop.time() - 1) as a:
            await asyncio.sleep(1)
        with move_on_after(0) as b:
            await asyncio.sleep(1)
        with CancelScope(deadline=-math.inf) as c:
            await asyncio.sleep(1)
        return a.cancelled_caught, b.cancelled_caught, c.cancelled_caught
    assert run(main()) == (True, True, True)


def test_fail_after_raises_timeout_error():
    async def main():
        with pytest.raises(TimeoutError):
            with fail_after(0.01):
                await asyncio.Event().wait()
        loop = asyncio.get_running_loop()
        with pytest.raises(TimeoutError):
            with fail_at(loop.time() + 0.01):
                await asyncio.sleep(5)
        # cancelled explicitly, not by the deadline: no TimeoutError
        with fail_after(10) as scope:
            scope.cancel()
            await asyncio.sleep(1)
        return scope.cancelled_caught, asyncio.current_task().cancelling()
    assert run(main()) == (True, 0)


def test_scope_reuse_is_an_error():
    async def main():
        scope = CancelScope()
        with scope:
            pass
        with pytest.raises(RuntimeError, match="single 'with' block"):
            with scope:
                pass
        return True
    assert run(main())


def test_nan_deadline_rejected():
    with pytest.raises(ValueError):
        CancelScope(deadline=math.nan)


# -- nesting, shields, deadlines ---------------------------------------------

def test_inner_cancel_does_not_touch_outer():
    async def main():
        with CancelScope() as outer:
            with CancelScope() as inner:
                inner.cancel()
                await asyncio.sleep(1)
            await asyncio.sleep(0)              # outer unaffected
        return inner.cancelled_caught, outer.cancel_called, outer.cancelled_caught
    assert run(main()) == (True, False, False)


def test_outer_cancel_propagates_through_inner_to_outer():
    async def main():
        with CancelScope() as outer:
            with CancelScope() as inner:
                outer.cancel()
                await asyncio.sleep(1)
            pytest.fail("inner must not swallow the outer cancellation")
        return inner.cancelled_caught, outer.cancelled_caught, asyncio.current_task().cancelling()
    assert run(main()) == (False, True, 0)


def test_shield_blocks_outer_cancellation_but_not_its_own_deadline():
    async def main():
        loop = asyncio.get_running_loop()
        log = []
        with move_on_after(0.01) as outer:
            with CancelScope(shield=True):
                await asyncio.sleep(0.05)       # outlives the outer deadline
                log.append("shielded sleep finished")
                with move_on_after(0.01) as own:
                    await asyncio.sleep(5)
                log.append(("own deadline", own.cancelled_caught))
            await asyncio.sleep(5)              # outer cancellation arrives
        return log, outer.cancelled_caught
    log, caught = run(main())
    assert log == ["shielded sleep finished", ("own deadline", True)]
    assert caught


def test_unshielding_while_cancelled_delivers():
    async def main():
        loop = asyncio.get_running_loop()
        with CancelScope() as outer:
            with CancelScope(shield=True) as shield:
                outer.cancel()
                loop.call_later(0.01, setattr, shield, "shield", False)
                await asyncio.sleep(5)          # interrupted when unshielded
        return outer.cancelled_caught
    assert run(main())


def test_deadline_moved_earlier_and_later_while_waiting():
    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with CancelScope(deadline=t0 + 60) as scope:
            loop.call_later(0.01, setattr, scope, "deadline", t0 + 0.02)
            await asyncio.sleep(30)
        earlier = loop.time() - t0
        t1 = loop.time()
        with CancelScope(deadline=t1 + 0.01) as later:
            later.deadline = t1 + 0.05
            await asyncio.sleep(30)
        return earlier, loop.time() - t1, later.cancelled_caught
    earlier, later_elapsed, caught = run(main())
    assert 0.015 < earlier < 10
    assert later_elapsed >= 0.045 and caught


def test_current_effective_deadline():
    async def main():
        loop = asyncio.get_running_loop()
        assert treadle.current_effective_deadline() == math.inf
        with move_on_at(loop.time() + 100):
            with move_on_at(loop.time() + 50) as inner:
                d1 = treadle.current_effective_deadline()
                with CancelScope(shield=True, deadline=loop.time() + 200):
                    d2 = treadle.current_effective_deadline()
                inner.cancel()
                d3 = treadle.current_effective_deadline()
        return d1 - loop.time(), d2 - loop.time(), d3
    d1, d2, d3 = run(main())
    assert 45 < d1 <= 50
    assert 195 < d2 <= 200
    assert d3 == -math.inf


# -- who is cancelled, and from where --------------------------------------

def test_cancel_from_another_task_and_from_callbacks():
    async def main():
        loop = asyncio.get_running_loop()
        scope = CancelScope()

        async def victim():
            with scope:
                await asyncio.sleep(10)
            return scope.cancelled_caught

        t = asyncio.create_task(victim())
        await asyncio.sleep(0)

        async def canceller():
            scope.cancel()
        await asyncio.create_task(canceller())
        r1 = await t

        scope2 = CancelScope()

        async def victim2():
            with scope2:
                await asyncio.sleep(10)
            return scope2.cancelled_caught
        t2 = asyncio.create_task(victim2())
        loop.call_soon(scope2.cancel)
        return r1, await t2
    assert run(main()) == (True, True)


@pytest.mark.parametrize("what", ["lock", "queue", "event", "future", "condition",
                                  "semaphore", "wait_for", "gather", "socket",
                                  "stream", "subprocess", "sleep"])
def test_cancellation_interrupts_asyncio_primitives(what, tmp_path):
    async def main():
        loop = asyncio.get_running_loop()
        cleanup = []
        lock = asyncio.Lock()
        await lock.acquire()
        sem = asyncio.Semaphore(0)
        cond = asyncio.Condition()
        queue: asyncio.Queue[int] = asyncio.Queue()
        fut = loop.create_future()

        async def blocked():
            if what == "lock":
                await lock.acquire()
            elif what == "queue":
                await queue.get()
            elif what == "event":
                await asyncio.Event().wait()
            elif what == "future":
                await fut
            elif what == "condition":
                async with cond:
                    await cond.wait()
            elif what == "semaphore":
                await sem.acquire()
            elif what == "wait_for":
                await asyncio.wait_for(asyncio.Event().wait(), 100)
            elif what == "gather":
                await asyncio.gather(asyncio.sleep(100), asyncio.Event().wait())
            elif what == "socket":
                a, b = socket.socketpair()
                a.setblocking(False)
                cleanup.extend([a, b])
                await loop.sock_recv(a, 10)
            elif what == "stream":
                a, b = socket.socketpair()
                reader, writer = await asyncio.open_connection(sock=a)
                cleanup.extend([writer, b])
                await reader.read(10)
            elif what == "subprocess":
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-c", "import time; time.sleep(30)")
                cleanup.append(proc)
                await proc.wait()
            else:
                await asyncio.sleep(100)

        with move_on_after(0.05) as scope:
            await blocked()
        for c in cleanup:
            if isinstance(c, asyncio.subprocess.Process):
                c.kill()
                await c.wait()
            elif isinstance(c, asyncio.StreamWriter):
                c.close()
                await c.wait_closed()
            else:
                c.close()
        # the primitive is left usable: nobody holds a dead waiter
        if what == "lock":
            lock.release()
            await asyncio.wait_for(lock.acquire(), 1)
        if what == "queue":
            queue.put_nowait(1)
            assert await asyncio.wait_for(queue.get(), 1) == 1
        if what == "future":
            assert fut.cancelled()          # as asyncio.timeout() leaves it
        return scope.cancelled_caught, asyncio.current_task().cancelling()
    assert run(main()) == (True, 0)


def test_tasks_outside_the_scope_are_untouched():
    async def main():
        other_done = asyncio.Event()

        async def other():
            await asyncio.sleep(0.05)
            other_done.set()

        t = asyncio.create_task(other())        # not in any scope
        with CancelScope() as scope:
            scope.cancel()
            await asyncio.sleep(1)
        await other_done.wait()
        await t
        return t.cancelled()
    assert run(main()) is False


# -- interplay with asyncio's own cancellation -----------------------------

def test_asyncio_timeout_inside_a_scope():
    async def main():
        with CancelScope() as scope:
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.01):
                    await asyncio.sleep(5)
            await asyncio.sleep(0)
        return scope.cancelled_caught, asyncio.current_task().cancelling()
    assert run(main()) == (False, 0)


def test_scope_inside_asyncio_timeout_both_orders():
    async def main():
        task = asyncio.current_task()
        # the scope fires first: asyncio.timeout sees nothing
        async with asyncio.timeout(5):
            with move_on_after(0.01) as scope:
                await asyncio.sleep(5)
        assert scope.cancelled_caught and task.cancelling() == 0
        # the asyncio timeout fires first: the scope lets it through
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                with move_on_after(5) as scope2:
                    await asyncio.sleep(5)
        assert not scope2.cancelled_caught
        return task.cancelling()
    assert run(main()) == 0


def test_task_cancel_inside_a_scope_propagates():
    async def main():
        entered = asyncio.Event()

        async def worker():
            with move_on_after(10) as scope:
                entered.set()
                await asyncio.sleep(10)
            return scope

        t = asyncio.create_task(worker())
        await entered.wait()
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return t.cancelled()
    assert run(main())


def test_both_scope_and_task_cancel_the_task_still_ends_cancelled():
    async def main():
        entered = asyncio.Event()
        holder = []

        async def worker():
            with CancelScope() as scope:
                holder.append(scope)
                entered.set()
                await asyncio.sleep(10)

        t = asyncio.create_task(worker())
        await entered.wait()
        holder[0].cancel()
        t.cancel()              # an outside request: must not be swallowed
        with pytest.raises(asyncio.CancelledError):
            await t
        return t.cancelling()
    assert run(main()) == 1


def test_shield_defers_task_cancel_until_it_ends():
    async def main():
        entered = asyncio.Event()
        log = []

        async def worker():
            with CancelScope(shield=True):
                entered.set()
                await asyncio.sleep(0.03)
                log.append("shielded work done")
            await asyncio.sleep(10)
            log.append("not reached")

        t = asyncio.create_task(worker())
        await entered.wait()
        assert t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        return log
    assert run(main()) == ["shielded work done"]


def test_asyncio_taskgroup_inside_scope_and_scope_inside_it():
    async def main():
        results = []
        with move_on_after(0.02) as scope:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(asyncio.sleep(5))
                tg.create_task(asyncio.sleep(5))
        results.append(scope.cancelled_caught)

        async def child():
            with move_on_after(0.01) as inner:
                await asyncio.sleep(5)
            return inner.cancelled_caught

        async with asyncio.TaskGroup() as tg:
            t = tg.create_task(child())
        results.append(t.result())
        results.append(asyncio.current_task().cancelling())
        return results
    assert run(main()) == [True, True, 0]


def test_wrong_loop_is_a_clear_error():
    async def main():
        with CancelScope():
            pass
    with pytest.raises(RuntimeError, match="need treadle's event loop; the running loop is asyncio"):
        asyncio.run(main())


def test_wrong_task_type_is_a_clear_error():
    async def main():
        asyncio.get_running_loop().set_task_factory(
            lambda loop, coro, **kw: asyncio.Task(coro, loop=loop, **kw))

        async def inner():
            with CancelScope():
                pass
        await asyncio.create_task(inner())
    with pytest.raises(RuntimeError, match="inside a treadle task"):
        run(main())


def test_exiting_out_of_order_is_reported():
    async def main():
        a = CancelScope()
        b = CancelScope()
        a.__enter__()
        b.__enter__()
        with pytest.raises(RuntimeError, match="stack corrupted"):
            a.__exit__(None, None, None)
        return True
    assert run(main())


def test_yield_inside_scope_in_async_generator_is_reported_in_debug():
    reports = []

    async def agen():
        with move_on_after(10):
            yield 1
            yield 2

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))
        g = agen()
        await g.__anext__()
        await asyncio.sleep(0)          # suspends with the scope still open
        await g.aclose()

    treadle.run(main(), debug=True)
    assert reports and "PEP 789" in reports[0]["message"]


def test_cancelling_many_blocked_tasks_is_one_pass():
    """Cancelling a scope with 10,000 blocked tasks interrupts each once:
    the loop needs a handful of turns, not one per task or per retry."""
    async def main():
        loop = asyncio.get_running_loop()
        turns = 0

        class Count:
            def before_io_wait(self, timeout):
                nonlocal turns
                turns += 1

        async with treadle.TaskGroup() as tg:
            for _ in range(10_000):
                tg.start_soon(asyncio.sleep, 3600)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            loop.add_instrument(Count())
            tg.cancel_scope.cancel()
        return turns, tg.cancel_scope.cancelled_caught
    turns, caught = run(main())
    assert caught
    assert turns < 20
