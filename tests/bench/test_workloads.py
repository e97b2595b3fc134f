"""The workload registry, and the workloads themselves run in-process on
asyncio's loop and treadle's (tiny sizes: this checks they run and report,
not how fast)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from treadle.bench import _workloads
from treadle.bench._workloads import BY_NAME, GROUPS, WORKLOADS, NotApplicable, select


def test_every_issue_workload_is_there():
    names = set(BY_NAME)
    assert {"call_soon", "switch", "spawn", "spawn_eager", "spawn_eager_own", "timers",
            "timer_cancel", "queue", "future", "http", "http_split", "mem_tasks",
            "mem_conns"} <= names
    assert {f"echo_{api}_{size}" for api in ("sockets", "streams", "protocol")
            for size in ("1k", "64k")} <= names
    assert BY_NAME["switch"].params == {"tasks": 1000, "iters": 1000}
    assert BY_NAME["spawn"].params["tasks"] == 100_000
    assert BY_NAME["timers"].params["tasks"] == 100_000
    assert BY_NAME["mem_tasks"].params["tasks"] == 100_000
    assert BY_NAME["mem_conns"].params["conns"] == 10_000
    assert {BY_NAME[f"echo_protocol_{s}"].params["size"] for s in ("1k", "64k")} == {1024, 65536}
    assert all(BY_NAME[n].params["conns"] == 10 for n in GROUPS["echo"])
    for w in WORKLOADS:
        assert callable(_workloads.entry_point(w))
        assert w.higher_is_better == (w.group != "memory")


def test_select_by_name_group_and_pattern():
    assert select(None, None) == [w.name for w in WORKLOADS]
    assert select(["switch"], None) == ["switch"]
    assert select(["echo_*_64k"], None) == ["echo_sockets_64k", "echo_streams_64k",
                                            "echo_protocol_64k"]
    assert select(["memory,switch"], None) == ["switch", "mem_tasks", "mem_conns"]
    assert select(["io"], ["echo"]) == ["http", "http_split", "http_aiohttp",
                                        "http_uvicorn", "http_starlette"]
    assert select(["http"], None) == ["http"]             # the name, not the group
    assert select(["http*"], None) == ["http", "http_split", "http_aiohttp",
                                      "http_uvicorn", "http_starlette"]
    assert select(None, ["cpu", "io"]) == ["scope_cancel", "scope_enter_exit",
                                           "simnet", "mem_tasks", "mem_conns"]
    assert select(None, ["cpu", "io", "scopes", "simnet"]) == ["mem_tasks", "mem_conns"]
    assert select(["scopes"], None) == ["scope_cancel", "scope_enter_exit"]
    with pytest.raises(ValueError, match="no workload matches 'nope'"):
        select(["nope"], None)


def test_resolve_quick_scale_and_durations():
    w = BY_NAME["switch"]
    assert w.resolve(quick=False) == {"tasks": 1000, "iters": 1000}
    assert w.resolve(quick=True) == {"tasks": 100, "iters": 50}
    assert w.resolve(quick=False, scale=0.5) == {"tasks": 1000, "iters": 500}
    e = BY_NAME["echo_streams_1k"]
    p = e.resolve(quick=True, duration=3.0, warmup=0.0)
    assert (p["duration"], p["warmup"], p["size"], p["api"]) == (3.0, 0.0, 1024, "streams")
    assert BY_NAME["spawn"].resolve(quick=False, duration=9.0) == {"tasks": 100_000,
                                                                   "eager": "off"}


TINY = {"call_soon": {"callbacks": 200}, "switch": {"tasks": 10, "iters": 10},
        "spawn": {"tasks": 50}, "spawn_eager": {"tasks": 50}, "spawn_eager_own": {"tasks": 50},
        "timers": {"tasks": 50, "max_ms": 2.0}, "timer_cancel": {"timers": 300, "batch": 100},
        "queue": {"items": 100}, "future": {"rounds": 100}, "mem_tasks": {"tasks": 500},
        "scope_cancel": {"tasks": 200}, "scope_enter_exit": {"scopes": 200},
        "simnet": {"hosts": 4, "connections": 6, "minutes": 0.2, "interval": 2.0}}


@pytest.mark.parametrize("name", list(TINY))
def test_workload_runs_and_reports(name, loop_factory):
    w = BY_NAME[name]
    params = {**w.params, **TINY[name]}
    fn = _workloads.entry_point(w)
    eager_on_311 = (name == "spawn_eager" or (name == "spawn_eager_own"
                                               and loop_factory is asyncio.new_event_loop))
    if eager_on_311 and sys.version_info < (3, 12):
        with pytest.raises(NotApplicable, match="3.12"):
            fn(loop_factory, params)
        return
    if name == "simnet" and loop_factory is asyncio.new_event_loop:
        with pytest.raises(NotApplicable, match="treadle"):
            fn(loop_factory, params)
        return
    res = fn(loop_factory, params)
    if name == "mem_tasks":
        # In this long-lived process freed memory is reused, so the RSS delta
        # of a few tasks can be anything; the bench runs it in a fresh child.
        assert isinstance(res["value"], float)
        assert res["extra"]["probe"] in ("rss", "peak_rss")
        return
    assert res["value"] > 0
    assert isinstance(res["extra"], dict)
    if w.group == "cpu":
        assert res["ops"] == next(v for k, v in TINY[name].items() if k in w.scaled) \
            * (TINY[name].get("tasks", 1) if name == "switch" else 1)
        assert res["wall_s"] > 0 and res["cpu_s"] >= 0
    if name == "timers":
        e = res["extra"]
        assert e["late_ms_p50"] <= e["late_ms_p99"] <= e["late_ms_max"]
        assert e["early"] == 0
    if name == "scope_cancel":
        native = loop_factory is not asyncio.new_event_loop
        assert res["extra"]["scope"] == ("treadle.CancelScope" if native
                                         else "anyio.CancelScope")
        assert res["extra"]["turns"] >= 1
    if name == "scope_enter_exit":
        native = loop_factory is not asyncio.new_event_loop
        assert res["extra"]["scope"] == ("treadle.move_on_after" if native
                                         else "asyncio.timeout")
    if name == "simnet":
        assert res["extra"]["connections"] == 6 and res["extra"]["round_trips"] > 0
    if name.startswith("spawn_eager_own") and loop_factory is not asyncio.new_event_loop:
        assert res["extra"]["task_factory"] == "treadle.eager_task_factory"


def test_counting_turns_counts_and_tolerates_c_loops():
    loop = asyncio.new_event_loop()
    try:
        turns = _workloads._counting_turns(loop)
        loop.run_until_complete(asyncio.sleep(0))
        assert turns[0] is not None and turns[0] >= 2

        class CLoop:                       # like uvloop's: no settable _run_once
            __slots__ = ()

            def _run_once(self) -> None:
                pass
        assert _workloads._counting_turns(CLoop()) == [None]  # type: ignore[arg-type]
        assert _workloads._counting_turns(object()) == [None]  # type: ignore[arg-type]
    finally:
        loop.close()
