"""Exploration strategies and shrinking, on a known rare race."""

from __future__ import annotations

import pytest

from treadle.testing.simnet import explore, format_deviations, parse_deviations, replay

from . import scenarios


@pytest.mark.parametrize("strategy,race,budget", [
    ("random", scenarios.rare_race, 1500),
    ("pct", scenarios.rare_race, 100),
    ("systematic", scenarios.simple_race, 300),
])
def test_each_strategy_finds_a_known_race(strategy, race, budget):
    found = explore(race, strategy=strategy, runs=budget)
    assert found.found, found
    print(f"{strategy}: found after {found.runs} runs; {found.original_deviations} "
          f"deviations shrunk to {len(found.deviations)} in {found.shrink_runs} runs")
    # the shrunk run replays the failure
    with pytest.raises(AssertionError, match="overtook"):
        replay(race, found.replay)
    assert 1 <= len(found.deviations) <= 3


def test_shrinking_keeps_few_deviations():
    found = explore(scenarios.rare_race, strategy="pct", runs=100)
    assert found.original_deviations > len(found.deviations)


def test_deviations_print_and_parse():
    assert format_deviations({3: 1, 17: 2, 40: 0.25}) == "3:1,17:2,40:0.25"
    assert parse_deviations("3:1,17:2,40:0.25") == {3: 1, 17: 2, 40: 0.25}
    assert parse_deviations("-") == {}
    with pytest.raises(ValueError, match="POSITION:VALUE"):
        parse_deviations("3=1")


def test_no_failure_no_shrinking():
    found = explore(scenarios.chatter_scenario, runs=3)
    assert not found.found and found.runs == 3
