"""The documents the server sends: plain JSON-able data about every loop.

Owns: ``ps_document`` (everything ``treadle ps``/``pstree`` print) and
``top_document`` (one frame of ``treadle top``: loop counters, and per task
the timing numbers, sorted and cut server-side so that a process with
100,000 tasks sends the rows a terminal can show), and the warnings
flagged on a task.
Never: formats text for a terminal (``_render.py``, in the client, does;
the client may be another Python version, so the documents are its only
contract with the server).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import asdict
from typing import Any

from .._kernel.timers import LATENESS_BOUNDS
from .._version import __version__
from ._snapshot import TaskInfo, _safe_name, loop_tasks, orphaned, snapshot_loop, \
    snapshot_tasks

#: Sort keys ``treadle top`` understands (numbers sort largest first).
SORT_KEYS = ("id", "name", "state", "steps", "busy", "scheduled", "idle", "wakes",
             "self_wakes", "longest_step", "spawned_at")


def _process() -> dict[str, Any]:
    return {"pid": os.getpid(), "argv": list(sys.argv),
            "python": sys.version.split()[0], "treadle": __version__,
            "time": time.time(), "mono": time.monotonic()}


def loop_counters(loop: Any) -> dict[str, Any]:
    from ..metrics import loop_stats
    stats = loop_stats(loop)
    doc = asdict(stats)
    doc["busy_time"] = stats.busy_time
    doc["lateness_p50"] = stats.lateness_percentile(0.5)
    doc["lateness_p99"] = stats.lateness_percentile(0.99)
    doc["lateness_bounds"] = list(LATENESS_BOUNDS)
    return doc


def ps_document(loops: list[Any]) -> dict[str, Any]:
    doc = _process()
    doc["loops"] = [_loop_doc(loop) for loop in loops]
    return doc


def _loop_doc(loop: Any) -> dict[str, Any]:
    info = snapshot_loop(loop)
    obs = loop._observation
    tracker = obs.tracker
    if tracker is not None:
        now = time.perf_counter()
        tasks = {id(t): t for t in loop_tasks(loop)}
        for task_info in info.tasks:
            task = tasks.get(task_info.id)
            stats = tracker.stats_of(task) if task is not None else None
            if stats is not None:
                task_info.stats = stats.as_dict(now)
                task_info.spawned_at = task_info.spawned_at or stats.spawned_at
        del tasks
    doc = asdict(info)
    doc["stats"] = loop_counters(loop)
    with obs.lock:
        doc["blocks"] = [event.as_dict() for event in obs.blocks]
    return doc


# ----------------------------------------------------------------------
# treadle top
# ----------------------------------------------------------------------


def top_document(loops: list[Any], sort: str, reverse: bool, limit: int) -> dict[str, Any]:
    doc = _process()
    doc["sort"] = sort
    doc["reverse"] = reverse
    doc["loops"] = [_top_loop(loop, sort, reverse, limit) for loop in loops]
    return doc


def _top_loop(loop: Any, sort: str, reverse: bool, limit: int) -> dict[str, Any]:
    from ._snapshot import item_label, thread_of
    obs = loop._observation
    tracker = obs.tracker
    now = time.perf_counter()
    tasks = loop_tasks(loop)
    rows: list[tuple[Any, dict[str, Any] | None]] = []
    for task in tasks:
        stats = tracker.stats_of(task) if tracker is not None else None
        rows.append((task, stats.as_dict(now) if stats is not None else None))
    rows.sort(key=lambda row: _sort_key(row[0], row[1], sort), reverse=reverse)
    shown = rows[:limit]
    infos = snapshot_tasks(loop, [task for task, _ in shown], stacks=False)
    threshold = obs.threshold
    out = []
    for (task, stats), info in zip(shown, infos):
        out.append(_top_row(task, info, stats, obs, threshold))
    del rows, shown, tasks
    finished = []
    if tracker is not None:
        for done in tracker.finished():
            finished.append({"id": done.task_id, "name": done.name, "state": "done",
                             "stats": done.as_dict(now), "warnings": []})
    ident = loop._thread_id
    tid, tname = thread_of(ident)
    item = loop._running_item
    activity = ("stopped" if ident is None else "waiting for I/O" if loop._waiting
                else "between callbacks" if item is None else f"running {item_label(item)}")
    del item
    return {"id": id(loop), "thread_id": tid, "thread_name": tname,
            "activity": activity, "stats": loop_counters(loop),
            "tasks": out, "finished": finished}


def _sort_key(task: Any, stats: dict[str, Any] | None, sort: str) -> Any:
    if sort == "id":
        return (0, id(task))
    if sort == "name":
        return (0, _safe_name(task))
    if sort == "state":
        return (0, _quick_state(task))
    if sort == "spawned_at":
        value = stats.get("spawned_at") if stats else None
        return (0 if value else 1, value or "")
    if stats is None:
        return (1, 0.0)
    value = stats.get(sort, 0)
    if sort == "self_wakes" and stats.get("wakes"):
        value = stats["self_wakes"] / stats["wakes"]
    return (0, -float(value or 0))


def _quick_state(task: Any) -> str:
    waiter = getattr(task, "_fut_waiter", None)
    return "waiting" if waiter is not None and not waiter.done() else "scheduled"


def _top_row(task: Any, info: TaskInfo, stats: dict[str, Any] | None, obs: Any,
             threshold: float | None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": info.id, "name": info.name, "state": info.state,
        "waits_on": info.waits_on.describe() if info.waits_on is not None else None,
        "waiting_for": info.waiting_for,
        "spawned_at": (stats or {}).get("spawned_at") or info.spawned_at,
        "parent": info.group or info.parent_name,
        "stats": stats,
    }
    if info.state == "running" and (stats is None or stats.get("running_for") is None):
        # Not tracked (a stuck loop never ran the switch that turns
        # tracking on): the watchdog knows how long it has been running.
        held = obs.watch.current_hold()
        if held is not None:
            stats = dict(stats or {}, running_for=held)
    row["warnings"] = warnings_for(info, stats, obs.task_block(task), threshold)
    return row


def warnings_for(info: TaskInfo, stats: dict[str, Any] | None, blocked: float,
                 threshold: float | None) -> list[str]:
    """The flags ``treadle top`` puts on a task's row."""
    limit = threshold if threshold is not None else 0.1
    found: list[str] = []
    running_for = stats.get("running_for") if stats else None
    if running_for is not None and running_for >= limit:
        if stats is not None and stats.get("steps") == 0:
            found.append(f"never yielded: running for {_ms(running_for)} since it started")
        else:
            found.append(f"blocking the loop for {_ms(running_for)} (still running)")
    else:
        longest = max(blocked, stats.get("longest_step", 0.0) if stats else 0.0)
        if longest >= limit:
            found.append(f"blocked the loop for {_ms(longest)}")
    if stats is not None:
        wakes = stats.get("wakes", 0)
        if wakes >= 2 and stats.get("self_wakes", 0) * 2 > wakes:
            found.append("self-wakes over 50%")
    if info.waits_on is not None and info.waits_on.orphaned:
        found.append("waiting on a future nothing else holds — it can never wake")
    return found


def _ms(seconds: float) -> str:
    if seconds < 10.0:
        return f"{seconds * 1e3:,.0f} ms"
    return f"{seconds:,.1f} s"


__all__ = ["SORT_KEYS", "loop_counters", "orphaned", "ps_document", "top_document",
           "warnings_for"]
