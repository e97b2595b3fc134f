"""The worked example (examples/simnet_ledger.py): its bug is found by
exploring seeds, replayed exactly, shrunk, and gone with the fix."""

from __future__ import annotations

import importlib.util
import os
import re

import pytest

from treadle.testing.simnet import SimNetwork, explore, replay

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples",
                       "simnet_ledger.py")
pytest_plugins = ["pytester"]


@pytest.fixture
def ledger():
    spec = importlib.util.spec_from_file_location("simnet_ledger_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bug_is_found_replayed_and_shrunk(ledger):
    found = explore(ledger.scenario, runs=100)
    assert found.found, "exploring 100 seeds found no lost deposit"
    assert "lost acknowledged deposits" in str(found.failure)
    # the seed replays the same run, event for event
    runs = []
    for _ in range(2):
        net = SimNetwork(found.seed, keep_events=True)
        with pytest.raises(AssertionError, match="lost acknowledged deposits"):
            net.run(ledger.scenario)
        runs.append(net.log.events())
    assert runs[0] == runs[1]
    # so does the shrunk run: a single crash at the wrong moment
    assert len(found.deviations) < found.original_deviations or found.original_deviations == 1
    with pytest.raises(AssertionError, match="lost acknowledged deposits"):
        replay(ledger.scenario, found.replay)


def test_the_fix_survives_every_seed_that_failed(ledger):
    failing = []
    for seed in range(60):
        try:
            SimNetwork(seed).run(ledger.scenario)
        except AssertionError:
            failing.append(seed)
    assert failing
    ledger.SYNC_BEFORE_REPLY = True
    for seed in failing:
        SimNetwork(seed).run(ledger.scenario)


def test_a_shuffle_run_finds_the_seed_and_the_rerun_command_replays_it(pytester):
    with open(EXAMPLE) as f:
        pytester.makepyfile(test_ledger=f.read())
    args = ("-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:anyio")
    result = pytester.runpytest(*args, "--treadle-shuffle=40", "--treadle-seed=0")
    output = result.stdout.str()
    failed = result.parseoutcomes().get("failed", 0)
    assert failed >= 1, output
    rerun = re.search(r"rerun: pytest (--treadle-seed=\d+) '([^']+)'", output)
    assert rerun, output
    events = re.search(r"last simulated events:\n(.*?)\n(?:=|_|-{5})", output, re.S)
    again = pytester.runpytest(*args, rerun.group(1), rerun.group(2))
    again.assert_outcomes(failed=1)
    assert events.group(1).strip() in again.stdout.str()


def test_pytest_shrinks_a_failure_and_replays_the_smallest_run(pytester):
    with open(EXAMPLE) as f:
        pytester.makepyfile(test_ledger=f.read())
    args = ("-p", "no:cacheprovider", "-p", "no:asyncio", "-p", "no:anyio")
    found = pytester.runpytest(*args, "--treadle-shuffle=40", "--treadle-seed=0")
    seed = re.search(r"rerun: pytest --treadle-seed=(\d+)", found.stdout.str()).group(1)
    shrunk = pytester.runpytest(*args, f"--treadle-seed={seed}", "--treadle-shrink")
    shrunk.assert_outcomes(failed=1)
    text = shrunk.stdout.str()
    assert re.search(r"shrunk in \d+ runs from \d+ to \d+ deviation", text), text
    replay = re.search(r"rerun: pytest (--treadle-replay=\S+) '([^']+)'", text)
    again = pytester.runpytest(*args, replay.group(1), replay.group(2))
    again.assert_outcomes(failed=1)
    assert "lost acknowledged deposits" in again.stdout.str()


def test_bad_replay_option_is_a_usage_error(pytester):
    pytester.makepyfile("def test_x(): pass")
    result = pytester.runpytest("-p", "no:cacheprovider", "--treadle-replay=3=1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "POSITION:VALUE" in result.stderr.str()
