"""Subprocess transports, differentially: generated programs of calls on a
child process started with ``loop.subprocess_exec()``, run on asyncio's
loop and on treadle's, must leave the same trace.

The child is ``cat`` (it copies its stdin to its stdout until EOF), or a
shell that runs ``cat``, then writes to its stderr and exits with 3, or a
shell that exits with 7 at once.  The steps: writes to its stdin (of each
bytes-like type, and text), ``write_eof()`` and ``close()`` of the stdin
pipe, pausing and resuming the stdout pipe, ``kill()``, ``terminate()``,
``send_signal()``, waiting for the child to exit, the return code then,
``close()`` of the transport, and "settle" (run the loop until nothing has
happened for 30 ms).  The trace records the protocol's callbacks per
channel - for each of the child's fds its data (merged) and
``pipe_connection_lost``, and for the process ``connection_made``,
``process_exited`` and ``connection_lost``, in order - and for every call
what it returned or raised.  (Events on different channels are not
ordered against each other: when a child's exit is seen against when its
pipes close is the kernel's business.)

Left out, as races on both loops: signals to a child that may already
have exited (signals are sent only while ``cat`` waits on its open stdin
and has not been signalled, and ``close()``, which kills a child it has not
seen exit, only then too: on asyncio 3.12.1 a ``close()`` that finds the
child just killed reaps it under its watcher, which then reports 255),
signals to a shell (one waiting for its child defers them, one still
starting up dies at once) or to ``cat`` with its stdout paused (whether it
had copied its input before it died could not be seen), and writes to the
shell that exits at once (EPIPE or not, by luck).  A signal waits, before,
until ``cat`` has copied all it was given, and after, until the child's
stdin is seen closed.  treadle-only: it compares the two loops.
When it was written: 200 programs the same on each of 3.11-3.15; it found
no difference.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
from typing import Any, Callable

import pytest

from ..programs import Trace, assert_seen, asyncio_traces, describe, payload, same_on_both_loops

pytestmark = pytest.mark.treadle

SEEDS = range(40)
CHILDREN = {
    "cat": ["cat"],
    "cat_then_3": ["sh", "-c", "cat; echo done >&2; exit 3"],
    "exit_7": ["sh", "-c", "exit 7"],
}
SIZES = (0, 1, 1000)
#: (Not text: asyncio's pipe transport only asserts the type, treadle's
#: raises TypeError; see tests/proc/test_pipes.py.)
FORMS = ("bytes", "bytes", "bytearray", "memoryview")

Step = tuple[Any, ...]


def program(rng: random.Random) -> tuple[str, list[Step]]:
    child = rng.choice(list(CHILDREN))
    kinds = ["write"] * 4 + ["settle"] * 2 + [
        "write_eof", "close_stdin", "pause_stdout", "resume_stdout", "signal", "wait",
        "close"]
    steps: list[Step] = []
    for _ in range(rng.randint(1, 8)):
        kind = rng.choice(kinds)
        if kind == "write":
            steps.append((kind, rng.choice(SIZES), rng.choice(FORMS)))
        elif kind == "signal":
            # (send_signal() with SIGUSR1, not SIGINT: a shell starts a
            # background job with SIGINT ignored, and its children inherit
            # that, so cat would not die of it when the suite runs so.)
            steps.append((kind, rng.choice(["kill", "terminate", "SIGUSR1"])))
        else:
            steps.append((kind,))
    return child, steps


class Child(asyncio.SubprocessProtocol):
    def __init__(self, trace: Trace) -> None:
        self.trace = trace
        loop = asyncio.get_running_loop()
        self.exited = loop.create_future()
        self.lost = loop.create_future()

    def connection_made(self, transport: Any) -> None:
        self.trace.note("proc", "made")

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.trace.note(str(fd), "data", data)

    def pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        self.trace.note(str(fd), "lost", describe(exc))

    def process_exited(self) -> None:
        self.trace.note("proc", "exited")
        self.exited.set_result(None)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.trace.note("proc", "lost", describe(exc))
        self.lost.set_result(None)


async def settle(trace: Trace) -> None:
    """Run the loop until nothing has happened for 30 ms (a child runs on
    its own time)."""
    for _ in range(500):
        trace.quiet = 0
        await asyncio.sleep(0.03)
        if trace.quiet == 0:
            return
    raise AssertionError("the child never went quiet")


def echoed(trace: Trace) -> int:
    """How many bytes the child has written to its stdout so far."""
    return sum(len(event[1]) for event in trace.events["1"] if event[0] == "data")


async def until(condition: Callable[[], bool]) -> None:
    """Wait for *condition* (what the child does takes its own time)."""
    for _ in range(2000):
        if condition():
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the child never got there")


async def run_steps(child: str, steps: list[Step]) -> dict[str, list[Any]]:
    loop = asyncio.get_running_loop()
    trace = Trace(["proc", "0", "1", "2"])  # type: ignore[arg-type]
    transport, proto = await loop.subprocess_exec(
        lambda: Child(trace), *CHILDREN[child],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stdin_open = True
    stdout_paused = False
    signalled = False
    written = 0
    for index, step in enumerate(steps):
        kind = step[0]
        if kind == "settle":
            await settle(trace)
            continue
        if kind == "wait":
            if child == "exit_7" or not stdin_open or proto.exited.done():
                await asyncio.wait_for(asyncio.shield(proto.exited), 10)
                trace.events["calls"].append((index, kind, transport.get_returncode()))
            continue
        if kind in ("signal", "close") and (
                child == "exit_7" or not stdin_open or signalled or proto.exited.done()):
            # The child may be gone already: a race on both loops (close()
            # kills a child it has not seen exit).
            continue
        if kind == "signal" and (child != "cat" or stdout_paused):
            # A shell that waits for its child defers SIGINT and SIGTERM
            # until the child is done; one still starting up dies at once.
            # Which one a signal finds is a race on both loops.  (And with
            # its stdout paused, whether cat copied its input first cannot
            # be seen: see below.)
            continue
        if kind == "write" and child == "exit_7" and step[1]:
            continue    # into a shell that is exiting: EPIPE or not, by luck
        if kind == "signal":
            # First let cat copy all it was given: whether it had when the
            # signal came would be a race.
            await until(lambda: echoed(trace) == written)
        stdin = transport.get_pipe_transport(0)
        try:
            if kind == "write":
                result = stdin.write(payload(index, step[1], step[2]))
                if stdin_open:
                    written += step[1]
            elif kind == "write_eof":
                result = stdin.write_eof()
                stdin_open = False
            elif kind == "close_stdin":
                result = stdin.close()
                stdin_open = False
            elif kind == "pause_stdout":
                result = transport.get_pipe_transport(1).pause_reading()
                stdout_paused = True
            elif kind == "resume_stdout":
                result = transport.get_pipe_transport(1).resume_reading()
                stdout_paused = False
            elif kind == "signal":
                signalled = True
                target = step[1]
                result = (transport.send_signal(signal.SIGUSR1) if target == "SIGUSR1"
                          else getattr(transport, target)())
            else:       # close
                result = transport.close()
                stdin_open = False
            outcome: Any = ("ok", result)
        except Exception as exc:
            outcome = describe(exc)
        trace.events["calls"].append((index, kind, outcome, transport.is_closing()))
        if kind == "signal":
            # And let it die, and its stdin be seen closed: a write racing
            # with that would fail with EPIPE or be dropped, by luck.
            await asyncio.wait_for(asyncio.shield(proto.exited), 10)
            await until(lambda: any(event[0] == "lost" for event in trace.events["0"]))
    if stdin_open:
        transport.get_pipe_transport(0).close()
        transport.get_pipe_transport(1).resume_reading()
    await asyncio.wait_for(asyncio.shield(proto.exited), 10)
    transport.close()
    await asyncio.wait_for(proto.lost, 10)
    trace.events["returncode"] = [transport.get_returncode()]
    return trace.events


@pytest.mark.parametrize("seed", SEEDS)
def test_a_subprocess_program_runs_as_on_asyncio(seed: int) -> None:
    same_on_both_loops(run_steps, program(random.Random(seed)), seed)


def test_the_programs_exercise_what_they_claim() -> None:
    seen: set[str] = set()
    for _, trace in asyncio_traces(run_steps, program, SEEDS):
        for channel in ("proc", "0", "1", "2"):
            for event in trace[channel]:
                seen.add(f"{channel} {event[0]}" if event[0] != "lost"
                         else f"{channel} lost {event[1] and event[1][0]}")
        seen.add(f"returncode {trace['returncode'][0]}")
        for call in trace["calls"]:
            seen.add(f"{call[1]} {call[2][0] if isinstance(call[2], tuple) else 'done'}")
    assert_seen(("proc made", "proc exited", "proc lost None", "0 lost None", "1 data",
                 "1 lost None", "2 data", "returncode 0", "returncode 3", "returncode 7",
                 "returncode -9", "write ok", "write_eof ok", "close_stdin ok",
                 "pause_stdout ok", "resume_stdout ok", "signal ok", "wait done",
                 "close ok"), seen)
