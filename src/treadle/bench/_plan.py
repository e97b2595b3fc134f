"""What ``treadle bench`` will run: the loops under test and the order of runs.

Owns: the built-in loop names (``asyncio``, ``uvloop``, ``treadle``,
``treadle-pure``), parsing of ``--loops``, and the interleaved schedule.
Never: starts a process or imports a loop.  The plan is pure data so that
the order of runs, which decides how fair the comparison is, can be tested
on its own.

Why interleave.  On a shared machine the background load drifts during a
run; if every asyncio run came first and every treadle run last, the drift
would land on one column.  Each round rotates the loop order (A B C, then
B C A, then C A B, ...), so every loop takes every position equally often.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Sequence


@dataclass(frozen=True, slots=True)
class LoopSpec:
    """One column of the table: a loop factory, run in a child process with
    *env* applied (a value of ``None`` removes the variable)."""

    name: str
    factory: str                      # "module:attribute"
    env: dict[str, str | None] = field(default_factory=dict)
    description: str = ""
    #: The interpreter the child runs under (None: the one running the
    #: suite).  It must have treadle installed, for treadle.bench._child.
    python: str | None = None

    @property
    def module(self) -> str:
        return self.factory.partition(":")[0]

    @property
    def is_treadle(self) -> bool:
        return self.module.split(".")[0] == "treadle"


#: The built-in loops, in the default column order (baseline first).
BUILTIN_LOOPS: dict[str, LoopSpec] = {
    "asyncio": LoopSpec("asyncio", "asyncio:new_event_loop",
                        description="the stock asyncio loop"),
    "uvloop": LoopSpec("uvloop", "uvloop:new_event_loop",
                       description="uvloop, when importable"),
    # TREADLE_PURE is removed, not inherited: this column is treadle as
    # installed, whatever the caller's environment says.
    "treadle": LoopSpec("treadle", "treadle:new_event_loop",
                        env={"TREADLE_PURE": None},
                        description="treadle as installed (compiled if built so)"),
    "treadle-pure": LoopSpec("treadle-pure", "treadle:new_event_loop",
                             env={"TREADLE_PURE": "1"},
                             description="treadle with TREADLE_PURE=1 "
                                         "(its pure-Python modules)"),
}

DEFAULT_LOOPS = ("asyncio", "uvloop", "treadle", "treadle-pure")


class PlanError(ValueError):
    """A --loops or --only/--skip value that names nothing runnable."""


def parse_loops(text: str | None) -> tuple[list[LoopSpec], list[str]]:
    """The loops named by a ``--loops`` value, and notes for the report.

    Entries are built-in names or ``LABEL=MODULE:FACTORY``, optionally
    followed by ``@PYTHON``: that column's children run under the
    interpreter PYTHON (another virtual environment, say one with an
    earlier build of treadle, so two builds are compared in one
    interleaved run).  Without
    *text*, the default set, minus uvloop when it is not importable (a
    note says so).  Naming uvloop explicitly when it is missing is an
    error: the user asked for a comparison that cannot be made.
    """
    notes: list[str] = []
    explicit = text is not None
    names = [n.strip() for n in text.split(",")] if text is not None else list(DEFAULT_LOOPS)
    specs: list[LoopSpec] = []
    for entry in names:
        if not entry:
            continue
        if "=" in entry:
            label, _, factory = entry.partition("=")
            factory, _, python = factory.partition("@")
            label, factory, python = label.strip(), factory.strip(), python.strip()
            if not label or ":" not in factory or factory.startswith(":") \
                    or factory.endswith(":"):
                raise PlanError(f"bad loop {entry!r}: expected "
                                f"LABEL=MODULE:FACTORY or LABEL=MODULE:FACTORY@PYTHON")
            if "@" in entry and not python:
                raise PlanError(f"bad loop {entry!r}: no interpreter after '@'")
            spec = LoopSpec(label, factory, python=python or None,
                            description=f"custom: {factory}"
                                        + (f" under {python}" if python else ""))
        elif entry in BUILTIN_LOOPS:
            spec = BUILTIN_LOOPS[entry]
        else:
            raise PlanError(f"unknown loop {entry!r}: choose from "
                            f"{', '.join(BUILTIN_LOOPS)} or LABEL=MODULE:FACTORY")
        if (spec.module == "uvloop" and spec.python is None
                and importlib.util.find_spec("uvloop") is None):
            if explicit:
                raise PlanError("uvloop is not installed (pip install uvloop)")
            notes.append("uvloop is not installed: its column is left out "
                         "(pip install uvloop to compare).")
            continue
        if any(s.name == spec.name for s in specs):
            raise PlanError(f"loop {spec.name!r} named twice")
        specs.append(spec)
    if not specs:
        raise PlanError("no loop to run")
    return specs, notes


@dataclass(frozen=True, slots=True)
class Run:
    """One child process: *workload* on *loop* in *round*; *position* is
    the loop's place in that round's rotation (0 = ran first)."""

    round: int
    workload: str
    loop: str
    position: int


def rotation(items: Sequence[str], round_no: int) -> list[str]:
    """*items* rotated left by *round_no*: A B C, B C A, C A B, A B C, ..."""
    if not items:
        return []
    k = round_no % len(items)
    return list(items[k:]) + list(items[:k])


def schedule(workloads: Sequence[str], loops: Sequence[str], rounds: int) -> list[Run]:
    """Every run, in the order to run them: round by round; within a round,
    workload by workload; within a workload, the loops in that round's
    rotation."""
    if rounds < 1:
        raise PlanError("rounds must be at least 1")
    runs: list[Run] = []
    for r in range(rounds):
        order = rotation(loops, r)
        for w in workloads:
            for pos, loop in enumerate(order):
                runs.append(Run(r, w, loop, pos))
    return runs
