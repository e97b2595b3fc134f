"""Text for the terminal: the ``treadle ps`` table, the ``pstree`` tree
and a ``treadle top`` screen, from the server's documents.

Owns: layout.  The ``ps`` table has the columns of ``python -m asyncio
ps`` (tid, task id, task name, coroutine stack, awaiter chain, awaiter
name, awaiter id: same names, same content, innermost frame first, one row
per awaiter) with treadle's own in between: state, what the task waits on,
for how long, and the task or task group that started it.  The tree is
``python -m asyncio pstree``'s: ``(T)`` task nodes, coroutine frames under
them, awaited tasks under the frame that awaits them; a cycle of awaits is
drawn once with its back edge marked, and listed after the tree.
Never: talks to a process (``_client.py``) or reads a loop.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any, Iterable

Doc = dict[str, Any]


def seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 1e-3:
        return f"{value * 1e6:.0f} µs"
    if value < 1.0:
        return f"{value * 1e3:.0f} ms"
    if value < 120.0:
        return f"{value:.1f} s"
    if value < 7200.0:
        return f"{value / 60:.1f} min"
    return f"{value / 3600:.1f} h"


def bound(value: float | None) -> str:
    """A lateness bucket's upper bound."""
    if value is None:
        return "-"
    if value == float("inf"):
        return ">10 s"
    return "≤" + seconds(value).replace(" ", "")


def _stack(frames: Iterable[Doc]) -> str:
    return " -> ".join(f["name"] for f in frames)


def _wait(task: Doc, now: float) -> str:
    wait = task.get("waits_on")
    if not wait:
        return ""
    text: str = wait["kind"]
    if wait.get("detail"):
        text += f" {wait['detail']}"
    if wait.get("until") is not None:
        text += f" until {time.strftime('%H:%M:%S', time.localtime(wait['until']))}"
        left = wait["until"] - now
        text += (f" (in {seconds(left)})" if left >= 0
                 else f" (overdue by {seconds(-left)})")
    if wait.get("orphaned"):
        text += " (nothing else holds it: it can never wake)"
    return text


def _parent(task: Doc) -> str:
    if task.get("group"):
        return str(task["group"])
    if task.get("parent_name"):
        return str(task["parent_name"])
    return ""


def loop_line(loop: Doc) -> str:
    where = f"thread {loop.get('thread_id')}"
    if loop.get("thread_name"):
        where += f" ({loop['thread_name']})"
    stats = loop.get("stats") or {}
    parts = [f"loop {loop['id']:#x} in {where}: {loop.get('activity', '')}"]
    extra = [f"{len(loop.get('tasks', []))} tasks" if "tasks" in loop else None,
             f"{loop.get('ready', stats.get('ready', 0))} ready",
             f"{loop.get('timers', stats.get('timers', 0))} timers"]
    parts.append(", ".join(e for e in extra if e))
    return " — ".join(parts)


def render_ps(doc: Doc) -> str:
    now = doc.get("time", time.time())
    lines = [f"process {doc['pid']}: {' '.join(doc.get('argv', []))}".rstrip()]
    rows: list[list[str]] = []
    for loop in doc.get("loops", []):
        lines.append(loop_line(loop))
        for block in loop.get("blocks", [])[-3:]:
            total = block.get("total")
            state = (f"held the loop for {seconds(total)}" if total is not None
                     else f"still holding the loop (reported after {seconds(block['held'])})")
            when = time.strftime("%H:%M:%S", time.localtime(block["noticed_at"]))
            lines.append(f"  blocked at {when}: {block['label']}: {state}")
        tid = str(loop.get("thread_id") or "")
        for task in loop.get("tasks", []):
            base = [tid, f"{task['id']:#x}", task["name"], task["state"],
                    _wait(task, now), seconds(task.get("waiting_for")), _parent(task),
                    _stack(task.get("stack", []))]
            awaiters = task.get("awaited_by") or []
            if not awaiters:
                rows.append(base + ["", "", "0x0"])
            for awaiter in awaiters:
                rows.append(base + [_stack(awaiter["stack"]), awaiter["name"],
                                    f"{awaiter['task_id']:#x}"])
    header = ["tid", "task id", "task name", "state", "waiting on", "waiting for",
              "started by", "coroutine stack", "awaiter chain", "awaiter name",
              "awaiter id"]
    minimum = [10, 20, 20, 9, 10, 11, 10, 50, 50, 15, 15]
    widths = [max(m, len(h), *(len(r[i]) for r in rows)) if rows else max(m, len(h))
              for i, (h, m) in enumerate(zip(header, minimum))]
    lines.append("")
    lines.append(" ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    lines.append("-" * min(sum(widths) + len(widths) - 1, 240))
    for row in rows:
        lines.append(" ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


# ----------------------------------------------------------------------
# pstree
# ----------------------------------------------------------------------


def find_cycles(graph: dict[int, set[int]]) -> list[list[int]]:
    """Cycles in an awaiter -> awaited graph (each one listed once, as a
    path that returns to its first task)."""
    white, grey, black = 0, 1, 2
    color: dict[int, int] = defaultdict(int)
    path: list[int] = []
    cycles: list[list[int]] = []

    def visit(v: int) -> None:
        color[v] = grey
        path.append(v)
        for w in sorted(graph.get(v, ())):
            if color[w] == white:
                visit(w)
            elif color[w] == grey:
                cycles.append(path[path.index(w):] + [w])
        color[v] = black
        path.pop()

    for v in sorted(graph):
        if color[v] == white:
            visit(v)
    return cycles


def build_tree(loop: Doc) -> tuple[list[Doc], list[list[int]], dict[int, Doc]]:
    """The tree of one loop's tasks: (roots, cycles, tasks by id).  Nodes
    are ``{"task": {...}}`` or ``{"frame": "name file:line"}`` with
    ``children``; a task already drawn higher up in its own cycle appears
    as ``{"cycle": id}``."""
    tasks = {t["id"]: t for t in loop.get("tasks", [])}
    awaits: list[tuple[int, list[Doc], int]] = []
    graph: dict[int, set[int]] = defaultdict(set)
    for task in tasks.values():
        for awaiter in task.get("awaited_by") or []:
            if awaiter["task_id"] in tasks:
                awaits.append((awaiter["task_id"], awaiter["stack"], task["id"]))
                graph[awaiter["task_id"]].add(task["id"])
    cycles = find_cycles(graph)
    back = {(c[-2], c[-1]) for c in cycles}

    nodes: dict[tuple[str, Any], Doc] = {}
    frame_children: dict[tuple[str, Any], dict[str, tuple[str, Any]]] = defaultdict(dict)
    counter = [0]

    def task_node(tid: int) -> tuple[str, Any]:
        key = ("task", tid)
        if key not in nodes:
            nodes[key] = {"task": tasks[tid], "children": []}
        return key

    def frame_node(parent: tuple[str, Any], label: str) -> tuple[str, Any]:
        found = frame_children[parent].get(label)
        if found is not None:
            return found
        counter[0] += 1
        key = ("frame", counter[0])
        nodes[key] = {"frame": label, "children": []}
        nodes[parent]["children"].append(key)
        frame_children[parent][label] = key
        return key

    children_of: set[tuple[str, Any]] = set()
    for parent, stack, child in awaits:
        cur = task_node(parent)
        for frame in reversed(stack):
            cur = frame_node(cur, f"{frame['name']} {frame['filename']}:{frame['lineno']}")
        if (parent, child) in back:
            marker = ("cycle", (parent, child))
            nodes[marker] = {"cycle": child, "children": []}
            nodes[cur]["children"].append(marker)
            continue
        key = task_node(child)
        if key not in nodes[cur]["children"]:
            nodes[cur]["children"].append(key)
            children_of.add(key)
    awaiting = {parent for parent, _, _ in awaits}
    for tid, task in tasks.items():
        key = task_node(tid)
        if tid not in awaiting:
            cur = key
            for frame in reversed(task.get("stack", [])):
                cur = frame_node(cur, f"{frame['name']} {frame['filename']}:{frame['lineno']}")
    roots = [key for key in nodes if key[0] == "task" and key not in children_of]

    def materialize(key: tuple[str, Any], seen: set[tuple[str, Any]]) -> Doc:
        node = dict(nodes[key])
        if key in seen:
            return {"cycle": key[1], "children": []}
        seen = seen | {key}
        node["children"] = [materialize(k, seen) for k in node["children"]]
        return node

    return [materialize(r, set()) for r in roots], cycles, tasks


def _task_label(task: Doc, now: float) -> str:
    text = f"(T) {task['name']}"
    state = task.get("state", "")
    detail = _wait(task, now)
    if state == "waiting" and detail:
        extra = f"waiting on {detail}"
        if task.get("waiting_for") is not None:
            extra += f" for {seconds(task['waiting_for'])}"
    else:
        extra = state
    return f"{text} [{extra}]" if extra else text


def render_pstree(doc: Doc) -> str:
    now = doc.get("time", time.time())
    out: list[str] = []
    for loop in doc.get("loops", []):
        out.append(loop_line(loop))
        roots, cycles, tasks = build_tree(loop)

        def label(node: Doc) -> str:
            if "task" in node:
                return _task_label(node["task"], now)
            if "cycle" in node:
                target = tasks.get(node["cycle"])
                name = target["name"] if target else hex(node["cycle"])
                return f"(T) {name} [cycle: awaited above]"
            return f" {node['frame']}"

        def draw(node: Doc, prefix: str, last: bool) -> None:
            out.append(f"{prefix}{'└── ' if last else '├── '}{label(node)}")
            inner = prefix + ("    " if last else "│   ")
            kids = node["children"]
            for i, kid in enumerate(kids):
                draw(kid, inner, i == len(kids) - 1)

        for root in roots:
            draw(root, "", True)
        for cycle in cycles:
            names = " → ".join(tasks[t]["name"] if t in tasks else hex(t) for t in cycle)
            out.append(f"cycle: {names} (each awaits the next: none of them can finish)")
        out.append("")
    return "\n".join(out).rstrip()


def tree_json(doc: Doc) -> Doc:
    loops = []
    for loop in doc.get("loops", []):
        roots, cycles, _ = build_tree(loop)
        loops.append({"id": loop["id"], "thread_id": loop.get("thread_id"),
                      "activity": loop.get("activity"), "tree": roots, "cycles": cycles})
    return {"pid": doc.get("pid"), "time": doc.get("time"), "loops": loops}


# ----------------------------------------------------------------------
# top
# ----------------------------------------------------------------------

#: (header, key in a row's stats or the row, width, right-aligned)
TOP_COLUMNS = [
    ("ID", "id", 14, False),
    ("NAME", "name", 18, False),
    ("STATE", "state", 9, False),
    ("STEPS", "steps", 8, True),
    ("BUSY", "busy", 8, True),
    ("SCHED", "scheduled", 8, True),
    ("IDLE", "idle", 8, True),
    ("WAKES", "wakes", 7, True),
    ("SELF", "self_wakes", 5, True),
    ("LONGEST", "longest_step", 8, True),
    ("SPAWNED AT", "spawned_at", 28, False),
    ("WARNINGS", None, 0, False),
]


def _cell(row: Doc, key: str | None) -> str:
    if key is None:
        return "; ".join(row.get("warnings", []))
    stats = row.get("stats") or {}
    if key == "id":
        return f"{row['id']:#x}"
    if key in ("name", "state"):
        return str(row.get(key, ""))
    if key == "spawned_at":
        where = stats.get("spawned_at") or row.get("spawned_at")
        if where:
            return _short_location(where)
        return f"by {row['parent']}" if row.get("parent") else ""
    if not stats:
        return "-"
    value = stats.get(key)
    if key in ("busy", "scheduled", "idle", "longest_step"):
        return seconds(value) if value is not None else "-"
    if key == "self_wakes":
        wakes = stats.get("wakes") or 0
        return f"{100 * (value or 0) // wakes}%" if wakes else "-"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _short_location(where: str) -> str:
    path, _, rest = where.partition(":")
    if "/" in path:
        path = path.rsplit("/", 1)[1]
    return f"{path}:{rest}" if rest else path


def _percentile(hist: list[int], bounds: list[float], fraction: float) -> float | None:
    total = sum(hist)
    if not total:
        return None
    rank = max(1, round(fraction * total))
    seen = 0
    for i, count in enumerate(hist):
        seen += count
        if seen >= rank:
            return bounds[i] if i < len(bounds) else float("inf")
    return float("inf")


def _argv(doc: Doc) -> str:
    text = " ".join(doc.get("argv", []))
    return text if len(text) <= 60 else "…" + text[-59:]


def _rate(now: Doc, before: Doc | None, key: str, dt: float) -> float | None:
    if before is None or dt <= 0:
        return None
    return float(now["stats"][key] - before["stats"][key]) / dt


def top_lines(doc: Doc, previous: Doc | None, width: int = 160) -> list[str]:
    """One screen of ``treadle top`` (without the terminal handling)."""
    when = time.strftime("%H:%M:%S", time.localtime(doc.get("time", time.time())))
    order = "ascending" if doc.get("reverse") else "descending"
    lines = [f"treadle top — pid {doc['pid']} ({_argv(doc)}) — "
             f"{when} — sort: {doc.get('sort')} {order}"]
    before = {l["id"]: l for l in (previous or {}).get("loops", [])}
    dt = doc["mono"] - previous["mono"] if previous else 0.0
    for loop in doc.get("loops", []):
        stats = loop["stats"]
        prev = before.get(loop["id"])
        turns = _rate(loop, prev, "turns", dt)
        items = _rate(loop, prev, "callbacks", dt)
        per_turn = (items / turns) if turns and items is not None else None
        if prev is not None and dt > 0:
            ran = stats["run_time"] - prev["stats"]["run_time"]
            waited = stats["io_wait"] - prev["stats"]["io_wait"]
        else:
            ran, waited = stats["run_time"], stats["io_wait"]
        io_share = min(1.0, waited / ran) if ran > 0 else 0.0
        hist = stats.get("timer_lateness") or []
        if prev is not None and len(prev["stats"].get("timer_lateness") or []) == len(hist):
            recent = [a - b for a, b in zip(hist, prev["stats"]["timer_lateness"])]
            if sum(recent):
                hist = recent
        p50 = _percentile(hist, stats.get("lateness_bounds") or [], 0.5)
        p99 = _percentile(hist, stats.get("lateness_bounds") or [], 0.99)
        thread = f"thread {loop.get('thread_id')}"
        if loop.get("thread_name"):
            thread += f" ({loop['thread_name']})"
        lines.append(f"loop {loop['id']:#x} {thread}: {loop.get('activity', '')}"[:width])
        lines.append(
            "  " + ", ".join([
                f"{turns:,.0f} turns/s" if turns is not None else "- turns/s",
                f"{per_turn:.1f} callbacks/turn" if per_turn is not None else "- callbacks/turn",
                f"I/O wait {io_share:.0%} / running {1 - io_share:.0%}",
                f"timer lateness p50 {bound(p50)} p99 {bound(p99)}",
                f"ready {stats['ready']}",
                f"{stats['tasks']} tasks",
            ])[:width])
        blocked = stats.get("blocked", 0) + stats.get("slow_turns", 0)
        tracking = "per-task timing on" if stats.get("tracking") else "per-task timing off"
        lines.append(f"  blocked the loop: {blocked} time{'' if blocked == 1 else 's'}, longest "
                     f"{seconds(stats.get('longest_block', 0.0)) or '0 ms'}; {tracking}"[:width])
    lines.append("")
    header = []
    for title, key, w, right in TOP_COLUMNS:
        mark = "▼" if key == doc.get("sort") and not doc.get("reverse") else \
            "▲" if key == doc.get("sort") else ""
        text = title + mark
        header.append(text.rjust(w) if right else text.ljust(w))
    lines.append(" ".join(header).rstrip()[:width])
    for loop in doc.get("loops", []):
        for row in loop.get("tasks", []) + loop.get("finished", []):
            cells = []
            for _title, key, w, right in TOP_COLUMNS:
                text = _cell(row, key)
                if w and len(text) > w:
                    text = text[:w - 1] + "…"
                cells.append(text.rjust(w) if right else text.ljust(w))
            lines.append(" ".join(cells).rstrip()[:width])
    return lines


__all__ = ["TOP_COLUMNS", "build_tree", "find_cycles", "render_ps", "render_pstree",
           "seconds", "top_lines", "tree_json"]
