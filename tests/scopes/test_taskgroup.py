"""treadle.TaskGroup: asyncio's TaskGroup semantics on a cancel scope, plus
start_soon() and start(); and anyio's structured concurrency on treadle."""

from __future__ import annotations

import asyncio

import pytest

import treadle
from treadle import CancelScope, TaskGroup, move_on_after


def run(coro):
    return treadle.run(coro)


def test_waits_for_children_and_returns_results():
    async def main():
        async def work(n):
            await asyncio.sleep(0.001 * n)
            return n
        async with TaskGroup() as tg:
            tasks = [tg.create_task(work(n), name=f"w{n}") for n in range(5)]
            tg.start_soon(asyncio.sleep, 0.002)
        return [t.result() for t in tasks], [t.get_name() for t in tasks]
    results, names = run(main())
    assert results == list(range(5))
    assert names == [f"w{n}" for n in range(5)]


def test_first_failure_cancels_siblings_and_body_and_groups_errors():
    async def main():
        log = []

        async def failing():
            await asyncio.sleep(0.01)
            raise ValueError("boom")

        async def sibling():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                log.append("sibling cancelled")
                raise

        with pytest.raises(BaseExceptionGroup) as info:
            async with TaskGroup() as tg:
                tg.start_soon(sibling)
                tg.start_soon(failing)
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    log.append("body cancelled")
                    raise
        assert info.value.message == "unhandled errors in a TaskGroup"
        assert [type(e) for e in info.value.exceptions] == [ValueError]
        return log, asyncio.current_task().cancelling()
    log, cancelling = run(main())
    assert sorted(log) == ["body cancelled", "sibling cancelled"]
    assert cancelling == 0


def test_body_error_is_grouped_and_cancels_children():
    async def main():
        with pytest.raises(BaseExceptionGroup) as info:
            async with TaskGroup() as tg:
                child = tg.create_task(asyncio.sleep(10))
                raise KeyError("body")
        assert [type(e) for e in info.value.exceptions] == [KeyError]
        return child.cancelled()
    assert run(main())


def test_keyboard_interrupt_in_child_is_raised_alone():
    async def main():
        async def child():
            raise KeyboardInterrupt
        async with TaskGroup() as tg:
            tg.start_soon(child)
            await asyncio.sleep(1)
    with pytest.raises(KeyboardInterrupt):
        run(main())


def test_cancel_scope_cancels_everything_quietly():
    async def main():
        async with TaskGroup() as tg:
            a = tg.create_task(asyncio.sleep(10))
            b = tg.create_task(asyncio.Event().wait())
            await asyncio.sleep(0)
            tg.cancel_scope.cancel()
            await asyncio.sleep(10)
        return a.cancelled(), b.cancelled(), tg.cancel_scope.cancelled_caught
    assert run(main()) == (True, True, True)


def test_outside_cancellation_cancels_children_and_propagates():
    async def main():
        entered = asyncio.Event()
        children = []

        async def parent():
            async with TaskGroup() as tg:
                children.append(tg.create_task(asyncio.sleep(10)))
                entered.set()
                await asyncio.sleep(10)

        p = asyncio.create_task(parent())
        await entered.wait()
        p.cancel()
        with pytest.raises(asyncio.CancelledError):
            await p
        return children[0].cancelled()
    assert run(main())


def test_outside_cancellation_while_waiting_in_exit_does_not_abandon_children():
    async def main():
        log = []
        in_exit = asyncio.Event()

        async def slow_cleanup():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                with CancelScope(shield=True):
                    await asyncio.sleep(0.02)
                log.append("cleanup finished")
                raise

        async def parent():
            async with TaskGroup() as tg:
                tg.start_soon(slow_cleanup)
                in_exit.set()
            log.append("not reached")

        p = asyncio.create_task(parent())
        await in_exit.wait()
        await asyncio.sleep(0)
        p.cancel()
        with pytest.raises(asyncio.CancelledError):
            await p
        return log
    assert run(main()) == ["cleanup finished"]


def test_group_inside_an_outer_scope():
    async def main():
        with move_on_after(0.02) as outer:
            async with TaskGroup() as tg:
                tg.start_soon(asyncio.sleep, 10)
                tg.start_soon(asyncio.sleep, 10)
        return outer.cancelled_caught, tg.cancel_scope.cancelled_caught
    assert run(main()) == (True, False)


def test_start_returns_the_started_value():
    async def main():
        async def server(port, *, task_status):
            await asyncio.sleep(0.001)
            task_status.started(("listening", port))
            await asyncio.sleep(0.01)
            return "served"

        async with TaskGroup() as tg:
            value = await tg.start(server, 8080)
        return value
    assert run(main()) == ("listening", 8080)


def test_start_error_before_started_is_raised_by_start():
    async def main():
        async def broken(*, task_status):
            raise OSError("bind failed")

        async def never(*, task_status):
            return None

        async with TaskGroup() as tg:
            with pytest.raises(OSError, match="bind failed"):
                await tg.start(broken)
            with pytest.raises(RuntimeError, match="without calling task_status.started"):
                await tg.start(never)
        return True
    assert run(main())


def test_started_twice_is_an_error():
    async def main():
        async def twice(*, task_status):
            task_status.started(1)
            task_status.started(2)

        with pytest.raises(BaseExceptionGroup) as info:
            async with TaskGroup() as tg:
                await tg.start(twice)
        return str(info.value.exceptions[0])
    assert "twice" in run(main())


def test_misuse_errors():
    async def main():
        tg = TaskGroup()
        coro = asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="has not been entered"):
            tg.create_task(coro)
        async with tg:
            pass
        with pytest.raises(RuntimeError, match="is finished"):
            tg.create_task(asyncio.sleep(0))
        with pytest.raises(RuntimeError, match="already been entered"):
            async with tg:
                pass
        return True
    assert run(main())


def test_level_triggered_in_every_child():
    async def main():
        hits = []

        async def stubborn(n):
            for _ in range(3):
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    hits.append(n)

        async with TaskGroup() as tg:
            for n in range(4):
                tg.start_soon(stubborn, n)
            await asyncio.sleep(0)
            tg.cancel_scope.cancel()
        return sorted(hits)
    assert run(main()) == sorted([0, 1, 2, 3] * 3)


# -- anyio on treadle ----------------------------------------------------------

anyio = pytest.importorskip("anyio")


def test_anyio_task_group_and_cancel_scope_on_treadle():
    async def main():
        log = []

        async def child(n):
            try:
                await anyio.sleep(10)
            except anyio.get_cancelled_exc_class():
                log.append(n)
                raise

        async with anyio.create_task_group() as tg:
            for n in range(3):
                tg.start_soon(child, n)
            await anyio.sleep(0.01)
            tg.cancel_scope.cancel()

        with anyio.move_on_after(0.01) as scope:
            await anyio.sleep(10)
        with anyio.CancelScope(shield=True):
            await anyio.sleep(0.001)
        return sorted(log), scope.cancelled_caught, asyncio.current_task().cancelling()
    assert run(main()) == ([0, 1, 2], True, 0)


def test_anyio_start_and_fail_after_on_treadle():
    async def main():
        async def server(*, task_status=anyio.TASK_STATUS_IGNORED):
            task_status.started("ready")
            await anyio.sleep(10)

        async with anyio.create_task_group() as tg:
            value = await tg.start(server)
            tg.cancel_scope.cancel()
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.01):
                await anyio.sleep(10)
        return value
    assert run(main()) == "ready"


def test_anyio_scope_around_treadle_scope_and_back():
    async def main():
        with anyio.move_on_after(0.01) as outer:
            with CancelScope() as inner:
                await asyncio.sleep(10)
        with move_on_after(0.01) as outer2:
            with anyio.CancelScope() as inner2:
                await asyncio.sleep(10)
        return (outer.cancelled_caught, inner.cancelled_caught,
                outer2.cancelled_caught, inner2.cancelled_caught,
                asyncio.current_task().cancelling())
    outer, inner, outer2, inner2, cancelling = run(main())
    assert outer and not inner
    assert outer2 and not inner2
    assert cancelling == 0
