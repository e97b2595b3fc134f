"""The plugin beside pytest-asyncio and anyio's plugin, installed in the
same environment: each plugin keeps its own tests and fixtures.

Skipped where those plugins are not installed (they are in the ``test``
extra).
"""

from __future__ import annotations

import pytest

pytest_plugins = ["pytester"]

pytest_asyncio = pytest.importorskip("pytest_asyncio")
anyio = pytest.importorskip("anyio")

MIXED = """
    import asyncio, pytest, pytest_asyncio, treadle

    def kind():
        return "treadle" if isinstance(asyncio.get_running_loop(), treadle.EventLoop) \\
            else type(asyncio.get_running_loop()).__module__

    @pytest_asyncio.fixture
    async def asyncio_fixture():
        return kind()

    @pytest.fixture
    async def plain_async_fixture():
        yield (kind(), asyncio.get_running_loop())

    @pytest.mark.asyncio
    async def test_pytest_asyncio(asyncio_fixture):
        assert kind() != "treadle"
        assert asyncio_fixture == kind()

    @pytest.mark.treadle
    async def test_treadle(plain_async_fixture):
        assert kind() == "treadle"
        assert plain_async_fixture == ("treadle", asyncio.get_running_loop())

    @pytest.mark.anyio
    async def test_anyio(anyio_backend):
        assert kind() != "treadle"

    @pytest.fixture
    def anyio_backend():
        return "asyncio"
"""

# anyio's own runner on treadle's loop (not this plugin's business, but the
# combination users will try).  Under pytest-asyncio's auto mode,
# pytest-asyncio takes anyio's tests, so this part is for strict mode only.
ANYIO_ON_TREADLE = """
    @pytest.mark.anyio
    @pytest.mark.parametrize("anyio_backend",
                             [("asyncio", {"loop_factory": treadle.new_event_loop})])
    async def test_anyio_on_treadles_loop(anyio_backend):
        assert kind() == "treadle"
"""


def _run(pytester, *args):
    return pytester.runpytest("-p", "no:cacheprovider",
                              "-o", "asyncio_default_fixture_loop_scope=function",
                              *args)


def test_all_three_plugins_loaded(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = _run(pytester)
    plugins = next(line for line in result.stdout.lines if line.startswith("plugins:"))
    for name in ("treadle", "asyncio", "anyio"):
        assert name in plugins


def test_strict_modes_each_plugin_keeps_its_own(pytester):
    pytester.makepyfile(MIXED + ANYIO_ON_TREADLE)
    # error on pytest-asyncio's warning about async fixtures it was not meant
    # to run: no treadle fixture may reach it
    result = _run(pytester, "-W", "error::pytest.PytestDeprecationWarning")
    result.assert_outcomes(passed=4)


def test_pytest_asyncio_auto_mode_does_not_take_treadle_tests(pytester):
    pytester.makepyfile(MIXED + """
    async def test_unmarked_goes_to_pytest_asyncio():
        assert kind() != "treadle"

    @pytest.mark.treadle
    async def test_treadle_with_clock(treadle_clock, plain_async_fixture):
        await asyncio.sleep(600)
        assert asyncio.get_running_loop().time() == 600.0
    """)
    result = _run(pytester, "--asyncio-mode=auto")
    result.assert_outcomes(passed=5)


def test_treadle_auto_mode_leaves_marked_tests_to_their_plugins(pytester):
    pytester.makepyfile(MIXED + """
    async def test_unmarked_goes_to_treadle(plain_async_fixture):
        assert kind() == "treadle"
    """)
    result = _run(pytester, "--treadle-mode=auto")
    result.assert_outcomes(passed=4)
