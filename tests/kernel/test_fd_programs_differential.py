"""The loop's fd callbacks, differentially: generated programs of
``add_reader``/``add_writer``/``remove_reader``/``remove_writer`` calls on
the two ends of a socket pair, run on asyncio's loop and on treadle's, must
leave the same trace.

Each step registers a numbered reader or writer on an end (replacing the
one it has), removes one (its return value is traced), sends bytes into
the other end, shuts an end's sending side down, passes an invalid file
object (a negative number, a string, an object whose ``fileno()`` fails,
the number of a closed descriptor, a closed socket), or settles (runs the
loop until no callback has run for 20 turns).  A reader receives up to its
size when called and traces what it got; at the
end of the stream it removes itself (a reader left on a readable fd would
be called on every turn, as on any level-triggered loop).  A writer traces
its call and removes itself.  Errors are traced as type and message.

treadle-only: it compares the two loops.  When it was written: 300
programs the same on each of 3.11-3.15; it found no difference.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import pytest

from ..programs import Trace, assert_seen, asyncio_traces, describe, same_on_both_loops

pytestmark = pytest.mark.treadle

SEEDS = range(150)

Step = tuple[Any, ...]


class _BadFileno:
    def fileno(self) -> int:
        raise ValueError("no fileno here")

    def __repr__(self) -> str:
        return "<BadFileno>"


def _closed_fd() -> int:
    """The number of a file descriptor that is closed (and not reused:
    the program opens none)."""
    r, w = socket.socketpair()
    number = r.fileno()
    r.close()
    w.close()
    return number


BAD: dict[str, Any] = {"negative": -1, "text": "fd", "no_fileno": _BadFileno(),
                       "closed_socket": "closed_socket", "closed_number": "closed_number"}


def program(rng: random.Random) -> list[Step]:
    kinds = ["add_reader"] * 3 + ["add_writer"] * 2 + ["send"] * 3 + ["settle"] * 3 + [
        "remove_reader", "remove_writer", "shutdown", "bad"]
    steps: list[Step] = []
    for _ in range(rng.randint(2, 16)):
        kind = rng.choice(kinds)
        end = rng.choice("AB")
        if kind == "add_reader":
            steps.append((kind, end, rng.choice([1, 10, 1000])))
        elif kind == "send":
            steps.append((kind, end, rng.choice([1, 10, 300])))
        elif kind == "bad":
            steps.append((kind, end, rng.choice(sorted(BAD)),
                          rng.choice(["add_reader", "add_writer", "remove_reader",
                                      "remove_writer"])))
        else:
            steps.append((kind, end))
    return steps


async def run_steps(steps: list[Step]) -> dict[str, list[Any]]:
    loop = asyncio.get_running_loop()
    trace = Trace("")
    a, b = socket.socketpair()
    for sock in (a, b):
        sock.setblocking(False)
    socks = {"A": a, "B": b}

    def reader(name: str, index: int, sock: socket.socket, size: int) -> None:
        try:
            data = sock.recv(size)
        except OSError as exc:
            trace.note("fd", "reader", name, index, describe(exc))
            loop.remove_reader(sock)
            return
        trace.note("fd", "reader", name, index, data)
        if not data:
            loop.remove_reader(sock)

    def writer(name: str, index: int, sock: socket.socket) -> None:
        trace.note("fd", "writer", name, index)
        loop.remove_writer(sock)

    trace.events["fd"] = []
    for index, step in enumerate(steps):
        kind, end = step[0], step[1]
        sock = socks[end]
        if kind == "settle":
            await trace.settle()
            continue
        try:
            if kind == "add_reader":
                result: Any = loop.add_reader(sock, reader, end, index, sock, step[2])
            elif kind == "add_writer":
                result = loop.add_writer(sock.fileno(), writer, end, index, sock)
            elif kind == "remove_reader":
                result = loop.remove_reader(sock.fileno())
            elif kind == "remove_writer":
                result = loop.remove_writer(sock)
            elif kind == "send":
                result = sock.send(bytes([97 + index % 26]) * step[2])
            elif kind == "shutdown":
                result = sock.shutdown(socket.SHUT_WR)
            else:
                method = getattr(loop, step[3])
                bad = BAD[step[2]]
                if bad == "closed_socket":
                    bad = socket.socket()
                    bad.close()
                elif bad == "closed_number":
                    bad = _closed_fd()
                args = (bad, writer, end, index, sock) if "add" in step[3] else (bad,)
                result = method(*args)
            outcome: Any = ("ok", result)
        except Exception as exc:
            outcome = describe(exc)
        trace.events["calls"].append((index, kind, outcome))
    await trace.settle()
    for sock in socks.values():
        trace.events["calls"].append(("end", loop.remove_reader(sock), loop.remove_writer(sock)))
        sock.close()
    return trace.events


@pytest.mark.parametrize("seed", SEEDS)
def test_an_fd_program_runs_as_on_asyncio(seed: int) -> None:
    same_on_both_loops(run_steps, (program(random.Random(seed)),), seed)


def test_the_programs_exercise_what_they_claim() -> None:
    seen: set[str] = set()
    for (steps,), trace in asyncio_traces(run_steps, lambda rng: (program(rng),),
                                          list(SEEDS)[:80]):
        for call in trace["calls"]:
            if call[0] != "end":
                step = steps[call[0]]
                name = f"{step[0]} {step[2]}" if step[0] == "bad" else step[0]
                seen.add(f"{name} {call[2][0]}")
                if step[0].startswith("remove"):
                    seen.add(f"{name} {call[2][1]}")
        for event in trace["fd"]:
            seen.add(event[0] if event[0] == "writer" or event[3] else "reader eof")
    assert_seen(("add_reader ok", "add_writer ok", "remove_reader True",
                 "remove_reader False", "remove_writer True", "remove_writer False",
                 "send ok", "send BrokenPipeError", "shutdown ok", "reader", "reader eof",
                 "writer", "bad negative ValueError", "bad text ValueError",
                 "bad no_fileno ValueError", "bad closed_number OSError",
                 "bad closed_socket ValueError"), seen)
