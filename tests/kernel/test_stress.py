"""Creating and freeing many tasks: the registry asyncio.all_tasks() reads
holds tasks weakly, so a task freed while a weak reference to it survives
would crash (compiled) or leave a dangling entry.  Run with
TREADLE_STRESS_TASKS=2000000 for the long version (CI does, on the compiled
build)."""

from __future__ import annotations

import asyncio
import gc
import os
import weakref

import treadle

N = int(os.environ.get("TREADLE_STRESS_TASKS", "60000"))


async def _churn(n: int) -> int:
    loop = asyncio.get_running_loop()

    async def done():
        return 1

    async def fail():
        raise ValueError

    async def forever():
        await loop.create_future()

    seen = 0
    batch = 5000
    for start in range(0, n, batch):
        tasks = [loop.create_task(done()) for _ in range(batch // 2)]
        failing = [loop.create_task(fail()) for _ in range(batch // 4)]
        waiting = [loop.create_task(forever()) for _ in range(batch // 4)]
        await asyncio.sleep(0)
        for t in waiting:
            t.cancel()
        results = await asyncio.gather(*tasks, *failing, *waiting, return_exceptions=True)
        seen += len(results)
        # Every finished task has left asyncio's view...
        assert not (asyncio.all_tasks() - {asyncio.current_task()})
        refs = [weakref.ref(t) for t in tasks[:10]]
        del tasks, failing, waiting, results
        if start % (batch * 20) == 0:
            # (the handle that resumed us still holds the gather future
            # until this step ends)
            await asyncio.sleep(0)
            gc.collect()
            # ... and is freed; weak references to it are cleared.  (The
            # blocking detector's thread may hold the item it is looking
            # at for an instant, and then has the loop's thread let go of
            # it: the loop must turn.  A leak would hold it for good.)
            for _ in range(50):
                if all(r() is None for r in refs):
                    break
                await asyncio.sleep(0.01)
                gc.collect()
            assert all(r() is None for r in refs)
    return seen


def test_task_churn_on_treadle():
    lost = []

    async def main():
        asyncio.get_running_loop().set_exception_handler(lambda lp, ctx: lost.append(ctx))
        return await _churn(N)

    assert treadle.run(main()) >= N
    assert lost == []


def test_task_churn_eager():
    async def main():
        asyncio.get_running_loop().set_task_factory(treadle.eager_task_factory)
        return await _churn(N // 2)

    assert treadle.run(main()) >= N // 2


def test_abandoned_pending_tasks_are_collected():
    """Pending tasks nobody references are freed by the GC and reported, and
    their registry entries disappear (no dangling weak reference)."""
    contexts = []

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda lp, ctx: contexts.append(ctx["message"]))

        async def stuck(fut):
            await fut

        for _ in range(2000):
            loop.create_task(stuck(loop.create_future()))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        gc.collect()
        return len(asyncio.all_tasks())

    remaining = treadle.run(main())
    gc.collect()
    assert remaining == 1  # only main
    assert contexts.count("Task was destroyed but it is pending!") == 2000
