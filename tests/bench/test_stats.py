"""Medians, ratios and spread on synthetic records."""

from __future__ import annotations

import pytest

from treadle.bench._stats import median, ratio, spread, summarize


def test_median_odd_and_even():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([]) is None


def test_ratio_is_times_better_whichever_way_better_points():
    assert ratio(300.0, 100.0, True) == 3.0          # throughput: more is better
    assert ratio(50.0, 100.0, True) == 0.5
    assert ratio(500.0, 1000.0, False) == 2.0        # bytes/task: fewer is better
    assert ratio(2000.0, 1000.0, False) == 0.5
    assert ratio(None, 1.0, True) is None
    assert ratio(1.0, None, True) is None
    assert ratio(1.0, 0.0, True) is None


def test_spread():
    assert spread([90.0, 100.0, 120.0]) == pytest.approx(0.3)
    assert spread([5.0]) is None


def _rec(w, loop, status="ok", value=None, error=None, extra=None):
    return {"workload": w, "loop": loop, "status": status, "value": value,
            "error": error, "extra": extra or {}}


def test_summarize_medians_ratios_and_states():
    recs = [
        _rec("w", "A", value=100.0), _rec("w", "A", value=300.0), _rec("w", "A", value=200.0),
        _rec("w", "B", value=500.0), _rec("w", "B", value=700.0),
        _rec("w", "B", "failed", error="boom"),
        _rec("w", "C", "failed", error="E1"), _rec("w", "C", "timeout", error="E2"),
        _rec("m", "A", value=1000.0, extra={"x": 1.0}), _rec("m", "A", value=1000.0, extra={"x": 3.0}),
        _rec("m", "B", value=250.0),
        _rec("m", "C", "n/a", error="needs 3.12"),
        _rec("other", "A", value=1.0),           # outside the grid: ignored
    ]
    cells = summarize(recs, ["w", "m"], ["A", "B", "C"], "A", {"w": True, "m": False})
    a, b, c = cells[("w", "A")], cells[("w", "B")], cells[("w", "C")]
    assert (a.median, a.ratio, a.state) == (200.0, 1.0, "ok")
    assert a.spread == pytest.approx(1.0)
    assert (b.median, b.state, b.ok, b.runs) == (600.0, "partial", 2, 3)
    assert b.ratio == pytest.approx(3.0)
    assert b.errors == ["boom"]
    assert (c.median, c.ratio, c.state, c.errors) == (None, None, "failed", ["E1", "E2"])
    assert cells[("m", "B")].ratio == pytest.approx(4.0)     # 1000 B / 250 B
    assert cells[("m", "A")].extra_median("x") == 2.0
    assert cells[("m", "C")].state == "n/a"
    assert ("other", "A") not in cells


def test_summarize_without_baseline_has_no_ratios():
    cells = summarize([_rec("w", "A", value=1.0)], ["w"], ["A"], None, {})
    assert cells[("w", "A")].median == 1.0 and cells[("w", "A")].ratio is None
    empty = summarize([], ["w"], ["A"], "A", {})
    assert empty[("w", "A")].state == "missing"
