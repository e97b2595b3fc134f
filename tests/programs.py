"""What the generated-program tests of the loop's I/O share (the
``test_*_programs_differential.py`` files): payloads of each type, a trace
that notes callbacks, and "settle" (run the loop until it is quiet)."""

from __future__ import annotations

import array
import asyncio
import random
from typing import Any, Callable, Iterable, Iterator

import treadle

#: What a write is given: every bytes-like type, an object with the buffer
#: protocol that is none of them, and text.
FORMS = ("bytes", "bytes", "bytes", "bytearray", "memoryview", "array", "str")


def payload(index: int, size: int, form: str = "bytes") -> Any:
    """*size* bytes of one letter (chosen by *index*), as *form*."""
    data = bytes([97 + index % 26]) * size
    if form == "bytearray":
        return bytearray(data)
    if form == "memoryview":
        return memoryview(data)
    if form == "array":
        return array.array("B", data)
    if form == "str":
        return data.decode()
    if form == "none":
        return None
    return data


def describe(exc: BaseException | None) -> Any:
    return None if exc is None else (type(exc).__name__, str(exc))


class Trace:
    """Events per end (consecutive data merged: how a stream is cut into
    reads is the kernel's business) and the calls the program made."""

    def __init__(self, ends: str) -> None:
        self.events: dict[str, list[Any]] = {end: [] for end in ends}
        self.events["calls"] = []
        self.quiet = 0

    def note(self, end: str, *what: Any) -> None:
        self.quiet = 0
        events = self.events[end]
        if what[0] == "data" and events and events[-1][0] == "data":
            events[-1] = ("data", events[-1][1] + what[1])
        else:
            events.append(what)

    async def settle(self) -> None:
        """Run the loop until nothing has happened for 20 turns in a row."""
        self.quiet = 0
        for _ in range(5000):
            self.quiet += 1
            if self.quiet > 20:
                return
            await asyncio.sleep(0)
        raise AssertionError("the program never went quiet")


def run_program(factory: Callable[[], asyncio.AbstractEventLoop],
                run_steps: Callable[..., Any], program: tuple[Any, ...]) -> Any:
    """The trace of ``run_steps(*program)`` on a loop of *factory*."""
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(run_steps(*program))


def same_on_both_loops(run_steps: Callable[..., Any], program: tuple[Any, ...],
                       seed: int) -> None:
    """The test of every program: its trace on treadle's loop is its trace
    on asyncio's."""
    expected = run_program(asyncio.new_event_loop, run_steps, program)
    got = run_program(treadle.new_event_loop, run_steps, program)
    assert got == expected, f"program of seed {seed}: {program!r}"


def asyncio_traces(run_steps: Callable[..., Any],
                   make_program: Callable[[random.Random], tuple[Any, ...]],
                   seeds: Iterable[int]) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """``(program, trace on asyncio's loop)`` for each seed: what a test
    that the programs reach every outcome they claim to compare reads."""
    for seed in seeds:
        program = make_program(random.Random(seed))
        yield program, run_program(asyncio.new_event_loop, run_steps, program)


def assert_seen(expected: Iterable[str], seen: set[str]) -> None:
    """A generator that stopped producing some outcome would make the
    comparison hollow: each of *expected* must have been *seen*."""
    missing = [outcome for outcome in expected if outcome not in seen]
    assert not missing, (missing, sorted(seen))
