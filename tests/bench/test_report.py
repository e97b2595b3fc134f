"""The report's shapes, from synthetic records (no process is run)."""

from __future__ import annotations

import json

import pytest

from treadle.bench._report import (build, human, load_json, loop_labels, render_json,
                                   render_markdown, render_text)

UNITS = {"switch": "switches/s", "echo_protocol_1k": "round trips/s",
         "mem_tasks": "bytes/task", "spawn_eager": "tasks/s"}
BETTER = {"switch": True, "echo_protocol_1k": True, "mem_tasks": False, "spawn_eager": True}
GROUPS = {"switch": "cpu", "echo_protocol_1k": "echo", "mem_tasks": "memory",
          "spawn_eager": "cpu"}
WORKLOADS = list(UNITS)
LOOPS = ["asyncio", "uvloop", "treadle"]
FACTORY = {"asyncio": "asyncio:new_event_loop", "uvloop": "uvloop:new_event_loop",
           "treadle": "treadle:new_event_loop"}


def _rec(w, loop, rnd, status="ok", value=None, error=None, extra=None, compiled=False):
    return {"workload": w, "loop": loop, "round": rnd, "status": status, "value": value,
            "error": error, "extra": extra or {}, "factory": FACTORY[loop],
            "treadle_compiled": compiled, "python": "3.11.7", "unit": UNITS[w]}


def _records():
    recs = []
    for rnd in range(3):
        recs += [
            _rec("switch", "asyncio", rnd, value=1_000_000.0 + rnd),
            _rec("switch", "uvloop", rnd, value=2_000_000.0),
            _rec("switch", "treadle", rnd, value=3_000_000.0),
            _rec("echo_protocol_1k", "asyncio", rnd, value=40_000.0,
                 extra={"client_cpu_util": 0.5, "server_cpu_util": 0.9,
                        "lat_ms_p50": 0.2, "lat_ms_p99": 0.5}),
            _rec("echo_protocol_1k", "uvloop", rnd, value=80_000.0,
                 extra={"client_cpu_util": 0.97, "server_cpu_util": 0.6,
                        "lat_ms_p50": 0.1, "lat_ms_p99": 0.3}),
            _rec("echo_protocol_1k", "treadle", rnd, "failed",
                 error="NotImplementedError (in create_server() at asyncio/events.py:1)"),
            _rec("mem_tasks", "asyncio", rnd, value=900.0, extra={"rss_delta_mib": 85.8}),
            _rec("mem_tasks", "uvloop", rnd, value=900.0),
            _rec("mem_tasks", "treadle", rnd, value=600.0),
            _rec("spawn_eager", "asyncio", rnd, "n/a", error="needs Python 3.12+"),
            _rec("spawn_eager", "uvloop", rnd, "n/a", error="needs Python 3.12+"),
            _rec("spawn_eager", "treadle", rnd, value=500_000.0),
        ]
    return recs


def _build(records, **kw):
    return build(records, WORKLOADS, LOOPS, baseline="asyncio", units=UNITS,
                 higher_is_better=BETTER, groups=GROUPS,
                 meta={"cpus": 2, "platform": "Linux x86_64", "rounds": 3,
                       "versions": {"python": "3.11.7"}, "loadavg": 0.1}, **kw)


def test_human_numbers():
    assert human(1_234_567, "x/s") == "1.23M"
    assert human(45_678, "x/s") == "45.7k"
    assert human(4_567, "x/s") == "4.57k"
    assert human(890.2, "x/s") == "890"
    assert human(5.25, "x/s") == "5.2"
    assert human(1106.4, "bytes/task") == "1,106"
    assert human(2_500_000, "tasks/CPU-s") == "2.50M"


def test_labels_come_from_what_the_children_reported():
    recs = _records()
    assert loop_labels(recs, LOOPS) == {"asyncio": "asyncio", "uvloop": "uvloop",
                                        "treadle": "treadle (pure)"}
    for r in recs:
        r["treadle_compiled"] = True
    assert loop_labels(recs, LOOPS)["treadle"] == "treadle (compiled)"
    recs[2]["treadle_compiled"] = False
    assert loop_labels(recs, LOOPS)["treadle"] == "treadle (mixed builds!)"


def test_text_table_shape():
    text = render_text(_build(_records()))
    lines = text.splitlines()
    assert lines[0].startswith("treadle bench: Python 3.11.7 on Linux x86_64, 2 CPUs")
    head = next(i for i, l in enumerate(lines) if l.startswith("workload"))
    assert lines[head].split() == ["workload", "unit", "asyncio", "uvloop", "treadle", "(pure)"]
    rows = {l.split()[0]: l for l in lines[head + 1:head + 1 + len(WORKLOADS)]}
    assert list(rows) == WORKLOADS
    assert rows["switch"].split()[2:] == ["1.00M", "2.00M", "2.00x", "3.00M", "3.00x"]
    assert rows["echo_protocol_1k"].split()[-1] == "failed"
    assert rows["echo_protocol_1k"].split()[4:6] == ["80.0k", "2.00x"]   # unit has a space
    assert rows["mem_tasks"].split()[-2:] == ["600", "1.50x"]     # 900 B / 600 B
    assert rows["spawn_eager"].split()[2:] == ["n/a", "n/a", "500.0k"]
    assert "details (medians):" in lines
    assert any("load generator CPU" in l and "97% (client-bound?)" in l for l in lines)
    notes = "\n".join(lines[lines.index("notes:"):])
    assert ("FAILED NotImplementedError (in create_server() at asyncio/events.py:1) -- "
            "treadle (pure): echo_protocol_1k") in notes
    assert "n/a: needs Python 3.12+ -- asyncio: spawn_eager; uvloop: spawn_eager" in notes
    assert "is not compiled" in notes
    assert "client-bound" in notes


def test_markdown_table_shape():
    md = render_markdown(_build(_records()))
    lines = md.splitlines()
    head = lines.index("| workload | unit | asyncio | uvloop | treadle (pure) |")
    assert lines[head + 1] == "|---|---|---:|---:|---:|"
    rows = lines[head + 2:head + 2 + len(WORKLOADS)]
    assert [r.split(" | ")[0] for r in rows] == [f"| {w}" for w in WORKLOADS]
    assert all(r.startswith("| ") and r.endswith(" |") and r.count(" | ") == 4 for r in rows)
    assert rows[0] == "| switch | switches/s | 1.00M | 2.00M 2.00x | 3.00M 3.00x |"
    assert "Notes:" in lines


def test_cpu_metric_uses_ops_per_cpu_second():
    recs = _records()
    for r in recs:
        if r["workload"] == "switch":
            r["ops_per_cpu_s"] = {"asyncio": 1e6, "uvloop": 4e6, "treadle": 2e6}[r["loop"]]
    rep = _build(recs, cpu_time=True)
    row = next(r for r in rep.rows if r[0] == "switch")
    assert row == ["switch", "switches/CPU-s", "1.00M", "4.00M 4.00x", "2.00M 2.00x"]
    mem = next(r for r in rep.rows if r[0] == "mem_tasks")
    assert mem[1] == "bytes/task" and mem[4] == "600 1.50x"      # no CPU figure: unchanged
    assert any("per CPU-second" in h for h in rep.header)
    assert recs[0]["value"] == 1_000_000.0                      # the records are not changed


def test_partial_cells_and_interruption_are_shown():
    recs = _records()
    recs[1]["status"], recs[1]["error"] = "timeout", "no result after 5 s (killed)"
    recs[1]["value"] = None
    text = render_text(_build(recs, interrupted=True))
    assert "(2/3 ok)" in text
    assert "interrupted" in text
    assert "FAILED no result after 5 s (killed) -- uvloop: switch" in text


def test_json_lines_round_trip():
    recs = _records()
    text = render_json(recs)
    assert len(text.splitlines()) == len(recs)
    assert all(isinstance(json.loads(l), dict) for l in text.splitlines())
    assert load_json(text + "\n\n") == recs
    with pytest.raises(ValueError, match="line 1: not JSON"):
        load_json("{nope")
    with pytest.raises(ValueError, match="not a treadle bench record"):
        load_json('{"a": 1}')
