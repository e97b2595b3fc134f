"""Seeded scheduling: SeededOrder alone, then loops made with seed=N."""

from __future__ import annotations

import asyncio
import functools
import os
import random
import shutil
import tempfile

import pytest

import treadle
from treadle.testing import SeededOrder, VirtualClock
from treadle.testing.order import sources_of


# ---------------------------------------------------------------------------
# sources of ready items
# ---------------------------------------------------------------------------

class FakeHandle:
    def __init__(self, callback, *args, loop=None):
        self._callback = callback
        self._args = args
        self._loop = loop

    def __repr__(self) -> str:
        return f"H({self._callback!r}, {self._args!r})"


class FakeTask:
    """Anything on the ready queue without a _callback is a task step."""

    def __init__(self, name):
        self.name = name

    def __repr__(self) -> str:
        return f"T({self.name})"


class Owner:
    def method(self, *args):
        pass


def plain(*args):
    pass


def test_a_task_is_its_own_source():
    task = FakeTask("a")
    assert sources_of(task) == [task]


def test_bound_method_source_is_its_object_and_object_arguments():
    owner, fut = Owner(), object()
    assert sources_of(FakeHandle(owner.method, fut, 3, "x", None)) == [owner, fut]


def test_module_level_function_with_only_plain_arguments_is_its_own_source():
    assert sources_of(FakeHandle(plain, 1, "two", b"3")) == [plain]
    assert sources_of(FakeHandle(print, "x")) == [print]


def test_partial_and_closure_contents_are_sources():
    a, b = Owner(), Owner()
    assert sources_of(FakeHandle(functools.partial(plain, a, k=b))) == [a, b]

    def closure():
        return a

    assert sources_of(FakeHandle(closure)) == [a]


def test_the_loop_itself_links_nothing():
    loop, fut = object(), object()
    assert sources_of(FakeHandle(plain, loop, fut, loop=loop)) == [fut]


def test_items_of_a_tuple_argument_are_sources():
    a = Owner()
    assert sources_of(FakeHandle(plain, (a, 1))) == [a]


# ---------------------------------------------------------------------------
# SeededOrder on synthetic batches
# ---------------------------------------------------------------------------

def _random_batch(rng: random.Random):
    """Items from a few sources, each source's items numbered in order."""
    sources = [Owner() for _ in range(rng.randint(1, 6))]
    tasks = [FakeTask(i) for i in range(rng.randint(0, 4))]
    batch, expected = [], {}
    for n in range(rng.randint(0, 30)):
        if tasks and rng.random() < 0.3:
            task = rng.choice(tasks)
            batch.append(task)
            expected.setdefault(id(task), []).append(task)
        else:
            source = rng.choice(sources)
            handle = FakeHandle(source.method, n)
            batch.append(handle)
            expected.setdefault(id(source), []).append(handle)
    return batch, expected


def _per_source(out):
    seen = {}
    for item in out:
        key = id(item) if isinstance(item, FakeTask) else id(item._callback.__self__)
        seen.setdefault(key, []).append(item)
    return seen


def test_every_item_comes_out_once_and_each_source_keeps_its_order():
    rng = random.Random(7)
    for seed in range(300):
        batch, expected = _random_batch(rng)
        out = SeededOrder(seed)(list(batch))
        assert sorted(map(id, out)) == sorted(map(id, batch))
        assert _per_source(out) == expected


def test_same_seed_same_order_and_seeds_differ():
    items = [FakeHandle(Owner().method) for _ in range(6)]
    outs = {seed: [items.index(i) for i in SeededOrder(seed)(list(items))]
            for seed in range(20)}
    assert outs[3] == [items.index(i) for i in SeededOrder(3)(list(items))]
    assert len({tuple(o) for o in outs.values()}) > 5


def test_successive_batches_draw_from_one_rng():
    order = SeededOrder(11)
    again = SeededOrder(11)
    for _ in range(10):
        items = [FakeHandle(Owner().method) for _ in range(5)]
        assert order(list(items)) == again(list(items))


def test_items_sharing_a_source_keep_their_order_others_may_pass():
    """A and C share a future, B and C share an owner: A and B both run
    before C, in either order."""
    fut = object()
    a, b = Owner(), Owner()
    items = [FakeHandle(a.method, fut), FakeHandle(b.method), FakeHandle(b.method, fut)]
    firsts = set()
    for seed in range(50):
        out = SeededOrder(seed)(list(items))
        assert out[2] is items[2]
        firsts.add(items.index(out[0]))
    assert firsts == {0, 1}


def test_one_source_batches_come_out_unchanged():
    owner = Owner()
    batch = [FakeHandle(owner.method, i) for i in range(5)]
    assert SeededOrder(1)(list(batch)) == batch
    single = [FakeTask("x")]
    assert SeededOrder(1)(single) == single


class FakeLoop:
    def __init__(self):
        from collections import deque
        self._ready = deque()
        self.order = None
        self.instruments = []

    def set_ready_order(self, order):
        self.order = order

    def get_ready_order(self):
        return self.order

    def add_instrument(self, instrument):
        self.instruments.append(instrument)

    def remove_instrument(self, instrument):
        self.instruments.remove(instrument)


def _step(order, loop, producer, *items, callback=False):
    (order.before_callback if callback else order.before_task_step)(producer)
    loop._ready.extend(items)
    (order.after_callback if callback else order.after_task_step)(producer)


def test_what_one_step_scheduled_keeps_its_order():
    """A step closes a transport (a callback) and yields: the callback runs
    before the step's own continuation, whatever the seed."""
    loop = FakeLoop()
    producer, other = FakeTask("producer"), FakeTask("other")
    transport_cb = FakeHandle(Owner().method)
    for seed in range(40):
        order = SeededOrder(seed)
        order.install(loop)
        assert loop.get_ready_order() is order and loop.instruments == [order]
        _step(order, loop, producer, transport_cb, producer)
        _step(order, loop, other, other)
        batch = list(loop._ready)
        loop._ready.clear()
        out = order(batch)
        assert out.index(transport_cb) < out.index(producer)
        order.uninstall(loop)
        assert loop.get_ready_order() is None and loop.instruments == []


def test_tasks_one_step_started_may_start_in_any_order_but_before_it_goes_on():
    loop = FakeLoop()
    producer = FakeTask("producer")
    started = [FakeTask(i) for i in range(3)]
    seen = set()
    for seed in range(60):
        order = SeededOrder(seed)
        order.install(loop)
        _step(order, loop, producer, *started, producer)
        batch = list(loop._ready)
        loop._ready.clear()
        out = order(batch)
        assert out[-1] is producer
        seen.add(tuple(t.name for t in out[:3]))
        order.uninstall(loop)
    assert len(seen) == 6


def test_eager_steps_inside_a_step_belong_to_it():
    loop = FakeLoop()
    producer, eager = FakeTask("producer"), FakeTask("eager")
    cb1, cb2 = FakeHandle(Owner().method), FakeHandle(Owner().method)
    for seed in range(30):
        order = SeededOrder(seed)
        order.install(loop)
        order.before_task_step(producer)
        loop._ready.append(cb1)
        _step(order, loop, eager, eager)      # nested: no boundary here
        loop._ready.append(cb2)
        order.after_task_step(producer)
        batch = list(loop._ready)
        loop._ready.clear()
        out = order(batch)
        assert out.index(cb1) < out.index(cb2)
        order.uninstall(loop)


def test_task_serials_make_the_order_independent_of_input_order():
    """Tasks numbered at spawn: the same tasks presented in another order
    (as when asyncio iterates a set of tasks) come out the same."""
    tasks = [FakeTask(i) for i in range(6)]
    first, second = SeededOrder(5), SeededOrder(5)
    for order in (first, second):
        for task in tasks:
            order.task_spawned(task)
    shuffled = list(tasks)
    random.Random(0).shuffle(shuffled)
    assert first(list(tasks)) == second(shuffled)
    first.task_exited(tasks[0])
    assert id(tasks[0]) not in first._serials


@pytest.mark.parametrize("bad, exc", [(None, TypeError), ("1", TypeError),
                                      (True, TypeError), (1.5, TypeError)])
def test_seed_must_be_an_int(bad, exc):
    with pytest.raises(exc):
        SeededOrder(bad)
    if bad is not None:             # seed=None is "no seed"
        with pytest.raises(exc):
            treadle.new_event_loop(seed=bad)


def test_repr_and_seed():
    assert repr(SeededOrder(9)) == "<SeededOrder seed=9>"
    assert SeededOrder(9).seed == 9


# ---------------------------------------------------------------------------
# on a loop
# ---------------------------------------------------------------------------

def _run(coro_fn, *, seed, clock=None):
    with asyncio.Runner(
            loop_factory=lambda: treadle.new_event_loop(seed=seed, clock=clock)) as r:
        return r.run(coro_fn())


async def _three_appenders():
    order = []

    async def worker(name):
        order.append(name)
        await asyncio.sleep(0)
        order.append(name)

    await asyncio.gather(worker("a"), worker("b"), worker("c"))
    return order


def test_new_event_loop_seed_installs_the_order():
    loop = treadle.new_event_loop(seed=4)
    try:
        order = loop.get_ready_order()
        assert isinstance(order, SeededOrder) and order.seed == 4
    finally:
        loop.close()
    loop = treadle.new_event_loop()
    try:
        assert loop.get_ready_order() is None
    finally:
        loop.close()


def test_without_seed_order_is_fifo_like_asyncio(run):
    assert run(_three_appenders()) == ["a", "b", "c", "a", "b", "c"]


def test_seeds_vary_which_task_runs_first_and_repeat_exactly():
    results = {seed: _run(_three_appenders, seed=seed) for seed in range(30)}
    assert len({tuple(r) for r in results.values()}) > 3
    for seed in (0, 7, 29):
        assert _run(_three_appenders, seed=seed) == results[seed]
    for order in results.values():
        assert sorted(order) == ["a", "a", "b", "b", "c", "c"]


def test_tasks_started_together_start_in_varying_order():
    async def main():
        order = []

        async def worker(n):
            order.append(n)

        await asyncio.gather(*(worker(n) for n in range(4)))
        return tuple(order)

    assert len({_run(main, seed=s) for s in range(40)}) > 6


def test_asyncio_scheduling_idioms_hold_under_every_seed():
    """What one step schedules runs before that step goes on: create_task
    then sleep(0) has started the task; call_soon then sleep(0) has run the
    callback.  Noise tasks make every batch worth shuffling."""
    async def main():
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        async def noise():
            while not stop.is_set():
                await asyncio.sleep(0)

        noisy = [asyncio.create_task(noise()) for _ in range(4)]
        started = []

        async def child(i):
            started.append(i)
            await asyncio.sleep(0)

        for i in range(20):
            task = asyncio.create_task(child(i))
            await asyncio.sleep(0)
            assert started[-1] == i
            ran = []
            loop.call_soon(ran.append, i)
            await asyncio.sleep(0)
            assert ran == [i]
            await task
        stop.set()
        await asyncio.gather(*noisy)
        return True

    for seed in range(15):
        assert _run(main, seed=seed)


def test_drain_after_close_raises_under_every_seed():
    """asyncio's StreamWriter.drain() relies on connection_lost running one
    sleep(0) after close(); seeded scheduling keeps that."""
    async def main():
        handled = asyncio.Event()

        async def handler(reader, writer):
            try:
                await reader.read()
            finally:
                writer.close()
                handled.set()

        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            try:
                writer.write(b"data")
                await writer.drain()
            except ConnectionResetError:
                outcome = "reset"
            else:
                outcome = "no error"
            await writer.wait_closed()
            await handled.wait()
        finally:
            server.close()
            await server.wait_closed()
        return outcome

    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as r:
        assert r.run(main()) == "reset"         # what asyncio does
    for seed in range(10):
        assert _run(main, seed=seed) == "reset"


def test_a_futures_callbacks_keep_their_order():
    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        out = []
        for i in range(10):
            fut.add_done_callback(lambda f, i=i: out.append(i))
        others = [asyncio.ensure_future(asyncio.sleep(0)) for _ in range(10)]
        fut.set_result(None)
        await asyncio.gather(*others)
        await asyncio.sleep(0)
        return out

    for seed in range(20):
        assert _run(main, seed=seed) == list(range(10))


def test_a_task_woken_by_a_future_keeps_its_place_among_its_callbacks():
    """The kernel queues a task woken by a future without a Handle; the
    future's other callbacks still run after it, as they were added."""
    async def main():
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        log = []

        async def waiter():
            await fut
            log.append("task")

        tasks = [asyncio.create_task(waiter()) for _ in range(2)]
        await asyncio.sleep(0)
        fut.add_done_callback(lambda f: log.append("callback"))
        loop.call_soon(fut.set_result, None)
        await asyncio.gather(*tasks)
        await asyncio.sleep(0)
        return log

    with asyncio.Runner(loop_factory=asyncio.new_event_loop) as r:
        assert r.run(main()) == ["task", "task", "callback"]
    for seed in range(20):
        assert _run(main, seed=seed) == ["task", "task", "callback"]


def test_callbacks_of_one_object_keep_their_order():
    async def main():
        loop = asyncio.get_running_loop()
        out = []
        for i in range(8):
            loop.call_soon(out.append, ("x", i))
            loop.call_soon(out.append, ("y", i))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        return out

    for seed in range(10):
        out = _run(main, seed=seed)
        assert out == [(n, i) for i in range(8) for n in "xy"]


async def _busy_program():
    """Tasks, a queue, a lock, virtual sleeps and a failing TaskGroup: the
    trace depends on the schedule only."""
    trace = []
    lock = asyncio.Lock()
    queue: asyncio.Queue[int] = asyncio.Queue(maxsize=2)
    shared = {"n": 0}

    async def producer(k):
        for i in range(4):
            await queue.put(k * 10 + i)
            trace.append(f"put {k * 10 + i}")

    async def consumer(k):
        while True:
            item = await queue.get()
            async with lock:
                value = shared["n"]
                await asyncio.sleep(0)
                shared["n"] = value + 1
            trace.append(f"c{k} got {item}")
            queue.task_done()

    consumers = [asyncio.create_task(consumer(k)) for k in range(3)]
    await asyncio.gather(*(producer(k) for k in range(3)))
    await queue.join()
    for c in consumers:
        c.cancel()
    await asyncio.gather(*consumers, return_exceptions=True)

    async def sleeper(k):
        try:
            await asyncio.sleep(10 + k % 3)
            trace.append(f"woke {k}")
            if k == 4:
                raise ValueError("boom")
        except asyncio.CancelledError:
            trace.append(f"cancelled {k}")
            raise

    try:
        async with asyncio.TaskGroup() as tg:
            for k in range(8):
                tg.create_task(sleeper(k))
    except ExceptionGroup:
        trace.append("group failed")
    trace.append(f"n={shared['n']}")
    return trace


def test_same_seed_same_trace_for_a_busy_program():
    for seed in (1, 2, 3):
        first = _run(_busy_program, seed=seed, clock=VirtualClock())
        second = _run(_busy_program, seed=seed, clock=VirtualClock())
        assert first == second
        # asyncio's guarantees still hold under any schedule
        assert first[-1] == "n=12"
        assert "group failed" in first
        assert sum(line.startswith("put") for line in first) == 12


def test_different_seeds_give_different_traces():
    traces = {tuple(_run(_busy_program, seed=s, clock=VirtualClock()))
              for s in range(8)}
    assert len(traces) > 1


def test_stream_data_is_never_reordered():
    """Several clients talk to an echo server at once: whatever the
    schedule, each connection sees its own bytes in order."""

    async def main():
        path = os.path.join(tempfile.mkdtemp(), "s")

        async def echo(reader, writer):
            while data := await reader.read(100):
                writer.write(data)
                await writer.drain()
            writer.close()
            await writer.wait_closed()

        server = await asyncio.start_unix_server(echo, path)

        async def client(k):
            reader, writer = await asyncio.open_unix_connection(path)
            expected = b"".join(b"%d:%d;" % (k, i) for i in range(50))
            for i in range(50):
                writer.write(b"%d:%d;" % (k, i))
                if i % 7 == 0:
                    await asyncio.sleep(0)
            writer.write_eof()
            got = await reader.read()
            writer.close()
            await writer.wait_closed()
            return got == expected

        try:
            return await asyncio.gather(*(client(k) for k in range(5)))
        finally:
            server.close()
            await server.wait_closed()
            # 3.13 removes the socket file itself
            shutil.rmtree(os.path.dirname(path), ignore_errors=True)

    for seed in range(5):
        assert _run(main, seed=seed) == [True] * 5


def test_treadle_run_accepts_seed_and_clock():
    async def main():
        await asyncio.sleep(30)
        loop = asyncio.get_running_loop()
        return loop.time(), loop.get_ready_order().seed

    assert treadle.run(main(), seed=12, clock=VirtualClock()) == (30.0, 12)
    coro = main()
    with pytest.raises(TypeError):
        treadle.run(coro, seed="x")  # type: ignore[arg-type]
    coro.close()


def test_the_order_holds_no_task_alive():
    """A pending task nothing else references is collected (and logged by
    asyncio as destroyed while pending) on a seeded loop too."""
    import gc
    import weakref

    loop = treadle.new_event_loop(seed=3)
    try:
        async def stuck():
            await loop.create_future()

        task = loop.create_task(stuck())
        task._log_destroy_pending = False
        ref = weakref.ref(task)
        loop.call_soon(loop.stop)
        loop.run_forever()
        del task
        gc.collect()
        assert ref() is None
        assert asyncio.all_tasks(loop) == set()
    finally:
        loop.close()
