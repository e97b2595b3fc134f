"""Servers, differentially: generated programs of calls on an
``asyncio.Server`` and its connections, run on asyncio's loop and on
treadle's, must leave the same trace.

A program starts a TCP server on 127.0.0.1 (serving at once, or not until
``start_serving()``), then: connects clients (``create_connection()``),
sends from a client or from the server's side of a connection, closes or
aborts either side, ``close()``s the server, ``close_clients()`` and
``abort_clients()`` (3.13+, where asyncio has them), starts waiting in
``wait_closed()`` and in ``serve_forever()`` (as tasks) and cancels the
latter, and "settle" (run the loop until nothing has happened for 20
turns).  The trace records each connection's callbacks on both sides (its
data merged), for every call what it returned or raised, and after every
step ``is_serving()``, the number of listening sockets and which of the
waiting tasks have finished and how.

treadle-only: it compares the two loops.  When it was written: 300
programs the same on each of 3.11-3.15, once ``start_serving()`` of a
closed server raised asyncio's ``TypeError`` (it failed an assertion).
"""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

import pytest

from ..programs import Trace, assert_seen, asyncio_traces, describe, same_on_both_loops

pytestmark = pytest.mark.treadle

SEEDS = range(120)
PY313 = sys.version_info >= (3, 13)

Step = tuple[Any, ...]


def program(rng: random.Random) -> tuple[bool, list[Step]]:
    start_serving = rng.random() < 0.8
    kinds = (["connect"] * 4 + ["send"] * 3 + ["settle"] * 4
             + ["close_client", "abort_client", "close_server_side", "close",
                "start_serving", "wait_closed", "serve_forever", "cancel_serve_forever"]
             + (["close_clients", "abort_clients"] if PY313 else []))
    steps: list[Step] = []
    for _ in range(rng.randint(2, 14)):
        kind = rng.choice(kinds)
        steps.append((kind, rng.randint(0, 3), rng.choice("CS")))
    return start_serving, steps


class Side(asyncio.Protocol):
    def __init__(self, trace: Trace, name: str) -> None:
        self.trace = trace
        self.name = name
        self.transport: Any = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.trace.events.setdefault(self.name, [])
        self.trace.note(self.name, "made")

    def data_received(self, data: bytes) -> None:
        self.trace.note(self.name, "data", data)

    def eof_received(self) -> None:
        self.trace.note(self.name, "eof")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.trace.note(self.name, "lost", describe(exc))
        self.lost.set_result(None)


def _state(task: asyncio.Task[Any] | None) -> Any:
    if task is None:
        return None
    if not task.done():
        return "pending"
    if task.cancelled():
        return "cancelled"
    return describe(task.exception()) or ("ok", task.result())


async def run_steps(start_serving: bool, steps: list[Step]) -> dict[str, list[Any]]:
    loop = asyncio.get_running_loop()
    trace = Trace("")
    accepted: list[Side] = []

    def server_side() -> Side:
        side = Side(trace, f"S{len(accepted)}")
        accepted.append(side)
        return side
    server = await loop.create_server(server_side, "127.0.0.1", 0,
                                      start_serving=start_serving)
    port = server.sockets[0].getsockname()[1]
    clients: list[Side] = []
    waiting: asyncio.Task[Any] | None = None
    serving: asyncio.Task[Any] | None = None
    for index, (kind, which, side) in enumerate(steps):
        if kind == "settle":
            await trace.settle()
        else:
            try:
                if kind == "connect":
                    name = f"C{len(clients)}"
                    try:
                        # (a server not yet serving still completes the
                        # handshake from its backlog: the connection waits)
                        _, client = await asyncio.wait_for(loop.create_connection(
                            lambda: Side(trace, name), "127.0.0.1", port), 10)
                        clients.append(client)
                        result: Any = name
                    except OSError as exc:
                        result = ("refused", type(exc).__name__)
                elif kind in ("send", "close_client", "abort_client", "close_server_side"):
                    sides = clients if (side == "C" and kind == "send") or kind in (
                        "close_client", "abort_client") else accepted
                    if not sides:
                        continue
                    target = sides[which % len(sides)]
                    if kind == "send":
                        result = target.transport.write(f"{target.name}:{index};".encode())
                    elif kind == "abort_client":
                        result = target.transport.abort()
                    else:
                        result = target.transport.close()
                elif kind == "close":
                    result = server.close()
                elif kind == "close_clients":
                    result = server.close_clients()
                elif kind == "abort_clients":
                    result = server.abort_clients()
                elif kind == "start_serving":
                    result = await server.start_serving()
                elif kind == "wait_closed":
                    if waiting is None:
                        waiting = asyncio.create_task(server.wait_closed())
                    result = None
                elif kind == "serve_forever":
                    if serving is None:
                        serving = asyncio.create_task(server.serve_forever())
                    result = None
                else:       # cancel_serve_forever
                    result = serving.cancel() if serving is not None else None
                outcome: Any = ("ok", result)
            except Exception as exc:
                # (The type alone for start_serving() on a closed server:
                # asyncio's TypeError comes from iterating None.)
                outcome = type(exc).__name__ if kind == "start_serving" else describe(exc)
            trace.events["calls"].append((index, kind, outcome))
        await asyncio.sleep(0)
        trace.events["calls"].append((
            index, server.is_serving(), len(server.sockets), _state(waiting),
            _state(serving)))
    await trace.settle()
    # The end of every program: everything closed, and told so.
    for client in clients:
        client.transport.close()
    server.close()
    if serving is not None:
        serving.cancel()
    await asyncio.wait_for(server.wait_closed(), 10)
    await asyncio.wait_for(asyncio.gather(*(s.lost for s in clients + accepted)), 10)
    await trace.settle()
    trace.events["end"] = [_state(waiting), _state(serving)]
    return trace.events


@pytest.mark.parametrize("seed", SEEDS)
def test_a_server_program_runs_as_on_asyncio(seed: int) -> None:
    same_on_both_loops(run_steps, program(random.Random(seed)), seed)


def test_the_programs_exercise_what_they_claim() -> None:
    seen: set[str] = set()
    for _, trace in asyncio_traces(run_steps, program, list(SEEDS)[:60]):
        for key, events in trace.items():
            if key[:1] in ("C", "S") and key[1:].isdigit():
                for event in events:
                    seen.add(f"{key[0]} {event[0]}" if event[0] != "lost"
                             else f"{key[0]} lost {event[1] and event[1][0]}")
        for call in trace["calls"]:
            if isinstance(call[1], str):
                outcome = call[2]
                seen.add(f"{call[1]} {outcome if isinstance(outcome, str) else outcome[0]}")
            else:
                seen.add(f"serving {call[1]}")
                seen.add(f"wait_closed {call[3]}")
                seen.add(f"serve_forever {call[4]}")
        seen.add(f"end {trace['end']}")
    assert_seen(("C made", "C data", "C eof", "C lost None", "S made", "S data", "S eof",
                 "S lost None", "connect ok", "send ok", "close ok", "start_serving ok",
                 "start_serving TypeError", "serving True", "serving False",
                 "wait_closed pending", "wait_closed ('ok', None)",
                 "serve_forever pending", "serve_forever cancelled"), seen)
