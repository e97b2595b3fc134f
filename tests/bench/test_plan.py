"""The run plan: loop names, and the interleaved order of runs."""

from __future__ import annotations

import importlib.util

import pytest

from treadle.bench import _plan
from treadle.bench._plan import PlanError, Run, parse_loops, rotation, schedule


def test_rotation_moves_one_place_per_round():
    assert rotation(["A", "B", "C"], 0) == ["A", "B", "C"]
    assert rotation(["A", "B", "C"], 1) == ["B", "C", "A"]
    assert rotation(["A", "B", "C"], 2) == ["C", "A", "B"]
    assert rotation(["A", "B", "C"], 3) == ["A", "B", "C"]
    assert rotation([], 5) == []


def test_schedule_is_round_then_workload_then_rotated_loops():
    runs = schedule(["w1", "w2"], ["A", "B", "C"], 3)
    assert len(runs) == 3 * 2 * 3
    order = [(r.round, r.workload, r.loop) for r in runs]
    assert order[:6] == [(0, "w1", "A"), (0, "w1", "B"), (0, "w1", "C"),
                         (0, "w2", "A"), (0, "w2", "B"), (0, "w2", "C")]
    assert [r.loop for r in runs if r.round == 1 and r.workload == "w1"] == ["B", "C", "A"]
    assert [r.loop for r in runs if r.round == 2 and r.workload == "w2"] == ["C", "A", "B"]
    assert runs[6] == Run(1, "w1", "B", 0)


def test_schedule_gives_every_loop_every_position():
    loops = ["A", "B", "C", "D"]
    runs = schedule(["w"], loops, 4)
    for loop in loops:
        assert sorted(r.position for r in runs if r.loop == loop) == [0, 1, 2, 3]


def test_schedule_needs_a_round():
    with pytest.raises(PlanError):
        schedule(["w"], ["A"], 0)


def test_default_loops_include_uvloop_only_when_importable(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(_plan.importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvloop" else real(name, *a))
    specs, notes = parse_loops(None)
    assert [s.name for s in specs] == ["asyncio", "treadle", "treadle-pure"]
    assert notes and "uvloop is not installed" in notes[0]
    with pytest.raises(PlanError, match="uvloop is not installed"):
        parse_loops("asyncio,uvloop")


def test_treadle_columns_differ_only_by_treadle_pure():
    specs, _ = parse_loops("treadle,treadle-pure")
    t, tp = specs
    assert t.factory == tp.factory == "treadle:new_event_loop"
    assert t.env == {"TREADLE_PURE": None}       # removed, not inherited
    assert tp.env == {"TREADLE_PURE": "1"}
    assert t.is_treadle and tp.is_treadle


def test_custom_loops_and_errors():
    specs, notes = parse_loops("asyncio, mine=asyncio:new_event_loop")
    assert [(s.name, s.factory) for s in specs] == [
        ("asyncio", "asyncio:new_event_loop"), ("mine", "asyncio:new_event_loop")]
    assert not specs[1].is_treadle and notes == []
    with pytest.raises(PlanError, match="unknown loop 'tokio'"):
        parse_loops("asyncio,tokio")
    with pytest.raises(PlanError, match="LABEL=MODULE:FACTORY"):
        parse_loops("x=nocolon")
    with pytest.raises(PlanError, match="named twice"):
        parse_loops("asyncio,asyncio")
    with pytest.raises(PlanError, match="no loop"):
        parse_loops(" , ")
