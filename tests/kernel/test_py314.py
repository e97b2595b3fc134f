"""What Python 3.14 and 3.15 added to asyncio, on both loops: the call-graph
introspection, create_task() keywords reaching the task factory, awaitables
in asyncio.run(), TaskGroup.cancel(); and treadle's own forms of them."""

from __future__ import annotations

import asyncio
import io
import re
import subprocess
import sys
import textwrap
import warnings

import pytest

import treadle

PY314 = sys.version_info >= (3, 14)
PY315 = sys.version_info >= (3, 15)
needs_314 = pytest.mark.skipif(not PY314, reason="asyncio's call graph is 3.14+")


def _normalized(text: str) -> str:
    """A formatted call graph without what differs between runs: object
    addresses (and nothing else: names, frames and lines must match)."""
    return re.sub(r"0x[0-9a-f]+", "0x?", text)


# -- tasks are futures ---------------------------------------------------------

def test_task_is_an_asyncio_task(run):
    async def main():
        task = asyncio.current_task()
        return (isinstance(task, asyncio.Task), isinstance(task, asyncio.Future),
                asyncio.isfuture(task), task._asyncio_future_blocking,
                type(task)[int] is not None)
    assert run(main()) == (True, True, True, False, True)


# -- asyncio's call graph (3.14+) ------------------------------------------------

@needs_314
def test_call_graph_through_awaits_and_taskgroup(run):
    async def leaf():
        return asyncio.format_call_graph()

    async def middle():
        return await asyncio.create_task(leaf(), name="leaf")

    async def main():
        asyncio.current_task().set_name("main")
        async with asyncio.TaskGroup() as tg:
            t = tg.create_task(middle(), name="middle")
        return t.result()

    with asyncio.Runner() as r:
        expected = _normalized(r.run(main()))
    graph = _normalized(run(main()))
    assert graph == expected
    assert "leaf" in graph and "middle" in graph and "main" in graph


@needs_314
def test_call_graph_through_gather_and_wait_for(run):
    async def leaf():
        out = io.StringIO()
        asyncio.print_call_graph(file=out)
        return out.getvalue()

    async def main():
        asyncio.current_task().set_name("main")
        inner = asyncio.create_task(leaf(), name="leaf")
        (text,) = await asyncio.gather(asyncio.wait_for(inner, 10))
        return text

    with asyncio.Runner() as r:
        expected = _normalized(r.run(main()))
    assert _normalized(run(main())) == expected


@needs_314
def test_capture_call_graph_of_another_task(run):
    async def main():
        gate = asyncio.Event()

        async def waiter():
            await gate.wait()

        async def awaiter(t):
            await t

        w = asyncio.create_task(waiter(), name="waiter")
        a = asyncio.create_task(awaiter(w), name="awaiter")
        await asyncio.sleep(0)
        graph = asyncio.capture_call_graph(w)
        gate.set()
        await a
        return ([e.frame.f_code.co_name for e in graph.call_stack],
                [g.future.get_name() for g in graph.awaited_by],
                graph.future is w)

    stack, awaited_by, same = run(main())
    assert stack[-1] == "waiter"
    assert awaited_by == ["awaiter"]
    assert same


@needs_314
def test_awaited_by_edges_are_removed_after_the_wait(run):
    async def main():
        async def child():
            await asyncio.sleep(0)

        t = asyncio.create_task(child())
        await t
        return t._asyncio_awaited_by
    assert not run(main())


# -- create_task() keywords -----------------------------------------------------

def test_create_task_keywords_reach_the_factory(run):
    seen = []

    def factory(loop, coro, **kwargs):
        seen.append(kwargs)
        return asyncio.Task(coro, loop=loop, name=kwargs.get("name"),
                            context=kwargs.get("context"))

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(factory)
        try:
            t1 = loop.create_task(asyncio.sleep(0))
            t2 = loop.create_task(asyncio.sleep(0), name="two")
            await asyncio.gather(t1, t2)
            return t2.get_name()
        finally:
            loop.set_task_factory(None)

    assert run(main()) == "two"
    # 3.14 passes exactly what it was given; earlier versions pass no name
    # (the task is renamed afterwards).
    assert seen == ([{}, {"name": "two"}] if PY314 else [{}, {}])


@pytest.mark.skipif(not PY314, reason="3.14 passes every keyword to the factory")
def test_create_task_passes_unknown_keywords_to_the_factory(run):
    seen = []

    def factory(loop, coro, **kwargs):
        seen.append(kwargs)
        return asyncio.Task(coro, loop=loop)

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_task_factory(factory)
        try:
            await loop.create_task(asyncio.sleep(0), eager_start=True, trace_id=7)
        finally:
            loop.set_task_factory(None)
        coro = asyncio.sleep(0)
        with pytest.raises(TypeError, match="trace_id"):
            loop.create_task(coro, trace_id=7)
        coro.close()

    run(main())
    assert seen == [{"eager_start": True, "trace_id": 7}]


@pytest.mark.skipif(not PY314, reason="eager_start= is 3.14's keyword")
def test_eager_factory_honours_eager_start_false(loop_factory):
    eager = (treadle.eager_task_factory if loop_factory is treadle.new_event_loop
             else asyncio.eager_task_factory)
    started = []

    async def child(name):
        started.append(name)

    async def main():
        asyncio.get_running_loop().set_task_factory(eager)
        a = asyncio.create_task(child("eager"))
        b = asyncio.create_task(child("lazy"), eager_start=False)
        first = list(started)
        await asyncio.gather(a, b)
        return first

    with asyncio.Runner(loop_factory=loop_factory) as r:
        assert r.run(main()) == ["eager"]
    assert started == ["eager", "lazy"]


def test_treadle_eager_task_factory_takes_eager_start_false():
    started = []

    async def child():
        started.append(1)

    async def main():
        asyncio.get_running_loop().set_task_factory(treadle.eager_task_factory)
        t = asyncio.get_running_loop().create_task(child(), eager_start=False)
        assert started == []
        await t
    treadle.run(main())
    assert started == [1]


# -- asyncio.run() / treadle.run() -----------------------------------------------

class _Awaitable:
    def __await__(self):
        yield from asyncio.sleep(0).__await__()
        return "awaited"


def test_treadle_run_accepts_any_awaitable():
    assert treadle.run(_Awaitable()) == "awaited"


@pytest.mark.skipif(not PY314, reason="asyncio.run() takes awaitables from 3.14")
def test_asyncio_run_accepts_any_awaitable(run):
    assert run(_Awaitable()) == "awaited"


def test_treadle_run_refuses_what_asyncio_refuses():
    with asyncio.Runner() as r:
        with pytest.raises((TypeError, ValueError)) as expected:
            r.run(42)  # type: ignore[arg-type]
    with pytest.raises(expected.type):
        treadle.run(42)  # type: ignore[arg-type]


# -- TaskGroup.cancel() ----------------------------------------------------------

@pytest.mark.skipif(not PY315, reason="TaskGroup.cancel() is 3.15's")
def test_asyncio_taskgroup_cancel(run):
    async def main():
        log = []

        async def child():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                log.append("child cancelled")
                raise

        async with asyncio.TaskGroup() as tg:
            tg.create_task(child())
            await asyncio.sleep(0)
            tg.cancel()
            await asyncio.sleep(10)
            log.append("not reached")
        log.append("after")
        return log, asyncio.current_task().cancelling()
    assert run(main()) == (["child cancelled", "after"], 0)


def test_treadle_taskgroup_cancel():
    async def main():
        log = []

        async def child():
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                log.append("child cancelled")
                raise

        async with treadle.TaskGroup() as tg:
            tg.create_task(child())
            await asyncio.sleep(0)
            tg.cancel()
            await asyncio.sleep(10)
            log.append("not reached")
        log.append("after")
        tg.cancel()                      # after exit: nothing happens
        early = treadle.TaskGroup()
        early.cancel()                   # before enter: cancelled on entry
        async with early:
            await asyncio.sleep(10)
            log.append("not reached either")
        log.append("after early")
        return log, asyncio.current_task().cancelling()
    assert treadle.run(main()) == (["child cancelled", "after", "after early"], 0)


def test_treadle_taskgroup_eager_child_starts_inside_the_scope():
    async def main():
        seen = []

        async def child():
            seen.append(treadle.current_effective_deadline())
            await asyncio.sleep(10)

        with treadle.move_on_after(5):
            async with treadle.TaskGroup() as tg:
                deadline = asyncio.get_running_loop().time() + 5
                tg.create_task(child(), eager_start=True)
                assert len(seen) == 1     # ran inside create_task
                tg.cancel()
        return seen[0] <= deadline + 1e-6
    assert treadle.run(main())


# -- no policies on 3.14+ ---------------------------------------------------------

def test_importing_and_using_treadle_warns_nothing():
    code = textwrap.dedent("""
        import asyncio, warnings
        warnings.simplefilter("error")
        import treadle
        async def main():
            return 1
        assert treadle.run(main()) == 1
        if hasattr(asyncio.Runner, "run"):
            with asyncio.Runner(loop_factory=treadle.new_event_loop) as r:
                assert r.run(main()) == 1
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_treadle_run_replaces_every_loop_asyncio_makes(tmp_path):
    script = tmp_path / "prog.py"
    script.write_text(textwrap.dedent("""
        import asyncio, warnings
        warnings.simplefilter("error", DeprecationWarning)
        async def main():
            return type(asyncio.get_running_loop()).__module__
        print(asyncio.run(main()))
        with asyncio.Runner() as r:
            print(r.run(main()))
        loop = asyncio.new_event_loop()
        print(type(loop).__module__)
        loop.close()
    """))
    out = subprocess.run([sys.executable, "-m", "treadle", "run", str(script)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["treadle._loop"] * 3


def test_event_loop_policy_is_still_there():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = treadle.EventLoopPolicy()
        loop = policy.new_event_loop()
    try:
        assert isinstance(loop, treadle.EventLoop)
    finally:
        loop.close()
    assert type(policy).__module__ == "treadle"


# -- python -m asyncio ps / pstree (3.14+) ----------------------------------------

_PS_TARGET = """
import asyncio, os, sys, treadle
async def worker():
    await asyncio.sleep(60)
async def main():
    async with asyncio.TaskGroup() as tg:
        for i in range(2):
            tg.create_task(worker(), name=f"ps-worker-{i}")
        print(os.getpid(), flush=True)
factory = treadle.c_task_factory if sys.argv[1] == "c" else None
treadle.run(main()) if factory is None else asyncio.run(
    main(), loop_factory=lambda: treadle.new_event_loop(task_factory=factory))
"""


def _asyncio_ps(tmp_path, which: str) -> tuple[str, str]:
    script = tmp_path / "target.py"
    script.write_text(_PS_TARGET)
    proc = subprocess.Popen([sys.executable, str(script), which],
                            stdout=subprocess.PIPE, text=True)
    try:
        pid = proc.stdout.readline().strip()
        ps = subprocess.run([sys.executable, "-m", "asyncio", "ps", pid],
                            capture_output=True, text=True, timeout=60)
        tree = subprocess.run([sys.executable, "-m", "asyncio", "pstree", pid],
                              capture_output=True, text=True, timeout=60)
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
    if ps.returncode != 0 and "ermission" in ps.stderr:
        pytest.skip(f"python -m asyncio ps needs ptrace rights here: {ps.stderr.strip()}")
    assert ps.returncode == 0, ps.stderr
    return ps.stdout, tree.stdout


@needs_314
def test_asyncio_ps_lists_tasks_with_the_c_task_factory(tmp_path):
    ps, tree = _asyncio_ps(tmp_path, "c")
    assert "ps-worker-0" in ps and "ps-worker-1" in ps
    assert "ps-worker-0" in tree and "worker" in tree


@needs_314
def test_asyncio_ps_sees_no_treadle_tasks_by_default(tmp_path):
    # What the README says: asyncio's ps reads C task structures only;
    # treadle's own tasks are listed by `treadle ps` instead.
    ps, _ = _asyncio_ps(tmp_path, "treadle")
    assert "ps-worker" not in ps


def test_new_event_loop_task_factory():
    loop = treadle.new_event_loop(task_factory=treadle.c_task_factory)
    try:
        assert loop.get_task_factory() is treadle.c_task_factory

        async def main():
            return type(asyncio.current_task())
        assert loop.run_until_complete(main()) is asyncio.Task
    finally:
        loop.close()
    with pytest.raises(TypeError, match="task factory"):
        treadle.new_event_loop(task_factory=42)
