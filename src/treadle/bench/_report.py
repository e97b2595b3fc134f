"""The output of ``treadle bench``: the table (plain text or Markdown), its
details and notes, and the raw records as JSON lines.

Owns: how results are shown, from the records alone (so ``--from FILE``
renders a saved run exactly as it was shown live).
Never: measures or recomputes anything but medians and ratios (see
``_stats.py``), and never hides a failed or missing cell: every cell says
what happened to it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from ._stats import Cell, summarize

#: A load generator using at least this share of a core may be the limit.
CLIENT_BOUND = 0.90
#: Cells noisier than this between rounds are pointed out.
NOISY = 0.25


def human(value: float, unit: str) -> str:
    """Short numbers for throughputs (1.23M, 45.6k, 890), exact ones for
    costs (1,106 bytes/task)."""
    if not unit.endswith(("/s", "/CPU-s")):
        return f"{value:,.0f}"
    a = abs(value)
    if a >= 1e6:
        return f"{value / 1e6:.2f}M"
    if a >= 1e4:
        return f"{value / 1e3:.1f}k"
    if a >= 1e3:
        return f"{value / 1e3:.2f}k"
    return f"{value:.1f}" if a < 10 else f"{value:.0f}"


def format_ratio(r: float | None) -> str:
    return "" if r is None else f"{r:.2f}x"


def loop_labels(records: Iterable[dict[str, Any]], loops: Sequence[str]) -> dict[str, str]:
    """Column titles.  A treadle column is titled by what its children
    reported (``treadle.__compiled__``), not by what was asked for: until
    the compiled build exists, "treadle" says "(pure)" too."""
    compiled: dict[str, set[bool]] = {l: set() for l in loops}
    is_treadle: dict[str, bool] = {l: False for l in loops}
    for rec in records:
        l = rec.get("loop")
        if l not in compiled:
            continue
        if str(rec.get("factory", "")).split(":")[0].split(".")[0] == "treadle":
            is_treadle[str(l)] = True
            c = rec.get("treadle_compiled")
            if isinstance(c, bool):
                compiled[str(l)].add(c)
    labels = {}
    for l in loops:
        if not is_treadle[l] or not compiled[l]:
            labels[l] = l
        elif len(compiled[l]) > 1:
            labels[l] = f"{l} (mixed builds!)"
        else:
            labels[l] = f"{l} ({'compiled' if True in compiled[l] else 'pure'})"
    return labels


def per_cpu(records: Iterable[dict[str, Any]],
            units: dict[str, str]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The records and units re-expressed per CPU-second of the process
    under test (``ops_per_cpu_s``) instead of per wall second.  On a busy
    machine CPU time moves far less than wall time, because waiting for a
    core is not counted.  Workloads without a CPU figure (memory) keep
    their value."""
    out = []
    for rec in records:
        cpu = rec.get("ops_per_cpu_s")
        if isinstance(cpu, (int, float)) and rec.get("status") == "ok":
            rec = {**rec, "value": float(cpu)}
        out.append(rec)
    new_units = {w: (u[:-2] + "/CPU-s" if u.endswith("/s") else u) for w, u in units.items()}
    return out, new_units


@dataclass(slots=True)
class Report:
    title: str
    header: list[str]
    columns: list[str]                       # loop labels, baseline first
    rows: list[list[str]]                    # workload, unit, one cell per loop
    detail_rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _cell_text(cell: Cell, unit: str, baseline: bool) -> str:
    state = cell.state
    if state in ("n/a", "failed", "timeout", "missing"):
        return state
    assert cell.median is not None
    text = human(cell.median, unit)
    if not baseline and cell.ratio is not None:
        text += f" {format_ratio(cell.ratio)}"
    if state == "partial":
        text += f" ({cell.ok}/{cell.runs} ok)"
    return text


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v * 100:.0f}%"


def _num(v: float | None) -> str:
    return "" if v is None else f"{v:g}"


def _pair(a: float | None, b: float | None) -> str:
    if a is None and b is None:
        return ""
    return f"{'-' if a is None else f'{a:g}'} / {'-' if b is None else f'{b:g}'}"


def _details(cells: dict[tuple[str, str], Cell], workloads: Sequence[str],
             loops: Sequence[str], groups: dict[str, str]) -> list[list[str]]:
    rows: list[list[str]] = []

    def row(w: str, what: str, fmt: Any) -> None:
        vals = [fmt(cells[(w, l)]) for l in loops]
        if any(vals):
            rows.append([w, what, *vals])

    for w in workloads:
        g = groups.get(w, "")
        if w == "timers":
            row(w, "lateness p50 / p99 ms",
                lambda c: _pair(c.extra_median("late_ms_p50"), c.extra_median("late_ms_p99")))
        elif g in ("echo", "http"):
            row(w, "latency p50 / p99 ms",
                lambda c: _pair(c.extra_median("lat_ms_p50"), c.extra_median("lat_ms_p99")))
            row(w, "server CPU", lambda c: _pct(c.extra_median("server_cpu_util")))

            def client(c: Cell) -> str:
                v = c.extra_median("client_cpu_util")
                text = _pct(v)
                return text + " (client-bound?)" if v is not None and v >= CLIENT_BOUND else text
            row(w, "load generator CPU", client)
        elif g == "scopes":
            row(w, "scope", lambda c: str(c.extra_first("scope") or ""))
            row(w, "loop turns", lambda c: _num(c.extra_median("turns")))
        elif g == "memory":
            row(w, "RSS delta MiB", lambda c: _num(c.extra_median("rss_delta_mib")))
    return rows


def _group_lines(items: dict[str, dict[str, list[str]]]) -> list[str]:
    """{message: {loop: [workloads]}} -> one line per message."""
    lines = []
    for message, by_loop in items.items():
        parts = [f"{loop}: {', '.join(ws)}" for loop, ws in by_loop.items()]
        lines.append(f"{message} -- {'; '.join(parts)}")
    return lines


def build(records: Sequence[dict[str, Any]], workloads: Sequence[str],
          loops: Sequence[str], *, baseline: str | None,
          units: dict[str, str], higher_is_better: dict[str, bool],
          groups: dict[str, str], meta: dict[str, Any] | None = None,
          interrupted: bool = False, cpu_time: bool = False) -> Report:
    """The whole report of a run, from its records (per CPU-second of the
    process under test with *cpu_time*, see ``per_cpu``)."""
    meta = meta or {}
    if cpu_time:
        records, units = per_cpu(records, units)
    cells = summarize(records, workloads, loops, baseline, higher_is_better)
    labels = loop_labels(records, loops)
    rows = []
    for w in workloads:
        rows.append([w, units.get(w, ""),
                     *[_cell_text(cells[(w, l)], units.get(w, ""), l == baseline)
                       for l in loops]])
    header = []
    py = meta.get("python") or next((r.get("python") for r in records if r.get("python")), "?")
    host = ", ".join(str(x) for x in (meta.get("platform"), meta.get("cpus") and
                                      f"{meta['cpus']} CPUs") if x)
    header.append(f"Python {py}" + (f" on {host}" if host else ""))
    if meta.get("versions"):
        header.append("versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()))
    rounds = meta.get("rounds") or max((int(r.get("round", 0)) + 1 for r in records), default=0)
    header.append(f"{rounds} round(s), loop order rotated each round, each run in a fresh "
                  f"process{'; quick mode (small sizes)' if meta.get('quick') else ''}")
    if cpu_time:
        header.append("throughput per CPU-second of the process under test (the server, "
                      "for echo/http), not per wall-clock second")
    if baseline is not None and baseline in loops:
        header.append(f"cells: median over rounds, then how many times better than "
                      f"{labels[baseline]} (above 1.00x is better; for bytes/task and "
                      "bytes/conn, fewer bytes is better)")

    notes: list[str] = []
    if interrupted:
        notes.append("interrupted: the table shows only the runs that finished.")
    notes.extend(meta.get("notes", []))
    load = meta.get("loadavg")
    cpus = meta.get("cpus")
    if isinstance(load, (int, float)) and isinstance(cpus, int) and cpus:
        if load > 0.5 * cpus:
            notes.append(f"the machine was busy when the run started (load average "
                         f"{load:.1f} on {cpus} CPUs): expect noisy numbers.")
    if isinstance(cpus, int) and cpus <= 2:
        notes.append(f"only {cpus} CPU(s): the I/O workloads share them with their load "
                     "generator, and wall-clock numbers move by 10-50% between runs on a "
                     "shared machine; compare columns of one run, not runs.")
    for l in loops:
        if labels[l].endswith("(pure)") and l == "treadle":
            notes.append("treadle as installed is not compiled (treadle.__compiled__ is "
                         "False): its column runs the same pure-Python code as "
                         "treadle-pure.")
            break
    spreads = [(c.spread, w, l) for (w, l), c in cells.items() if c.spread is not None]
    if spreads:
        spreads.sort()
        mid = spreads[len(spreads) // 2][0]
        worst = spreads[-1]
        text = (f"noise between rounds ((max-min)/median): typical {mid * 100:.0f}%, "
                f"worst {worst[0] * 100:.0f}% ({worst[1]} on {labels[worst[2]]})")
        noisy = sum(1 for s in spreads if s[0] > NOISY)
        if noisy:
            text += f"; {noisy} cell(s) above {NOISY * 100:.0f}%"
        notes.append(text + ".")
    bound = sorted({labels[l] for (w, l), c in cells.items()
                    if (c.extra_median("client_cpu_util") or 0) >= CLIENT_BOUND})
    if bound:
        notes.append(f"the load generator used >= {CLIENT_BOUND * 100:.0f}% of a core "
                     f"against {', '.join(bound)}: those servers may be faster than shown "
                     "(client-bound); see the details.")
    for (w, l), c in cells.items():
        for n in c.extra_notes():
            text = f"{w}: {n}"
            if text not in notes:
                notes.append(text)
    failed: dict[str, dict[str, list[str]]] = {}
    na: dict[str, dict[str, list[str]]] = {}
    for (w, l), c in cells.items():
        if c.state in ("failed", "timeout", "partial"):
            bucket = failed
        elif c.state == "n/a":
            bucket = na
        else:
            continue
        for err in c.errors or ["no error message"]:
            bucket.setdefault(err, {}).setdefault(labels[l], []).append(w)
    notes.extend(f"FAILED {line}" for line in _group_lines(failed))
    notes.extend(f"n/a: {line}" for line in _group_lines(na))
    missing = [(w, l) for (w, l), c in cells.items() if c.state == "missing"]
    if missing and not interrupted:
        notes.append(f"{len(missing)} cell(s) have no record.")

    return Report(title="treadle bench", header=header,
                  columns=[labels[l] for l in loops], rows=rows,
                  detail_rows=_details(cells, workloads, loops, groups), notes=notes)


def _align(table: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    out = []
    for r in table:
        cells = [r[0].ljust(widths[0]), r[1].ljust(widths[1])]
        cells += [c.rjust(widths[i + 2]) for i, c in enumerate(r[2:])]
        out.append("  ".join(cells).rstrip())
    return out


def render_text(rep: Report) -> str:
    lines = [f"{rep.title}: " + rep.header[0], *rep.header[1:], ""]
    lines += _align([["workload", "unit", *rep.columns], *rep.rows])
    if rep.detail_rows:
        lines += ["", "details (medians):"]
        lines += _align([["workload", "what", *rep.columns], *rep.detail_rows])
    if rep.notes:
        lines += ["", "notes:"]
        lines += [f"- {n}" for n in rep.notes]
    return "\n".join(lines) + "\n"


def _md_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def render_markdown(rep: Report) -> str:
    n = len(rep.columns)
    lines = [f"**{rep.title}**: {rep.header[0]}  ", *[h + "  " for h in rep.header[1:]], ""]
    lines.append(_md_row(["workload", "unit", *rep.columns]))
    lines.append("|---|---|" + "---:|" * n)
    lines += [_md_row(r) for r in rep.rows]
    if rep.detail_rows:
        lines += ["", "Details (medians):", ""]
        lines.append(_md_row(["workload", "what", *rep.columns]))
        lines.append("|---|---|" + "---:|" * n)
        lines += [_md_row(r) for r in rep.detail_rows]
    if rep.notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {n}" for n in rep.notes]
    return "\n".join(lines) + "\n"


def render_json(records: Iterable[dict[str, Any]]) -> str:
    """JSON Lines: one record per run, in the order the runs happened."""
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)


def load_json(text: str) -> list[dict[str, Any]]:
    """Records from ``render_json`` output (blank lines ignored)."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"line {i}: not JSON ({exc})") from None
        if not isinstance(rec, dict) or "workload" not in rec or "loop" not in rec:
            raise ValueError(f"line {i}: not a treadle bench record")
        out.append(rec)
    return out
