"""Pipe transports, differentially: generated programs of calls on the two
ends of an ``os.pipe()``, run on asyncio's loop and on treadle's, must leave
the same trace.

A program holds W, the write end under ``connect_write_pipe()`` (with an
``asyncio.BaseProtocol`` that records its callbacks), and R, the read end
under ``connect_read_pipe()`` (an ``asyncio.Protocol``, which may keep the
transport open after ``eof_received``).  The steps: ``write`` and
``writelines`` of a few sizes and types, ``write_eof``, ``close``,
``abort``, new write-buffer limits on W; ``pause_reading``,
``resume_reading`` and ``close`` on R (once its fd is closed, W learns
that the pipe is gone); and "settle" (run the loop until nothing has happened for
20 turns).  The trace records each end's callbacks in order (consecutive
``data_received`` merged), ``connection_lost``'s exception, and for every
call what it returned or raised (type and message) and the transport's
state after it.

Left out: writes the pipe takes only in part (every write here fits in
its buffer with the others), and the message of a write of the wrong type
(asyncio's pipe transport checks it with ``assert``: ``AssertionError`` with
the data's repr, or nothing at all under ``python -O``; treadle raises
``TypeError``, as its other transports do).  treadle-only: it compares the
two loops.  When it was written: 300 programs the same on 3.11 and on each
of 3.12-3.15; 68 of them differed before ``writelines()`` of a pipe took
any buffer and refused text with asyncio's message (the join's).
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import pytest

from ..programs import Trace, assert_seen, asyncio_traces, describe, payload, same_on_both_loops

pytestmark = pytest.mark.treadle

SEEDS = range(120)
#: All the writes of a program together fit in a pipe's buffer (64 KiB).
SIZES = (0, 1, 10, 1000, 4000)
FORMS = ("bytes", "bytes", "bytes", "bytearray", "memoryview")
#: writelines() joins its items and calls write() (asyncio's base class):
#: any buffer is taken, text refused by the join.
LINE_FORMS = FORMS + ("array", "str")

Step = tuple[Any, ...]


def program(rng: random.Random) -> tuple[dict[str, Any], list[Step]]:
    settings = {"keep_open_on_eof": rng.random() < 0.5}
    kinds = ["write"] * 6 + ["writelines"] * 2 + ["settle"] * 4 + [
        "write_eof", "close_w", "abort", "limits", "pause_reading", "resume_reading",
        "resume_reading", "close_r"]
    steps: list[Step] = []
    for _ in range(rng.randint(2, 14)):
        kind = rng.choice(kinds)
        if kind == "write":
            steps.append((kind, rng.choice(SIZES), rng.choice(FORMS)))
        elif kind == "writelines":
            steps.append((kind, [(rng.choice(SIZES), rng.choice(LINE_FORMS))
                                 for _ in range(rng.randint(0, 3))]))
        elif kind == "limits":
            steps.append((kind, rng.choice([0, 100, 65_536])))
        else:
            steps.append((kind,))
    return settings, steps


class Writer(asyncio.BaseProtocol):
    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.trace.note("W", "made")

    def pause_writing(self) -> None:
        self.trace.note("W", "pause_writing")

    def resume_writing(self) -> None:
        self.trace.note("W", "resume_writing")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.trace.note("W", "lost", describe(exc))
        self.lost.set_result(None)


class Reader(asyncio.Protocol):
    def __init__(self, trace: Trace, keep_open: bool) -> None:
        self.trace = trace
        self.keep_open = keep_open
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.trace.note("R", "made")

    def data_received(self, data: bytes) -> None:
        self.trace.note("R", "data", data)

    def eof_received(self) -> bool:
        self.trace.note("R", "eof")
        return self.keep_open

    def connection_lost(self, exc: BaseException | None) -> None:
        self.trace.note("R", "lost", describe(exc))
        self.lost.set_result(None)


async def run_steps(settings: dict[str, Any], steps: list[Step]) -> dict[str, list[Any]]:
    loop = asyncio.get_running_loop()
    trace = Trace("WR")
    rfd, wfd = os.pipe()
    r_file, w_file = os.fdopen(rfd, "rb", 0), os.fdopen(wfd, "wb", 0)
    w_tr, writer = await loop.connect_write_pipe(lambda: Writer(trace), w_file)
    r_tr, reader = await loop.connect_read_pipe(
        lambda: Reader(trace, settings["keep_open_on_eof"]), r_file)
    await trace.settle()
    for index, step in enumerate(steps):
        kind = step[0]
        if kind == "settle":
            await trace.settle()
            continue
        if kind == "abort" and writer.lost.done():
            continue    # asyncio's abort() fails once its pipe is gone (its loop is None)
        try:
            if kind == "write":
                result = w_tr.write(payload(index, step[1], step[2]))
            elif kind == "writelines":
                result = w_tr.writelines(
                    [payload(index + i, size, form) for i, (size, form) in enumerate(step[1])])
            elif kind == "write_eof":
                result = w_tr.write_eof()
            elif kind == "close_w":
                result = w_tr.close()
            elif kind == "abort":
                result = w_tr.abort()
            elif kind == "limits":
                result = w_tr.set_write_buffer_limits(high=step[1])
            elif kind == "close_r":
                result = r_tr.close()
            else:
                result = getattr(r_tr, kind)()
            outcome: Any = ("ok", result)
        except Exception as exc:
            outcome = describe(exc)
        trace.events["calls"].append((
            index, kind, outcome, w_tr.is_closing(), w_tr.get_write_buffer_size(),
            w_tr.get_write_buffer_limits(), r_tr.is_closing(), r_tr.is_reading()))
    await trace.settle()
    w_tr.close()
    r_tr.close()
    await asyncio.wait_for(asyncio.gather(writer.lost, reader.lost), 10)
    return trace.events


@pytest.mark.parametrize("seed", SEEDS)
def test_a_pipe_program_runs_as_on_asyncio(seed: int) -> None:
    same_on_both_loops(run_steps, program(random.Random(seed)), seed)


def test_the_programs_exercise_what_they_claim() -> None:
    seen: set[str] = set()
    for _, trace in asyncio_traces(run_steps, program, list(SEEDS)[:60]):
        for end in "WR":
            for event in trace[end]:
                seen.add(f"{end} {event[0]}" if event[0] != "lost"
                         else f"{end} lost {event[1] and event[1][0]}")
        for call in trace["calls"]:
            seen.add(f"{call[1]} {call[2][0]}")
    assert_seen(("W made", "W lost None", "R made", "R data",
                 "R eof", "R lost None", "write ok", "writelines ok", "writelines TypeError",
                 "write_eof ok", "close_w ok", "abort ok", "limits ok", "pause_reading ok",
                 "resume_reading ok", "close_r ok"), seen)
