"""The arithmetic of the report: medians, ratios to the baseline, spread.

Owns: turning the raw per-run records into one cell per (workload, loop).
Never: reads a clock or a process; pure functions over records, so the
numbers in the table can be checked on synthetic inputs.

Conventions.  A cell's value is the median over its successful runs (an
odd count gives the middle run, an even count the mean of the middle two).
The ratio says how many times *better* than the baseline a loop is, so that
above 1.00x is always better: value / baseline for throughputs, baseline /
value for costs such as bytes per task.  Spread is (max - min) / median
over the successful runs: the noise between rounds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def ratio(value: float | None, baseline: float | None,
          higher_is_better: bool) -> float | None:
    """How many times better *value* is than *baseline* (None when either
    is missing or zero)."""
    if value is None or baseline is None or value <= 0 or baseline <= 0:
        return None
    return value / baseline if higher_is_better else baseline / value


def spread(values: Sequence[float]) -> float | None:
    """(max - min) / median, or None with fewer than two values."""
    if len(values) < 2:
        return None
    m = statistics.median(values)
    return (max(values) - min(values)) / m if m else None


@dataclass(slots=True)
class Cell:
    """Everything measured for one workload on one loop."""

    workload: str
    loop: str
    values: list[float] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    extras: list[dict[str, Any]] = field(default_factory=list)
    median: float | None = None
    spread: float | None = None
    ratio: float | None = None

    @property
    def runs(self) -> int:
        return len(self.statuses)

    @property
    def ok(self) -> int:
        return self.statuses.count("ok")

    @property
    def state(self) -> str:
        """"ok" (every run), "partial", "n/a", "failed" or "timeout"."""
        if not self.statuses:
            return "missing"
        if self.ok == self.runs:
            return "ok"
        if self.ok:
            return "partial"
        if all(s == "n/a" for s in self.statuses):
            return "n/a"
        if "timeout" in self.statuses and "failed" not in self.statuses:
            return "timeout"
        return "failed"

    def extra_median(self, key: str) -> float | None:
        vals = [float(e[key]) for e in self.extras
                if isinstance(e.get(key), (int, float)) and not isinstance(e.get(key), bool)]
        return median(vals)

    def extra_first(self, key: str) -> Any:
        """The first run's value of an extra that is the same in every run."""
        for e in self.extras:
            if key in e:
                return e[key]
        return None

    def extra_notes(self) -> list[str]:
        seen: list[str] = []
        for e in self.extras:
            note = e.get("note")
            if isinstance(note, str) and note not in seen:
                seen.append(note)
        return seen


def summarize(records: Iterable[dict[str, Any]], workloads: Sequence[str],
              loops: Sequence[str], baseline: str | None,
              higher_is_better: dict[str, bool]) -> dict[tuple[str, str], Cell]:
    """One Cell per (workload, loop) of the grid, medians and ratios filled
    in.  Records for workloads or loops outside the grid are ignored."""
    cells = {(w, l): Cell(w, l) for w in workloads for l in loops}
    for rec in records:
        cell = cells.get((str(rec.get("workload")), str(rec.get("loop"))))
        if cell is None:
            continue
        status = str(rec.get("status", "failed"))
        cell.statuses.append(status)
        if status == "ok" and isinstance(rec.get("value"), (int, float)):
            cell.values.append(float(rec["value"]))
            extra = rec.get("extra")
            cell.extras.append(extra if isinstance(extra, dict) else {})
        elif status != "ok":
            err = rec.get("error")
            if isinstance(err, str) and err not in cell.errors:
                cell.errors.append(err)
    for cell in cells.values():
        cell.median = median(cell.values)
        cell.spread = spread(cell.values)
    for w in workloads:
        base = cells[(w, baseline)].median if baseline is not None and baseline in loops else None
        for l in loops:
            cell = cells[(w, l)]
            cell.ratio = ratio(cell.median, base, higher_is_better.get(w, True))
    return cells
