"""The loop's ``sock_*`` methods, differentially: generated programs of
``sock_recv``/``sock_recv_into``/``sock_sendall`` calls on a connected pair
of sockets, some cancelled, run on asyncio's loop and on treadle's, must
leave the same trace.

Each step starts a call as a task (a receive of a few sizes on either end,
a send of a few sizes and types), cancels the oldest unfinished task, shuts
an end's sending side down (``shutdown(SHUT_WR)``), or settles (runs the
loop until nothing has finished for 20 turns).  The trace records each
task's outcome - the bytes received, the count received into a buffer and
those bytes, ``None`` for a send, the exception's type and message, or
"cancelled" - and, at every settle, which tasks are still pending.  At the
end the pending tasks are cancelled and what the two ends still hold is
read.

Calls may wait on the same end at once: asyncio keeps one reader and one
writer callback per file descriptor, so a second receive started while one
waits takes its place and the first stays pending until it is cancelled;
treadle's must do the same.  treadle-only: it compares the two loops.
When it was written: 300 programs the same on each of 3.11-3.15; it found
no difference.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any, Callable

import pytest

from ..programs import (FORMS, Trace, assert_seen, asyncio_traces,
                        describe, payload, same_on_both_loops)

pytestmark = pytest.mark.treadle

SEEDS = range(120)
SIZES = (0, 1, 100, 5000)

Step = tuple[Any, ...]


def program(rng: random.Random) -> list[Step]:
    kinds = ["recv"] * 3 + ["recv_into"] * 2 + ["sendall"] * 4 + ["settle"] * 3 + [
        "cancel", "shutdown"]
    steps: list[Step] = []
    for _ in range(rng.randint(2, 16)):
        kind = rng.choice(kinds)
        end = rng.choice("AB")
        if kind in ("recv", "recv_into"):
            steps.append((kind, end, rng.choice(SIZES[1:])))
        elif kind == "sendall":
            steps.append((kind, end, rng.choice(SIZES), rng.choice(FORMS)))
        else:
            steps.append((kind, end))
    return steps


def _outcome(task: asyncio.Task[Any]) -> Any:
    if task.cancelled():
        return "cancelled"
    exc = task.exception()
    return describe(exc) if exc is not None else ("ok", task.result())


async def run_steps(steps: list[Step]) -> dict[str, list[Any]]:
    loop = asyncio.get_running_loop()
    trace = Trace("")
    a, b = socket.socketpair()
    for sock in (a, b):
        sock.setblocking(False)
    socks = {"A": a, "B": b}
    tasks: list[tuple[int, str, asyncio.Task[Any]]] = []

    def finished(index: int) -> Callable[[asyncio.Task[Any]], None]:
        def record(task: asyncio.Task[Any]) -> None:
            trace.quiet = 0
            trace.events["calls"].append((index, _outcome(task)))
        return record

    async def recv_into(sock: socket.socket, n: int) -> tuple[int, bytes]:
        buf = bytearray(n)
        count = await loop.sock_recv_into(sock, buf)
        return count, bytes(buf[:count])

    for index, step in enumerate(steps):
        kind, end = step[0], step[1]
        sock = socks[end]
        if kind == "settle":
            await trace.settle()
            trace.events["calls"].append(
                (index, "pending", [i for i, _, t in tasks if not t.done()]))
            continue
        if kind == "cancel":
            for i, _, task in tasks:
                if not task.done():
                    trace.events["calls"].append((index, "cancel", i, task.cancel()))
                    break
            continue
        if kind == "shutdown":
            sock.shutdown(socket.SHUT_WR)
            continue
        if kind == "recv":
            coro: Any = loop.sock_recv(sock, step[2])
        elif kind == "recv_into":
            coro = recv_into(sock, step[2])
        else:
            coro = loop.sock_sendall(sock, payload(index, step[2], step[3]))
        task = asyncio.ensure_future(coro)
        task.add_done_callback(finished(index))
        tasks.append((index, kind, task))
    await trace.settle()
    for _, _, task in tasks:
        task.cancel()
    await asyncio.gather(*(t for _, _, t in tasks), return_exceptions=True)
    # What the two ends still hold, read without the loop.
    for end, sock in socks.items():
        left = b""
        try:
            while chunk := sock.recv(65536):
                left += chunk
        except (BlockingIOError, OSError):
            pass
        trace.events[f"left {end}"] = [left]
    a.close()
    b.close()
    return trace.events


@pytest.mark.parametrize("seed", SEEDS)
def test_a_sock_program_runs_as_on_asyncio(seed: int) -> None:
    same_on_both_loops(run_steps, (program(random.Random(seed)),), seed)


def test_the_programs_exercise_what_they_claim() -> None:
    seen: set[str] = set()
    for (steps,), trace in asyncio_traces(run_steps, lambda rng: (program(rng),),
                                          list(SEEDS)[:60]):
        for call in trace["calls"]:
            if call[1] == "pending":
                seen.add("pending" if call[2] else "none pending")
            elif call[1] == "cancel":
                seen.add("cancel")
            else:
                kind = steps[call[0]][0]
                outcome = call[1]
                seen.add(f"{kind} {outcome if isinstance(outcome, str) else outcome[0]}")
                if kind == "recv" and outcome == ("ok", b""):
                    seen.add("recv eof")
        seen.update("left" for end in "AB" if trace[f"left {end}"][0])
    assert_seen(("recv ok", "recv eof", "recv cancelled", "recv_into ok",
                 "recv_into cancelled", "sendall ok", "sendall TypeError", "cancel",
                 "pending", "none pending", "left"), seen)
