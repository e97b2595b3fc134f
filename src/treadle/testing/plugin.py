"""treadle's pytest plugin (loaded through the ``pytest11`` entry point).

Owns: running ``async def`` tests and their async fixtures on a treadle loop
- every async fixture and the test itself in *one* loop and *one* runner task
(so a context variable set in a fixture is seen by the test, and an object a
fixture binds to its loop is usable in the test); the ``treadle_clock``
fixture; the ``treadle_net`` fixture (a simulated network on the test's loop,
``treadle.testing.simnet``); seeded scheduling per test (``--treadle-seed``,
``--treadle-shuffle``, ``--treadle-explore``, ``--treadle-replay``) and printing
the seed of a failing test, with the command that replays it and, for a
simulated network, its last events.
Never: touches a test that is not a treadle test, so it is harmless in
projects that do not use it and beside pytest-asyncio and anyio.  A test is a
treadle test when it is marked ``@pytest.mark.treadle`` (directly, on its
class or module), when it is an ``async def`` test that requests
``treadle_clock`` or ``treadle_net``, or, in auto mode (``--treadle-mode=auto`` or the
``treadle_mode`` ini option), when it is any ``async def`` test that no other
async plugin has claimed (marked ``asyncio``, ``anyio`` or ``trio``).

Loop lifetime: a loop is started when a treadle test (or one of its async
fixtures) first needs one and lives as long as the widest-scoped async
fixture that used it: normally one loop per test; with a module- or
session-scoped async fixture, one loop for all the tests that use it.
Each scope node that used the loop holds a lease, released by a finalizer
on that node, so the loop is closed (remaining tasks cancelled, async
generators and the default executor shut down, as ``asyncio.run`` does)
right after the last fixture that needed it is torn down.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import random
import re
import time
from collections import deque
from typing import Any, Awaitable, Callable, Generator, Iterator

import pytest

import treadle

from .clock import VirtualClock
from .order import SeededOrder

_OTHER_ASYNC_MARKERS = ("asyncio", "anyio", "trio")
_SEED_FIXTURE = "_treadle_seed"
_SEED_ID = re.compile(r"(-?)treadle-seed=(-?\d+)(-?)")

_state_key = pytest.StashKey["_PluginState"]()
_treadle_key = pytest.StashKey[bool]()
_seed_key = pytest.StashKey["int | None"]()
_function_key = pytest.StashKey[Any]()
_net_key = pytest.StashKey[Any]()
_CLOCK_FIXTURES = ("treadle_clock", "treadle_net")


# ---------------------------------------------------------------------------
# options, markers, header
# ---------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("treadle", "treadle: async tests on treadle's loop")
    group.addoption(
        "--treadle-mode", dest="treadle_mode", choices=("strict", "auto"), default=None,
        help="strict (default): run only tests marked @pytest.mark.treadle (or "
             "requesting treadle_clock) on treadle; auto: also every async def "
             "test no other async plugin claims")
    group.addoption(
        "--treadle-seed", dest="treadle_seed", type=int, default=None, metavar="N",
        help="seeded scheduling for every treadle test: tasks ready in the same "
             "loop turn run in an order drawn from this seed")
    group.addoption(
        "--treadle-shuffle", dest="treadle_shuffle", type=int, default=None, metavar="K",
        help="run every treadle test under K scheduling seeds (from --treadle-seed, "
             "or a random base) and report the seeds that fail")
    group.addoption(
        "--treadle-explore", dest="treadle_explore", choices=("random", "pct"),
        default="random",
        help="how a treadle_net test's seed decides its schedule: random (seeded "
             "shuffling) or pct (probabilistic concurrency testing, depth 3)")
    group.addoption(
        "--treadle-shrink", dest="treadle_shrink", action="store_true", default=False,
        help="when a treadle_net test fails, rerun it to find the fewest scheduling "
             "and fault deviations that still fail, and print the --treadle-replay "
             "command for that run")
    group.addoption(
        "--treadle-replay", dest="treadle_replay", default=None, metavar="DEVIATIONS",
        help="replay a treadle_net run from its recorded deviations (as a failing "
             "test prints them, e.g. 17:2,104:1)")
    parser.addini("treadle_mode", "default for --treadle-mode (strict or auto)",
                  default="strict")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "treadle(seed=None): run this async test and its async fixtures on a treadle "
        "event loop (seed: its scheduling seed unless --treadle-seed/--treadle-shuffle "
        "is given)")
    config.stash[_state_key] = _PluginState(config)


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash.get(_state_key, None)
    if state is None or not (state.shuffle or state.seed is not None
                             or state.mode == "auto"):
        return None
    parts = [f"mode={state.mode}"]
    if state.shuffle:
        seeds = state.shuffle_seeds()
        parts.append(f"shuffle={state.shuffle} (seeds {seeds[0]}..{seeds[-1]})")
    elif state.seed is not None:
        parts.append(f"seed={state.seed}")
    return ["treadle: " + ", ".join(parts)]


class _PluginState:
    """Per-session state: options, the current runner and its leases."""

    def __init__(self, config: pytest.Config) -> None:
        mode = config.getoption("treadle_mode") or config.getini("treadle_mode")
        if mode not in ("strict", "auto"):
            raise pytest.UsageError(
                f"treadle_mode must be 'strict' or 'auto', not {mode!r}")
        self.mode: str = mode
        self.seed: int | None = config.getoption("treadle_seed")
        shuffle = config.getoption("treadle_shuffle")
        if shuffle is not None and shuffle < 1:
            raise pytest.UsageError("--treadle-shuffle must be at least 1")
        self.shuffle: int = shuffle or 0
        self._base: int | None = None
        self.config = config
        self.runner: _Runner | None = None
        self.leases: dict[int, Any] = {}
        self.item: pytest.Item | None = None
        self.failed_seeds: list[tuple[str, int]] = []
        self.explore: str = config.getoption("treadle_explore") or "random"
        self.replay: str | None = config.getoption("treadle_replay")
        self.shrink: bool = bool(config.getoption("treadle_shrink"))
        if self.replay is not None:
            from .simnet import parse_deviations
            try:
                parse_deviations(self.replay)
            except ValueError as exc:
                raise pytest.UsageError(f"--treadle-replay: {exc}") from None

    def shuffle_seeds(self) -> list[int]:
        if self._base is None:
            if self.seed is not None:
                self._base = self.seed
            else:
                workerinput = getattr(self.config, "workerinput", None)
                if workerinput is not None and "testrunuid" in workerinput:
                    # pytest-xdist: every worker must collect the same ids.
                    self._base = int(str(workerinput["testrunuid"])[:8], 16) % 10**6
                else:
                    self._base = random.SystemRandom().randrange(10**6)
        return [self._base + i for i in range(self.shuffle)]

    # -- leases -----------------------------------------------------------

    def lease(self, node: Any) -> _Runner:
        """The runner, started if needed, held until *node* is torn down."""
        item = self.item
        runner = self.runner
        if runner is None:
            fixturenames = getattr(item, "fixturenames", ()) if item is not None else ()
            wants_clock = any(name in fixturenames for name in _CLOCK_FIXTURES)
            wants_net = "treadle_net" in fixturenames
            if node is item:
                # The loop lives for this test only.
                clock = VirtualClock() if wants_clock else None
                runner = self.runner = _Runner(clock, simulated=wants_net)
            else:
                # A wider-scoped fixture starts it: it may serve tests with and
                # without treadle_clock, so give it a clock in real-time mode
                # that treadle_clock switches to virtual for one test.
                clock = VirtualClock(rate=1.0, autojump_threshold=math.inf,
                                     start=time.monotonic())
                runner = self.runner = _Runner(clock)
        if id(node) not in self.leases:
            self.leases[id(node)] = node
            node.addfinalizer(lambda: self._release(node))
        if item is not None and runner.item is not item:
            runner.begin(item, item.stash.get(_seed_key, None))
        return runner

    def _release(self, node: Any) -> None:
        self.leases.pop(id(node), None)
        if not self.leases and self.runner is not None:
            runner, self.runner = self.runner, None
            runner.close()


# ---------------------------------------------------------------------------
# the runner: one loop, one task
# ---------------------------------------------------------------------------

class _Runner:
    """A treadle loop and the single task that awaits every fixture step and
    test given to ``run()``, one after the other."""

    def __init__(self, clock: VirtualClock | None, simulated: bool = False) -> None:
        self.clock = clock
        self.loop: Any
        if simulated:
            # A loop whose simulated hosts use the simulated network.
            from .simnet import SimEventLoop
            self.loop = SimEventLoop(clock=clock)
        else:
            self.loop = treadle.new_event_loop(clock=clock)
        self.item: pytest.Item | None = None
        self._order: SeededOrder | None = None
        self._jobs: deque[tuple[Awaitable[Any], asyncio.Future[Any]]] = deque()
        self._idle: asyncio.Future[None] | None = None
        self._current: asyncio.Future[Any] | None = None
        self._closing = False
        self._task = self.loop.create_task(self._serve(), name="treadle pytest runner")

    def begin(self, item: pytest.Item, seed: int | None) -> None:
        """Start serving *item*: install its scheduling seed (fresh RNG)."""
        self.item = item
        loop = self.loop
        if self._order is not None:
            self._order.uninstall(loop)
            self._order = None
        if seed is not None:
            self._order = SeededOrder(seed)
            self._order.install(loop)

    async def _serve(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        jobs = self._jobs
        while True:
            while not jobs:
                if self._closing:
                    return
                self._idle = self.loop.create_future()
                try:
                    await self._idle
                except asyncio.CancelledError:
                    if self._closing:
                        raise
                    # A cancellation aimed at a fixture or test that has
                    # finished (or a fixture's task group failing between
                    # steps): it was for them, not for the runner.
                    while task.cancelling():
                        task.uncancel()
                finally:
                    self._idle = None
            awaitable, out = jobs.popleft()
            self._current = out
            try:
                result = await awaitable
            except BaseException as exc:   # handed to the caller, whatever it is
                if not out.done():
                    out.set_exception(exc)
                del exc
            else:
                if not out.done():
                    out.set_result(result)
                del result
            finally:
                self._current = None
                del awaitable, out

    def run(self, awaitable: Awaitable[Any]) -> Any:
        """Await *awaitable* in the runner task and return its result (or
        raise its exception), running the loop meanwhile."""
        loop = self.loop
        if loop.is_closed():
            raise RuntimeError("treadle's test loop is already closed")
        if self._current is not None:
            # The previous job never finished (its run_until_complete was
            # interrupted, e.g. by a pytest-timeout): cancel what is left of it.
            leftover = self._current
            self._task.cancel()
            try:
                loop.run_until_complete(leftover)
            except BaseException:
                pass
            while self._task.cancelling():
                self._task.uncancel()
        out = loop.create_future()
        self._jobs.append((awaitable, out))
        idle = self._idle
        if idle is not None and not idle.done():
            idle.set_result(None)
        return loop.run_until_complete(out)

    def close(self) -> None:
        """Shut down as ``asyncio.run`` does, then close the loop."""
        loop = self.loop
        if loop.is_closed():
            return
        try:
            self._closing = True
            idle = self._idle
            if idle is not None and not idle.done():
                idle.set_result(None)
            if not self._task.done():
                self._task.cancel()
            _cancel_all_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            self._jobs.clear()
            loop.close()


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if task.cancelled():
            continue
        if task.exception() is not None:
            loop.call_exception_handler({
                "message": "unhandled exception in a task left running when "
                           "its test ended",
                "exception": task.exception(),
                "task": task,
            })


# ---------------------------------------------------------------------------
# which tests are ours
# ---------------------------------------------------------------------------

def _claims(node: Any, fixturenames: Any, function: Any, mode: str) -> bool:
    if node.get_closest_marker("treadle") is not None:
        return True
    if not inspect.iscoroutinefunction(function):
        return False
    if any(node.get_closest_marker(name) is not None for name in _OTHER_ASYNC_MARKERS):
        return False
    if "anyio_backend" in fixturenames:
        return False
    return any(name in fixturenames for name in _CLOCK_FIXTURES) or mode == "auto"


def _is_treadle_item(item: pytest.Item) -> bool:
    cached = item.stash.get(_treadle_key, None)
    if cached is not None:
        return cached
    state = item.config.stash[_state_key]
    ours = isinstance(item, pytest.Function) and _claims(
        item, item.fixturenames, item.stash.get(_function_key, None) or item.obj,
        state.mode)
    item.stash[_treadle_key] = ours
    return ours


def _seed_of(item: pytest.Item, state: _PluginState) -> int | None:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and _SEED_FIXTURE in callspec.params:
        return int(callspec.params[_SEED_FIXTURE])
    if state.seed is not None:
        return state.seed
    marker = item.get_closest_marker("treadle")
    if marker is not None and marker.kwargs.get("seed") is not None:
        seed = marker.kwargs["seed"]
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise pytest.UsageError(
                f"{item.nodeid}: @pytest.mark.treadle(seed=...) needs an int, "
                f"got {seed!r}")
        return seed
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    state = metafunc.config.stash[_state_key]
    if not state.shuffle:
        return
    if not _claims(metafunc.definition, metafunc.fixturenames, metafunc.function,
                   state.mode):
        return
    if not inspect.iscoroutinefunction(metafunc.function):
        return      # a sync test has no schedule to vary
    seeds = state.shuffle_seeds()
    metafunc.fixturenames.append(_SEED_FIXTURE)
    metafunc.parametrize(_SEED_FIXTURE, seeds, indirect=True,
                         ids=[f"treadle-seed={s}" for s in seeds])


@pytest.fixture
def _treadle_seed(request: pytest.FixtureRequest) -> int:
    """The scheduling seed of this run of the test (--treadle-shuffle)."""
    return int(request.param)


# ---------------------------------------------------------------------------
# running tests and fixtures
# ---------------------------------------------------------------------------

@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    state = item.config.stash[_state_key]
    state.item = item
    if _is_treadle_item(item):
        item.stash[_seed_key] = _seed_of(item, state)
        function = item.stash.get(_function_key, None) or getattr(item, "obj", None)
        if inspect.isasyncgenfunction(function):
            pytest.fail(f"{item.nodeid}: a treadle test must be an async def "
                        f"function, not an async generator", pytrace=False)
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    # Keep the test function as collected: another plugin may swap
    # ``item.obj`` for a wrapper while the test runs (pytest-asyncio in auto
    # mode does), and a treadle test must still run on treadle.
    if _is_treadle_item(item):
        item.stash[_function_key] = getattr(item, "obj", None)
    try:
        return (yield)
    finally:
        if _function_key in item.stash:
            del item.stash[_function_key]


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not _is_treadle_item(pyfuncitem):
        return None
    function = pyfuncitem.stash.get(_function_key, None) or pyfuncitem.obj
    if not inspect.iscoroutinefunction(function):
        return None
    funcargs = pyfuncitem.funcargs
    testargs = {name: funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    state = pyfuncitem.config.stash[_state_key]
    runner = state.lease(pyfuncitem)
    try:
        runner.run(function(**testargs))
    except Exception as exc:
        net = pyfuncitem.stash.get(_net_key, None)
        if net is not None and state.shrink:
            _shrink_test(pyfuncitem, function, testargs, net, type(exc))
        raise
    return True


_shrunk_key = pytest.StashKey[Any]()


def _shrink_test(item: pytest.Function, function: Any, testargs: dict[str, Any],
                 net: Any, failure_type: type[BaseException]) -> None:
    """Rerun a failing treadle_net test with fewer and fewer of its
    deviations (each run on a fresh loop, as the fixture sets it up) and
    keep the smallest set that still fails."""
    from .simnet import SimNetwork
    from .simnet._choices import ReplaySource
    from .simnet._explore import shrink_with
    for name, defs in item._fixtureinfo.name2fixturedefs.items():
        func = defs[-1].func
        if name != "treadle_net" and (inspect.iscoroutinefunction(func)
                                      or inspect.isasyncgenfunction(func)):
            item.stash[_shrunk_key] = (f"not shrunk: the test uses the async fixture "
                                       f"{name!r}, which lives on the first run's loop")
            return

    def fails(candidate: dict[int, float]) -> dict[int, float] | None:
        runner = _Runner(VirtualClock(), simulated=True)
        other = SimNetwork(net.seed, source=ReplaySource(candidate))
        other.attach(runner.loop)
        try:
            runner.run(function(**dict(testargs, treadle_net=other)))
        except failure_type:
            found: dict[int, float] = other.choices.deviations()
            return found
        except BaseException:
            return None
        finally:
            other._power_off()
            other.detach()
            runner.close()
        return None

    deviations, runs = shrink_with(fails, net.choices.deviations())
    item.stash[_shrunk_key] = (deviations, runs, len(net.choices.deviations()))


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Generator[None, Any, Any]:
    function = fixturedef.func
    if not (inspect.iscoroutinefunction(function)
            or inspect.isasyncgenfunction(function)):
        return (yield)
    state: _PluginState = request.config.stash[_state_key]
    if state.item is None or not _is_treadle_item(state.item):
        return (yield)
    resolved = _resolve_fixture_function(fixturedef, request)
    node = request.node
    name = fixturedef.argname

    def run_on_treadle(**kwargs: Any) -> Any:
        runner = state.lease(node)
        if not inspect.isasyncgenfunction(resolved):
            return runner.run(resolved(**kwargs))
        agen = resolved(**kwargs)
        try:
            value = runner.run(agen.__anext__())
        except StopAsyncIteration:
            raise ValueError(f"{name} did not yield a value") from None

        def finish() -> None:
            try:
                runner.run(agen.__anext__())
            except StopAsyncIteration:
                return
            try:
                runner.run(agen.aclose())
            finally:
                pytest.fail(f"fixture {name!r} has more than one 'yield'",
                            pytrace=False)

        request.addfinalizer(finish)
        return value

    fixturedef.func = run_on_treadle
    try:
        return (yield)
    finally:
        fixturedef.func = function


def _resolve_fixture_function(fixturedef: Any, request: Any) -> Callable[..., Any]:
    """The fixture function bound as pytest would bind it (to the test
    class instance for a fixture defined in a test class)."""
    try:
        from _pytest.fixtures import resolve_fixture_function
    except ImportError:         # pragma: no cover - every supported pytest has it
        return fixturedef.func  # type: ignore[no-any-return]
    resolved: Callable[..., Any] = resolve_fixture_function(fixturedef, request)
    return resolved


@pytest.fixture
def treadle_clock(request: pytest.FixtureRequest) -> Iterator[VirtualClock]:
    """The test loop's ``VirtualClock``, in autojump mode: time jumps to the
    next timer as soon as every task is blocked.  Requesting it makes an
    ``async def`` test a treadle test."""
    item = request.node
    if not _is_treadle_item(item):
        pytest.fail("treadle_clock is for treadle tests: mark the test "
                    "@pytest.mark.treadle (it is claimed by another async plugin "
                    "or is not an async def test)", pytrace=False)
    state = request.config.stash[_state_key]
    runner = state.lease(item)
    clock = runner.clock
    if clock is None:
        pytest.fail("treadle_clock was requested after this test's loop started "
                    "without a clock (request.getfixturevalue?); request it as an "
                    "argument of the test or of a fixture", pytrace=False)
    saved = (clock.rate, clock.autojump_threshold)
    if clock.rate != 0.0:
        # A shared loop's clock in real-time mode: stop it on the next whole
        # second (forward, never back), so that sums of whole delays stay
        # exact: t0 + 3600 - t0 == 3600 holds for a whole t0, not in general.
        clock.rate = 0.0
        clock._set(float(math.ceil(clock.time())))
    clock.autojump_threshold = 0.0
    try:
        yield clock
    finally:
        clock.rate, clock.autojump_threshold = saved


@pytest.fixture
def treadle_net(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A ``treadle.testing.simnet.SimNetwork`` on the test's loop: add hosts,
    run code on them, inject faults.  Virtual time (autojump), and one seed
    for the schedule and every network decision: ``--treadle-seed``,
    ``--treadle-shuffle`` or ``@pytest.mark.treadle(seed=N)``, else 0.  A
    failing test prints the seed, the command that replays it and the last
    simulated events."""
    from .simnet import SimEventLoop, SimNetwork
    from .simnet._choices import PCTSource, RandomSource, ReplaySource, parse_deviations
    item = request.node
    if not _is_treadle_item(item):
        pytest.fail("treadle_net is for treadle tests: mark the test "
                    "@pytest.mark.treadle (it is claimed by another async plugin "
                    "or is not an async def test)", pytrace=False)
    state = request.config.stash[_state_key]
    runner = state.lease(item)
    if not isinstance(runner.loop, SimEventLoop) or runner.clock is None:
        pytest.fail("treadle_net needs a loop of its own: this test's loop was started "
                    "by a module- or session-scoped async fixture", pytrace=False)
    runner.clock.autojump_threshold = 0.0
    seed = item.stash.get(_seed_key, None)
    if seed is None:
        seed = 0
    if state.replay is not None:
        source: Any = ReplaySource(parse_deviations(state.replay))
    elif state.explore == "pct":
        source = PCTSource(seed)
    else:
        source = RandomSource(seed)
    net = SimNetwork(seed, source=source)
    net.attach(runner.loop)
    item.stash[_net_key] = net
    try:
        yield net
    finally:
        net._power_off()
        net.detach()


# ---------------------------------------------------------------------------
# reporting seeds
# ---------------------------------------------------------------------------

def _rerun_id(item: pytest.Item) -> str:
    """The node id to rerun with ``--treadle-seed`` (without the shuffle
    parameter)."""
    nodeid = item.nodeid
    if "[" not in nodeid:
        return nodeid
    head, _, params = nodeid.partition("[")
    params = params[:-1]

    def drop(match: re.Match[str]) -> str:
        return "-" if match.group(1) and match.group(3) else ""

    params = _SEED_ID.sub(drop, params)
    return f"{head}[{params}]" if params else head


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Generator[None, Any, Any]:
    report = yield
    if report.failed and _is_treadle_item(item):
        seed = item.stash.get(_seed_key, None)
        net = item.stash.get(_net_key, None)
        if net is not None:
            _report_network(item, report, net, seed)
        elif seed is not None:
            state = item.config.stash[_state_key]
            rerun = _rerun_id(item)
            report.sections.append((
                "treadle",
                f"scheduling seed: {seed}\n"
                f"rerun: pytest --treadle-seed={seed} '{rerun}'"))
            state.failed_seeds.append((rerun, seed))
    return report


def _report_network(item: pytest.Item, report: Any, net: Any, seed: int | None) -> None:
    state = item.config.stash[_state_key]
    rerun = _rerun_id(item)
    seed = net.seed if seed is None else seed
    options = []
    if state.replay is not None:
        options.append(f"--treadle-replay={state.replay}")
    else:
        options.append(f"--treadle-seed={seed}")
        if state.explore != "random":
            options.append(f"--treadle-explore={state.explore}")
    lines = [f"seed: {seed} (the schedule and every network decision)",
             f"rerun: pytest {' '.join(options)} '{rerun}'",
             f"decisions: {len(net.choices.record)}, of which deviations: "
             f"{len(net.choices.deviations())}",
             f"virtual time: {net._now():.6f} s, events: {net.log.count}",
             "last simulated events:", net.last_events(25)]
    shrunk = item.stash.get(_shrunk_key, None)
    if isinstance(shrunk, str):
        lines.insert(2, shrunk)
    elif shrunk is not None:
        from .simnet import format_deviations
        deviations, runs, before = shrunk
        replay = format_deviations(deviations)
        lines[2:2] = [f"shrunk in {runs} runs from {before} to {len(deviations)} "
                      f"deviation(s); the smallest failing run:",
                      f"rerun: pytest --treadle-replay={replay} '{rerun}'"]
    report.sections.append(("treadle simnet", "\n".join(lines)))
    state.failed_seeds.append((rerun, seed))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    state = terminalreporter.config.stash.get(_state_key, None)
    if state is None or not state.failed_seeds:
        return
    terminalreporter.write_sep("=", "treadle: failing scheduling seeds")
    seen = set()
    for nodeid, seed in state.failed_seeds:
        if (nodeid, seed) in seen:
            continue
        seen.add((nodeid, seed))
        terminalreporter.write_line(f"{nodeid}: seed {seed}  "
                                    f"(pytest --treadle-seed={seed} '{nodeid}')")
