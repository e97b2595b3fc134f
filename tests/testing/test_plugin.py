"""The pytest plugin, tested through pytester (each test runs a pytest
session of its own, in process, with the plugin loaded from its entry
point as in a user's project)."""

from __future__ import annotations

import json
import re
import time
from importlib import metadata

import pytest

pytest_plugins = ["pytester"]


def _run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    # Other async plugins that may be installed stay out of these runs
    # (test_coexist.py runs them together).
    return pytester.runpytest("-p", "no:cacheprovider", "-p", "no:asyncio",
                              "-p", "no:anyio", *args)


def test_registered_through_the_pytest11_entry_point():
    points = [ep for ep in metadata.entry_points(group="pytest11")
              if ep.name == "treadle"]
    assert [ep.value for ep in points] == ["treadle.testing.plugin"]


def test_marked_async_test_runs_on_treadle(pytester):
    pytester.makepyfile("""
        import asyncio, pytest, treadle

        @pytest.mark.treadle
        async def test_it():
            loop = asyncio.get_running_loop()
            assert isinstance(loop, treadle.EventLoop)
            assert isinstance(asyncio.current_task(), treadle.Task)
            await asyncio.sleep(0)
    """)
    _run(pytester).assert_outcomes(passed=1)


def test_failure_inside_an_async_test_is_reported_normally(pytester):
    pytester.makepyfile("""
        import asyncio, pytest

        @pytest.mark.treadle
        async def test_it():
            await asyncio.sleep(0)
            assert 1 + 1 == 3
    """)
    result = _run(pytester)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*assert (1 + 1) == 3*"])
    # no seed in use: nothing about seeds
    assert "seed" not in result.stdout.str()


def test_strict_mode_leaves_unmarked_async_tests_alone(pytester):
    pytester.makepyfile("""
        async def test_unmarked():
            pass
    """)
    result = _run(pytester)
    # pytest's own verdict, exactly as without the plugin
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*async def functions are not natively supported*"])


@pytest.mark.parametrize("how", [["--treadle-mode=auto"], ["-o", "treadle_mode=auto"]])
def test_auto_mode_claims_unmarked_async_tests(pytester, how):
    pytester.makepyfile("""
        import asyncio, pytest, treadle

        async def test_unmarked():
            assert isinstance(asyncio.get_running_loop(), treadle.EventLoop)

        @pytest.mark.anyio
        async def test_someone_elses():
            pass

        def test_sync():
            pass
    """)
    result = _run(pytester, *how)
    # the anyio-marked test is not ours (without anyio installed pytest
    # fails it; with anyio it runs there)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) >= 2
    result.stdout.fnmatch_lines(["*treadle: mode=auto*"])


def test_bad_mode_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = _run(pytester, "-o", "treadle_mode=sometimes")
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_class_and_module_markers_apply(pytester):
    pytester.makepyfile("""
        import asyncio, pytest, treadle
        pytestmark = pytest.mark.treadle

        async def test_module_level():
            assert isinstance(asyncio.get_running_loop(), treadle.EventLoop)

        class TestGroup:
            async def test_method(self):
                assert isinstance(asyncio.get_running_loop(), treadle.EventLoop)
    """)
    _run(pytester).assert_outcomes(passed=2)


def test_fixtures_and_test_share_one_loop_and_one_task(pytester):
    pytester.makepyfile("""
        import asyncio, contextvars, pytest

        var = contextvars.ContextVar("var", default="unset")
        seen = {}

        @pytest.fixture
        async def plain_fixture():
            seen["plain"] = (asyncio.get_running_loop(), asyncio.current_task())
            return "value"

        @pytest.fixture
        async def gen_fixture(plain_fixture):
            var.set("set by fixture")
            seen["gen"] = (asyncio.get_running_loop(), asyncio.current_task())
            event = asyncio.Event()      # bound to this loop on first use
            yield event
            # teardown runs in the same task and loop too
            assert (asyncio.get_running_loop(), asyncio.current_task()) == seen["gen"]
            assert event.is_set()
            print("teardown ok")

        @pytest.mark.treadle
        async def test_it(gen_fixture, plain_fixture):
            here = (asyncio.get_running_loop(), asyncio.current_task())
            assert here == seen["gen"] == seen["plain"]
            assert plain_fixture == "value"
            assert var.get() == "set by fixture"
            gen_fixture.set()
            await gen_fixture.wait()
    """)
    result = _run(pytester, "-s")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*teardown ok*"])


def test_each_test_gets_a_fresh_loop_closed_after_it(pytester):
    pytester.makepyfile("""
        import asyncio, pytest
        loops = []

        @pytest.fixture
        async def fix():
            yield
            loops.append(("teardown", asyncio.get_running_loop()))

        @pytest.mark.treadle
        async def test_one(fix):
            loops.append(asyncio.get_running_loop())

        @pytest.mark.treadle
        async def test_two(fix):
            loops.append(asyncio.get_running_loop())
            first = loops[0]
            assert loops[1] == ("teardown", first)
            assert first is not asyncio.get_running_loop()
            assert first.is_closed()
    """)
    _run(pytester).assert_outcomes(passed=2)


def test_module_scoped_async_fixture_keeps_one_loop_for_its_tests(pytester):
    pytester.makepyfile("""
        import asyncio, pytest
        loops = []

        @pytest.fixture(scope="module")
        async def server():
            loop = asyncio.get_running_loop()
            queue = asyncio.Queue()
            async def serve():
                while True:
                    item = await queue.get()
                    item[1].set_result(item[0] * 2)
            task = asyncio.create_task(serve())
            yield queue
            task.cancel()

        async def ask(queue, n):
            fut = asyncio.get_running_loop().create_future()
            await queue.put((n, fut))
            return await fut

        @pytest.mark.treadle
        async def test_one(server):
            loops.append(asyncio.get_running_loop())
            assert await ask(server, 2) == 4

        @pytest.mark.treadle
        async def test_two(server, treadle_clock):
            loops.append(asyncio.get_running_loop())
            assert loops[0] is loops[1]
            t0 = asyncio.get_running_loop().time()
            assert t0 == int(t0)            # stopped on a whole second
            await asyncio.sleep(3600)       # virtual for this test only
            assert asyncio.get_running_loop().time() - t0 == 3600
            assert await ask(server, 5) == 10

        @pytest.mark.treadle
        async def test_three(server):
            loop = asyncio.get_running_loop()
            assert loop is loops[0]
            assert loop.get_clock().rate == 1.0     # back to real time
            assert await ask(server, 1) == 2

        def test_after_module_fixture_gone():
            pass
    """)
    _run(pytester).assert_outcomes(passed=4)


def test_tasks_left_running_are_cancelled_when_the_test_ends(pytester):
    pytester.makepyfile("""
        import asyncio, pytest
        state = {}

        @pytest.mark.treadle
        async def test_leaves_a_task():
            async def forever():
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    state["cancelled"] = True
                    raise
            state["task"] = asyncio.create_task(forever())
            await asyncio.sleep(0)

        def test_check():
            assert state["cancelled"] and state["task"].cancelled()
    """)
    _run(pytester).assert_outcomes(passed=2)


def test_skip_xfail_and_fail_from_async_code(pytester):
    pytester.makepyfile("""
        import asyncio, pytest

        @pytest.mark.treadle
        async def test_skip():
            await asyncio.sleep(0)
            pytest.skip("not today")

        @pytest.mark.treadle
        @pytest.mark.xfail(reason="known", strict=True)
        async def test_xfail():
            await asyncio.sleep(0)
            raise ValueError

        @pytest.fixture
        async def broken():
            raise RuntimeError("fixture broke")

        @pytest.mark.treadle
        async def test_fixture_error(broken):
            pass

        @pytest.mark.treadle
        async def test_cancelled():
            asyncio.current_task().cancel()
            await asyncio.sleep(0)

        @pytest.mark.treadle
        async def test_after_cancel():
            await asyncio.sleep(0)
    """)
    result = _run(pytester)
    result.assert_outcomes(skipped=1, xfailed=1, errors=1, failed=1, passed=1)
    result.stdout.fnmatch_lines(["*RuntimeError: fixture broke*", "*CancelledError*"])


def test_async_generator_fixture_teardown_errors(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.fixture
        async def two_yields():
            yield 1
            yield 2

        @pytest.fixture
        async def no_yield():
            if False:
                yield

        @pytest.mark.treadle
        async def test_two(two_yields):
            pass

        @pytest.mark.treadle
        async def test_none(no_yield):
            pass
    """)
    result = _run(pytester)
    result.assert_outcomes(passed=1, errors=2)
    result.stdout.fnmatch_lines(["*more than one 'yield'*", "*did not yield a value*"])


def test_async_fixture_in_a_test_class(pytester):
    pytester.makepyfile("""
        import asyncio, pytest

        @pytest.mark.treadle
        class TestIt:
            @pytest.fixture
            async def value(self):
                self.marker = "set"
                yield 41

            async def test_method(self, value):
                assert value == 41
                assert self.marker == "set"
    """)
    _run(pytester).assert_outcomes(passed=1)


def test_sync_treadle_test_may_use_async_fixtures(pytester):
    pytester.makepyfile("""
        import asyncio, pytest

        @pytest.fixture
        async def fix():
            return asyncio.get_running_loop()

        @pytest.mark.treadle
        def test_sync(fix):
            assert fix.is_running() is False
    """)
    _run(pytester).assert_outcomes(passed=1)


def test_async_generator_test_is_rejected(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.treadle
        async def test_gen():
            yield
    """)
    result = _run(pytester)
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*async generator*"])


# ---------------------------------------------------------------------------
# treadle_clock
# ---------------------------------------------------------------------------

def test_treadle_clock_makes_timeouts_instant(pytester):
    pytester.makepyfile("""
        import asyncio, pytest
        from treadle.testing import VirtualClock

        async def test_clock(treadle_clock):
            assert isinstance(treadle_clock, VirtualClock)
            loop = asyncio.get_running_loop()
            assert loop.get_clock() is treadle_clock
            assert loop.time() == 0.0
            await asyncio.sleep(3600)
            assert loop.time() == 3600.0
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(60):
                    await asyncio.Event().wait()
            assert loop.time() == 3660.0
            treadle_clock.jump(40)
            assert loop.time() == 3700.0
    """)
    t0 = time.perf_counter()
    _run(pytester).assert_outcomes(passed=1)
    assert time.perf_counter() - t0 < 30


def test_treadle_clock_from_a_fixture_counts(pytester):
    pytester.makepyfile("""
        import asyncio, pytest

        @pytest.fixture
        async def later(treadle_clock):
            await asyncio.sleep(10)
            return asyncio.get_running_loop().time()

        async def test_it(later):
            assert later == 10.0
    """)
    _run(pytester).assert_outcomes(passed=1)


def test_treadle_clock_refused_by_other_plugins_tests(pytester):
    pytester.makepyfile("""
        import pytest

        def test_sync(treadle_clock):
            pass
    """)
    result = _run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*treadle_clock is for treadle tests*"])


def test_a_thousand_sixty_second_timeouts_take_seconds(pytester):
    """Generated: 1,000 tests, each waiting out a 60 s timeout."""
    lines = ["import asyncio, pytest", ""]
    for i in range(1000):
        lines += [
            f"async def test_timeout_{i}(treadle_clock):",
            "    with pytest.raises(TimeoutError):",
            "        await asyncio.wait_for(asyncio.Event().wait(), 60)",
            "    assert asyncio.get_running_loop().time() == 60.0",
            "",
        ]
    pytester.makepyfile("\n".join(lines))
    t0 = time.perf_counter()
    result = _run(pytester, "-q")
    elapsed = time.perf_counter() - t0
    result.assert_outcomes(passed=1000)
    assert elapsed < 60, elapsed      # 16 hours of virtual time


# ---------------------------------------------------------------------------
# seeds
# ---------------------------------------------------------------------------

RACE = """
    import asyncio, json, pytest

    @pytest.mark.treadle
    async def test_race():
        state = {"ready": False}
        trace = []

        async def setup():
            await asyncio.sleep(0)
            state["ready"] = True
            trace.append("setup")

        async def user(k):
            await asyncio.sleep(0)
            trace.append(f"user{k}")
            # missing synchronisation: works only if setup() ran first
            assert state["ready"], f"used before ready: {trace}"

        try:
            await asyncio.gather(setup(), user(1), user(2))
        finally:
            order = asyncio.get_running_loop().get_ready_order()
            with open("traces.jsonl", "a") as f:
                f.write(json.dumps([getattr(order, "seed", None), trace]) + "\\n")
"""


def _traces(pytester: pytest.Pytester) -> list[tuple[int | None, list[str]]]:
    path = pytester.path / "traces.jsonl"
    return [tuple(json.loads(line)) for line in path.read_text().splitlines()]


def test_shuffle_finds_a_race_and_its_seed_reproduces_it(pytester):
    pytester.makepyfile(RACE)
    # In FIFO order (asyncio's) the race never shows.
    _run(pytester).assert_outcomes(passed=1)
    assert _traces(pytester) == [(None, ["setup", "user1", "user2"])]

    result = _run(pytester, "--treadle-shuffle=20", "--treadle-seed=1000")
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] + outcomes["passed"] == 20
    failing = sorted({int(s) for s in re.findall(
        r"FAILED \S*test_race\[treadle-seed=(\d+)\]", result.stdout.str())})
    assert failing, result.stdout.str()
    assert outcomes["passed"] > 0
    result.stdout.fnmatch_lines([
        "*treadle: mode=strict, shuffle=20 (seeds 1000..1019)*",
        "*scheduling seed: *",
        "*rerun: pytest --treadle-seed=* '*test_race'*",
        "*treadle: failing scheduling seeds*",
    ])
    traces = dict(_traces(pytester)[1:])
    assert sorted(traces) == list(range(1000, 1020))
    assert len({tuple(t) for t in traces.values()}) > 1

    for seed in failing[:3]:
        again = _run(pytester, f"--treadle-seed={seed}")
        again.assert_outcomes(failed=1)
        again.stdout.fnmatch_lines([f"*scheduling seed: {seed}*"])
        # exactly the same interleaving as in the shuffle run
        assert _traces(pytester)[-1] == (seed, traces[seed])
    passing = [s for s in range(1000, 1020) if s not in failing]
    _run(pytester, f"--treadle-seed={passing[0]}").assert_outcomes(passed=1)
    assert _traces(pytester)[-1] == (passing[0], traces[passing[0]])


def test_marker_seed_pins_a_test_and_the_command_line_overrides_it(pytester):
    pytester.makepyfile("""
        import asyncio, pytest

        @pytest.mark.treadle(seed=77)
        async def test_pinned():
            assert asyncio.get_running_loop().get_ready_order().seed == 77

        @pytest.mark.treadle
        async def test_unpinned():
            assert asyncio.get_running_loop().get_ready_order() is None
    """)
    _run(pytester).assert_outcomes(passed=2)
    result = _run(pytester, "--treadle-seed=5")
    result.assert_outcomes(passed=0, failed=2)


def test_bad_marker_seed(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.treadle(seed="x")
        async def test_it():
            pass
    """)
    result = _run(pytester)
    assert result.ret != 0
    assert "needs an int" in result.stdout.str() + result.stderr.str()


def test_shuffle_keeps_other_parameters_and_rerun_id_drops_the_seed(pytester):
    pytester.makepyfile("""
        import pytest

        @pytest.mark.treadle
        @pytest.mark.parametrize("n", [1, 2])
        async def test_p(n):
            assert n == 1
    """)
    result = _run(pytester, "--treadle-shuffle=2", "--treadle-seed=3")
    result.assert_outcomes(passed=2, failed=2)
    out = result.stdout.str()
    assert "test_p[2-treadle-seed=3]" in out or "test_p[treadle-seed=3-2]" in out
    assert "'test_shuffle_keeps_other_parameters_and_rerun_id_drops_the_seed.py::test_p[2]'" in out


def test_shuffle_must_be_positive(pytester):
    pytester.makepyfile("def test_x(): pass")
    assert _run(pytester, "--treadle-shuffle=0").ret == pytest.ExitCode.USAGE_ERROR


def test_plugin_is_quiet_without_options(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = _run(pytester)
    result.assert_outcomes(passed=1)
    # only pytest's own "plugins: treadle-..." line mentions it
    lines = [line for line in result.stdout.lines if "treadle" in line]
    assert len(lines) == 1 and lines[0].startswith("plugins:")


def test_a_test_killed_by_pytest_timeout_leaves_the_runner_usable(pytester):
    pytest.importorskip("pytest_timeout")
    pytester.makepyfile("""
        import asyncio, pytest
        torn_down = []

        @pytest.fixture
        async def fix():
            yield
            # the hung test's coroutine was cancelled before this runs
            await asyncio.sleep(0)
            torn_down.append(True)

        @pytest.mark.treadle
        @pytest.mark.timeout(0.5, method="signal")
        async def test_hangs(fix):
            await asyncio.Event().wait()

        @pytest.mark.treadle
        async def test_next():
            assert torn_down == [True]
            await asyncio.sleep(0)
    """)
    result = _run(pytester)
    result.assert_outcomes(failed=1, passed=1)
    result.stdout.fnmatch_lines(["*Timeout*"])


def test_session_scoped_async_fixture_across_modules(pytester):
    pytester.makeconftest("""
        import asyncio, pytest

        @pytest.fixture(scope="session")
        async def shared():
            loop = asyncio.get_running_loop()
            yield loop
            assert asyncio.get_running_loop() is loop
            print("session teardown on the same loop")

        @pytest.fixture(params=[1, 2])
        async def number(request):
            await asyncio.sleep(0)
            return request.param
    """)
    pytester.makepyfile(
        test_one="""
            import asyncio, pytest

            @pytest.mark.treadle
            async def test_a(shared, number):
                assert asyncio.get_running_loop() is shared
                assert number in (1, 2)
        """,
        test_two="""
            import asyncio, pytest

            @pytest.mark.treadle
            async def test_b(shared):
                assert asyncio.get_running_loop() is shared
                assert not shared.is_closed()
        """)
    result = _run(pytester, "-s")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*session teardown on the same loop*"])
