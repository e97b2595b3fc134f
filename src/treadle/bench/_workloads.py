"""The workloads of ``treadle bench``: what each one measures, and the code
of those that need no network (the I/O ones are in ``_netloads.py``).

Owns: the registry (name, group, unit, parameters, quick-mode sizes) and the
CPU-bound and task-memory workloads.
Never: runs anything at import time, or uses anything but public asyncio
APIs in a measured section, so that every loop runs exactly the same code.

A workload is a function ``run(factory, params) -> dict`` called in a fresh
child process (see ``_child.py``); it builds its loop with *factory*
(through ``asyncio.Runner``, as ``asyncio.run(loop_factory=...)`` does),
times only the section that matters, and returns its primary *value* plus
details.  Raise ``NotApplicable`` when the loop or Python cannot run it
(eager tasks before 3.12): that is reported as "n/a", not as a failure.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from ._measure import Meter, peak_rss, rss_probe

T = TypeVar("T")
LoopFactory = Callable[[], asyncio.AbstractEventLoop]
Params = dict[str, Any]
Result = dict[str, Any]


class NotApplicable(Exception):
    """This workload cannot run on this loop or Python; the message says why."""


@dataclass(frozen=True, slots=True)
class Workload:
    name: str
    group: str                    # cpu | echo | http | memory
    summary: str
    unit: str                     # of the primary value
    higher_is_better: bool
    entry: str                    # function name in _workloads or _netloads
    params: Params                # full-size parameters
    quick: Params = field(default_factory=dict)     # overrides for --quick
    scaled: tuple[str, ...] = ()  # integer parameters that --scale multiplies
    timed: bool = False           # takes "duration"/"warmup" (--duration)

    def resolve(self, *, quick: bool, scale: float = 1.0,
                duration: float | None = None,
                warmup: float | None = None) -> Params:
        """The parameters of one run under the command's options."""
        p = dict(self.params)
        if quick:
            p.update(self.quick)
        for key in self.scaled:
            p[key] = max(1, int(round(p[key] * scale)))
        if self.timed:
            if duration is not None:
                p["duration"] = duration
            if warmup is not None:
                p["warmup"] = warmup
        return p


def run_on(factory: LoopFactory, coro: Coroutine[Any, Any, T]) -> T:
    """Run *coro* on a new loop from *factory*, as ``asyncio.run`` does."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(coro)


def throughput(ops: int, m: Meter, **extra: Any) -> Result:
    return {"value": ops / m.wall if m.wall > 0 else None, "ops": ops,
            "wall_s": m.wall, "cpu_s": m.cpu,
            "ops_per_cpu_s": ops / m.cpu if m.cpu > 0 else None, "extra": extra}


def _is_treadle_loop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.split(".")[0] == "treadle"


# ---------------------------------------------------------------- callbacks


def call_soon(factory: LoopFactory, p: Params) -> Result:
    """Chained callbacks: each schedules the next, one pending at a time, so
    every callback costs one loop iteration."""
    n = int(p["callbacks"])

    async def main() -> Meter:
        loop = asyncio.get_running_loop()
        cs = loop.call_soon
        done = loop.create_future()
        left = n

        def cb() -> None:
            nonlocal left
            left -= 1
            if left:
                cs(cb)
            else:
                done.set_result(None)

        with Meter() as m:
            cs(cb)
            await done
        return m

    return throughput(n, run_on(factory, main()))


# ------------------------------------------------------------------- tasks


def switch(factory: LoopFactory, p: Params) -> Result:
    """T tasks each awaiting ``asyncio.sleep(0)`` N times."""
    tasks, iters = int(p["tasks"]), int(p["iters"])

    async def worker() -> None:
        sleep = asyncio.sleep
        for _ in range(iters):
            await sleep(0)

    async def main() -> Meter:
        with Meter() as m:
            await asyncio.gather(*[worker() for _ in range(tasks)])
        return m

    return throughput(tasks * iters, run_on(factory, main()))


def _eager_factory(loop: asyncio.AbstractEventLoop, which: str) -> Any:
    if which == "own" and _is_treadle_loop(loop):
        import treadle
        return treadle.eager_task_factory
    stdlib = getattr(asyncio, "eager_task_factory", None)
    if stdlib is None:
        raise NotApplicable("asyncio.eager_task_factory needs Python 3.12+")
    return stdlib


def spawn(factory: LoopFactory, p: Params) -> Result:
    """``create_task`` of N trivial coroutines, then ``gather`` them.
    p["eager"]: "off"; "asyncio" (asyncio.eager_task_factory); "own" (the
    loop's own eager factory: treadle.eager_task_factory on treadle)."""
    n, eager = int(p["tasks"]), str(p["eager"])

    async def nop() -> None:
        pass

    async def main() -> tuple[Meter, str]:
        loop = asyncio.get_running_loop()
        used = "default"
        if eager != "off":
            f = _eager_factory(loop, eager)
            loop.set_task_factory(f)
            used = f"{f.__module__.split('.')[0]}.{f.__name__}"
        create_task = loop.create_task
        with Meter() as m:
            tasks = [create_task(nop()) for _ in range(n)]
            await asyncio.gather(*tasks)
        loop.set_task_factory(None)
        return m, used

    m, used = run_on(factory, main())
    return throughput(n, m, task_factory=used)


def queue(factory: LoopFactory, p: Params) -> Result:
    """Ping-pong through two ``asyncio.Queue``: producer puts on A and waits
    on B, consumer gets from A and puts on B.  One item = one round trip."""
    n = int(p["items"])

    async def main() -> Meter:
        qa: asyncio.Queue[int] = asyncio.Queue()
        qb: asyncio.Queue[int] = asyncio.Queue()

        async def producer() -> None:
            for i in range(n):
                qa.put_nowait(i)
                await qb.get()

        async def consumer() -> None:
            for _ in range(n):
                qb.put_nowait(await qa.get())

        with Meter() as m:
            await asyncio.gather(producer(), consumer())
        return m

    return throughput(n, run_on(factory, main()))


def future(factory: LoopFactory, p: Params) -> Result:
    """Two tasks hand a value back and forth through fresh futures
    (``loop.create_future()`` + ``set_result``).  One round trip = two
    futures, two wake-ups."""
    n = int(p["rounds"])

    async def main() -> Meter:
        loop = asyncio.get_running_loop()
        create_future = loop.create_future
        to_b: asyncio.Future[int] = create_future()
        to_a: asyncio.Future[int] = create_future()

        async def side_a() -> None:
            nonlocal to_a
            for i in range(n):
                to_a = create_future()
                to_b.set_result(i)
                await to_a

        async def side_b() -> None:
            nonlocal to_b
            for _ in range(n):
                v = await to_b
                to_b = create_future()
                to_a.set_result(v)

        with Meter() as m:
            await asyncio.gather(side_a(), side_b())
        return m

    return throughput(n, run_on(factory, main()))


# ------------------------------------------------------------------ timers


def _percentile_ms(sorted_values: list[float], q: float) -> float:
    i = min(len(sorted_values) - 1, int(q * len(sorted_values)))
    return round(sorted_values[i] * 1000.0, 3)


def timers(factory: LoopFactory, p: Params) -> Result:
    """N tasks each ``asyncio.sleep(d)`` with d uniform in [0, max_ms]
    (seeded); the lateness of each wake-up (slept minus asked) is measured
    with ``perf_counter``, independently of the loop's clock."""
    n, max_s = int(p["tasks"]), float(p["max_ms"]) / 1000.0
    rnd = random.Random(int(p["seed"]))
    delays = [rnd.uniform(0.0, max_s) for _ in range(n)]
    late = [0.0] * n

    async def sleeper(i: int, d: float) -> None:
        t = time.perf_counter()
        await asyncio.sleep(d)
        late[i] = time.perf_counter() - t - d

    async def main() -> Meter:
        with Meter() as m:
            await asyncio.gather(*[sleeper(i, d) for i, d in enumerate(delays)])
        return m

    m = run_on(factory, main())
    s = sorted(late)
    return throughput(n, m, late_ms_p50=_percentile_ms(s, 0.50),
                      late_ms_p99=_percentile_ms(s, 0.99),
                      late_ms_max=round(s[-1] * 1000.0, 3),
                      early=sum(1 for x in late if x < -0.0005),
                      ideal_s=round(max(delays), 6))


def timer_cancel(factory: LoopFactory, p: Params) -> Result:
    """The timeout pattern: ``call_later`` a timer that will never fire,
    then cancel it.  Batches of B schedule+cancel pairs with one loop turn
    between batches, so the loop sees the cancelled timers as a real
    program's would.  One op = one schedule + one cancel."""
    n, batch = int(p["timers"]), int(p["batch"])
    rnd = random.Random(int(p["seed"]))
    delays = [rnd.uniform(1.0, 60.0) for _ in range(batch)]
    fired = 0

    def never() -> None:
        nonlocal fired
        fired += 1

    async def main() -> Meter:
        loop = asyncio.get_running_loop()
        call_later = loop.call_later
        sleep = asyncio.sleep
        with Meter() as m:
            for _ in range(n // batch):
                handles = [call_later(d, never) for d in delays]
                for h in handles:
                    h.cancel()
                await sleep(0)
        return m

    m = run_on(factory, main())
    if fired:
        raise AssertionError(f"{fired} cancelled timers fired")
    return throughput((n // batch) * batch, m)


# ------------------------------------------------------------------ memory


def mem_tasks(factory: LoopFactory, p: Params) -> Result:
    """Resident memory of N tasks that have started and wait on one future:
    the RSS after they are all parked minus the RSS before they were
    created, per task."""
    n = int(p["tasks"])

    async def main() -> Result:
        loop = asyncio.get_running_loop()
        gate: asyncio.Future[None] = loop.create_future()
        started = 0

        async def idle() -> None:
            nonlocal started
            started += 1
            await gate

        gc.collect()
        before, probe = rss_probe()
        tasks = [loop.create_task(idle()) for _ in range(n)]
        while started < n:
            await asyncio.sleep(0)
        gc.collect()
        after, _ = rss_probe()
        gate.set_result(None)
        await asyncio.gather(*tasks)
        delta = after - before
        return {"value": delta / n, "ops": n, "wall_s": None, "cpu_s": None,
                "extra": {"rss_delta_mib": round(delta / 2**20, 2),
                          "peak_rss_mib": round(peak_rss() / 2**20, 1),
                          "probe": probe}}

    return run_on(factory, main())


# ----------------------------------------------------------- cancel scopes


def _counting_turns(loop: asyncio.AbstractEventLoop) -> list[int | None]:
    """Count the loop's turns (asyncio's and treadle's run_forever both call
    ``self._run_once()`` once per turn).  ``[None]`` where a turn cannot be
    seen from Python (uvloop's loop is a C type)."""
    count: list[int | None] = [0]
    original = getattr(loop, "_run_once", None)
    if original is None:
        return [None]

    def counted() -> None:
        n = count[0]
        count[0] = 1 if n is None else n + 1
        original()

    try:
        loop._run_once = counted  # type: ignore[attr-defined]
    except AttributeError:
        return [None]
    return count


def scope_cancel(factory: LoopFactory, p: Params) -> Result:
    """N tasks blocked in one cancel scope, cancelled together: treadle's
    native scope on treadle, anyio's CancelScope (which re-delivers on every
    loop turn) on other loops.  Times cancel() to the last task done."""
    n = int(p["tasks"])

    async def cancel_all(make_group: Callable[[], Any],
                         sleep: Callable[[float], Awaitable[None]],
                         ) -> tuple[Meter, int | None]:
        loop = asyncio.get_running_loop()
        async with make_group() as tg:
            for _ in range(n):
                tg.start_soon(sleep, 3600)
            await sleep(0)
            await sleep(0)
            turns = _counting_turns(loop)
            m = Meter()
            m.__enter__()
            tg.cancel_scope.cancel()
        m.__exit__(None, None, None)
        return m, turns[0]

    probe = factory()
    native = _is_treadle_loop(probe)
    probe.close()
    if native:
        import treadle
        main = cancel_all(treadle.TaskGroup, asyncio.sleep)
    else:
        try:
            import anyio
        except ImportError:
            raise NotApplicable("anyio is not installed (the comparison "
                                "uses anyio's CancelScope)") from None
        main = cancel_all(anyio.create_task_group, anyio.sleep)
    m, turns = run_on(factory, main)
    return throughput(n, m, turns=turns,
                      scope="treadle.CancelScope" if native else "anyio.CancelScope")


def scope_enter_exit(factory: LoopFactory, p: Params) -> Result:
    """Enter and leave a timeout around one ``await asyncio.sleep(0)``, N
    times: ``treadle.move_on_after()`` on treadle, ``asyncio.timeout()``
    elsewhere."""
    n = int(p["scopes"])

    async def with_treadle() -> Meter:
        import treadle
        move_on_after, sleep = treadle.move_on_after, asyncio.sleep
        with Meter() as m:
            for _ in range(n):
                with move_on_after(60):
                    await sleep(0)
        return m

    async def with_asyncio() -> Meter:
        timeout, sleep = asyncio.timeout, asyncio.sleep
        with Meter() as m:
            for _ in range(n):
                async with timeout(60):
                    await sleep(0)
        return m

    probe = factory()
    native = _is_treadle_loop(probe)
    probe.close()
    m = run_on(factory, with_treadle() if native else with_asyncio())
    return throughput(n, m,
                      scope="treadle.move_on_after" if native else "asyncio.timeout")


# ---------------------------------------------------------------- registry

_CPU = "cpu"

WORKLOADS: list[Workload] = [
    Workload("call_soon", _CPU, "1,000,000 chained call_soon callbacks",
             "callbacks/s", True, "call_soon",
             {"callbacks": 1_000_000}, {"callbacks": 20_000}, ("callbacks",)),
    Workload("switch", _CPU, "1,000 tasks x 1,000 `await asyncio.sleep(0)`",
             "switches/s", True, "switch",
             {"tasks": 1000, "iters": 1000}, {"tasks": 100, "iters": 50}, ("iters",)),
    Workload("spawn", _CPU, "create_task of 100,000 no-op tasks, then gather",
             "tasks/s", True, "spawn",
             {"tasks": 100_000, "eager": "off"}, {"tasks": 2000}, ("tasks",)),
    Workload("spawn_eager", _CPU,
             "spawn with asyncio.eager_task_factory (Python 3.12+)",
             "tasks/s", True, "spawn",
             {"tasks": 100_000, "eager": "asyncio"}, {"tasks": 2000}, ("tasks",)),
    Workload("spawn_eager_own", _CPU,
             "spawn with the loop's own eager factory (treadle.eager_task_factory "
             "on treadle, every Python; asyncio's elsewhere, 3.12+)",
             "tasks/s", True, "spawn",
             {"tasks": 100_000, "eager": "own"}, {"tasks": 2000}, ("tasks",)),
    Workload("timers", _CPU,
             "100,000 tasks sleep(uniform 0-20 ms), lateness percentiles",
             "timers/s", True, "timers",
             {"tasks": 100_000, "max_ms": 20.0, "seed": 1234},
             {"tasks": 2000, "max_ms": 5.0}, ("tasks",)),
    Workload("timer_cancel", _CPU,
             "200,000 call_later + cancel, in batches of 1,000",
             "timers/s", True, "timer_cancel",
             {"timers": 200_000, "batch": 1000, "seed": 99},
             {"timers": 5000, "batch": 500}, ("timers",)),
    Workload("queue", _CPU, "200,000 items ping-ponged through two asyncio.Queue",
             "items/s", True, "queue",
             {"items": 200_000}, {"items": 3000}, ("items",)),
    Workload("future", _CPU, "200,000 round trips between two tasks via Futures",
             "round trips/s", True, "future",
             {"rounds": 200_000}, {"rounds": 3000}, ("rounds",)),
]


def _echo(api: str, size: int, label: str) -> Workload:
    api_text = {"sockets": "loop.sock_recv/sock_sendall",
                "streams": "asyncio streams", "protocol": "a Protocol"}[api]
    return Workload(
        f"echo_{api}_{label}", "echo",
        f"TCP echo server on {api_text}, {label.replace('k', ' KiB')} messages, "
        "10 connections, load from a separate process",
        "round trips/s", True, "echo",
        {"api": api, "size": size, "conns": 10, "duration": 2.0, "warmup": 0.5},
        {"duration": 0.3, "warmup": 0.1}, (), True)


for _api in ("sockets", "streams", "protocol"):
    WORKLOADS.append(_echo(_api, 1024, "1k"))
    WORKLOADS.append(_echo(_api, 65536, "64k"))

WORKLOADS += [
    Workload("http", "http",
             "HTTP/1.1 keep-alive server on the Protocol API, 50 connections "
             "(wrk; treadle's load generator when wrk is missing)",
             "requests/s", True, "http",
             {"app": "protocol", "conns": 50, "split": False, "duration": 2.0,
              "warmup": 0.5},
             {"conns": 10, "duration": 0.3, "warmup": 0.1}, (), True),
    Workload("http_split", "http",
             "the same, each response written in two writes (head, body)",
             "requests/s", True, "http",
             {"app": "protocol", "conns": 50, "split": True, "duration": 2.0,
              "warmup": 0.5},
             {"conns": 10, "duration": 0.3, "warmup": 0.1}, (), True),
    Workload("http_aiohttp", "http",
             "aiohttp web hello world, 50 keep-alive connections (needs aiohttp)",
             "requests/s", True, "http",
             {"app": "aiohttp", "conns": 50, "duration": 2.0, "warmup": 0.5},
             {"conns": 10, "duration": 0.3, "warmup": 0.1}, (), True),
    Workload("http_uvicorn", "http",
             "uvicorn (httptools) with a bare ASGI hello world, 50 keep-alive "
             "connections (needs uvicorn, httptools)",
             "requests/s", True, "http",
             {"app": "uvicorn", "conns": 50, "duration": 2.0, "warmup": 0.5},
             {"conns": 10, "duration": 0.3, "warmup": 0.1}, (), True),
    Workload("http_starlette", "http",
             "uvicorn (httptools) + Starlette JSONResponse, 50 keep-alive "
             "connections (needs uvicorn, httptools, starlette)",
             "requests/s", True, "http",
             {"app": "starlette", "conns": 50, "duration": 2.0, "warmup": 0.5},
             {"conns": 10, "duration": 0.3, "warmup": 0.1}, (), True),
    Workload("scope_cancel", "scopes",
             "100,000 tasks blocked in one cancel scope, cancelled together "
             "(treadle's native scope; anyio's CancelScope on other loops)",
             "tasks/s", True, "scope_cancel",
             {"tasks": 100_000}, {"tasks": 2000}, ("tasks",)),
    Workload("scope_enter_exit", "scopes",
             "enter+leave a timeout around `await sleep(0)` (treadle."
             "move_on_after on treadle, asyncio.timeout elsewhere)",
             "scopes/s", True, "scope_enter_exit",
             {"scopes": 200_000}, {"scopes": 3000}, ("scopes",)),
    Workload("simnet", "simnet",
             "treadle.testing.simnet: 50 hosts, 1,000 connections over asyncio "
             "streams, a request per connection every 30 simulated s for 10 "
             "simulated minutes (treadle only)",
             "deliveries/s", True, "simnet",
             {"hosts": 50, "connections": 1000, "minutes": 10.0, "interval": 30.0},
             {"hosts": 4, "connections": 12, "minutes": 0.5, "interval": 5.0},
             ("connections",)),
    Workload("mem_tasks", "memory", "RSS per idle task (100,000 tasks)",
             "bytes/task", False, "mem_tasks",
             {"tasks": 100_000}, {"tasks": 5000}, ("tasks",)),
    Workload("mem_conns", "memory",
             "RSS per idle connection (10,000 accepted connections, Protocol API)",
             "bytes/conn", False, "mem_conns",
             {"conns": 10_000}, {"conns": 200}, ("conns",)),
]

BY_NAME: dict[str, Workload] = {w.name: w for w in WORKLOADS}
GROUPS: dict[str, list[str]] = {}
for _w in WORKLOADS:
    GROUPS.setdefault(_w.group, []).append(_w.name)
GROUPS["io"] = GROUPS["echo"] + GROUPS["http"]
GROUPS["all"] = [w.name for w in WORKLOADS]


def entry_point(w: Workload) -> Callable[[LoopFactory, Params], Result]:
    """The function that runs *w* (imported lazily: network workloads pull
    in sockets and subprocess support only in the children that need it)."""
    fn = globals().get(w.entry)
    if fn is None and w.entry == "simnet":
        from ._simnet import simnet as fn
    if fn is None:
        from . import _netloads
        fn = getattr(_netloads, w.entry)
    result: Callable[[LoopFactory, Params], Result] = fn
    return result


def select(only: list[str] | None, skip: list[str] | None) -> list[str]:
    """Workload names for ``--only``/``--skip``: names, group names (cpu,
    echo, http, io, memory, all) or shell patterns (``echo_*_1k``), kept in
    the registry's order.  A workload's own name wins over a group of the
    same name: ``http`` is the workload, ``http*`` both HTTP workloads."""
    import fnmatch

    def expand(terms: list[str]) -> set[str]:
        out: set[str] = set()
        for term in terms:
            for t in term.split(","):
                t = t.strip()
                if not t:
                    continue
                if t in GROUPS and t not in BY_NAME:
                    out.update(GROUPS[t])
                    continue
                hits = [w.name for w in WORKLOADS if fnmatch.fnmatchcase(w.name, t)]
                if not hits:
                    raise ValueError(
                        f"no workload matches {t!r} (names: "
                        f"{', '.join(BY_NAME)}; groups: {', '.join(GROUPS)})")
                out.update(hits)
        return out

    chosen = expand(only) if only else set(BY_NAME)
    if skip:
        chosen -= expand(skip)
    return [w.name for w in WORKLOADS if w.name in chosen]
