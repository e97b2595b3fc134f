"""Datagram transports, differentially: generated programs of calls on two
UDP endpoints, run on asyncio's loop and on treadle's, must leave the same
trace.

A program drives two endpoints on 127.0.0.1, A and B, each an
``asyncio.DatagramProtocol`` over ``create_datagram_endpoint()``: each one
is not connected, connected to the other before it is handed over
(``sock=``), or connected by ``remote_addr=`` (then only that address may be
named), chosen per program.
The steps: ``sendto`` with data of each bytes-like type, an ``array`` (a
buffer that is none of them), text and nothing, to the peer, to no address,
to an address of the wrong shape, to a closed port (whose ICMP error comes
back to a connected endpoint as ``error_received``); ``close``, ``abort``,
``pause_reading``/``resume_reading``, new write-buffer limits, and
"settle" (run the loop until nothing has happened for 20 turns).  An
endpoint may answer each datagram it receives from inside
``datagram_received``.  The trace records, per endpoint, every protocol
callback in order (datagrams with their sender, as "A", "B" or "other"),
and for every call what it returned or raised (type and message), then
``is_closing()`` and ``get_write_buffer_size()``.

Left out: datagrams the kernel drops (every send here fits in the
sockets' buffers, and nothing is sent while the receiver is paused long
enough to fill them); the message of ``sendto()`` on a closed transport
whose loop is gone (asyncio's fails on its own ``None``; treadle raises the
same ``AttributeError`` and says why).  treadle-only: it compares the two
loops.  When it was written: 400 programs the same on 3.11, 300 on each of
3.12-3.15; it found no difference.
"""

from __future__ import annotations

import asyncio
import random
import socket
from typing import Any

import pytest

from ..programs import Trace, assert_seen, asyncio_traces, payload, same_on_both_loops

pytestmark = pytest.mark.treadle

#: Seeds of the programs run on every test run.
SEEDS = range(120)
SIZES = (0, 1, 100, 8000)
FORMS = ("bytes", "bytes", "bytearray", "memoryview", "array", "str")
#: Where a sendto() goes: its peer, no address, nowhere (a closed port),
#: an address of the wrong shape.
TARGETS = ("peer", "peer", "none", "none", "closed", "bad")

Step = tuple[Any, ...]


def program(rng: random.Random) -> tuple[dict[str, Any], list[Step]]:
    answering = rng.choice("ABN")
    settings = {
        # Not connected, connected before create_datagram_endpoint(sock=),
        # or connected by it (remote_addr=: then only the peer may be named).
        "connected": {end: rng.choice(["no", "sock", "remote_addr"]) for end in "AB"},
        "answer": {end: end == answering for end in "AB"},
    }
    kinds = (["sendto"] * 8 + ["settle"] * 4
             + ["close", "abort", "pause_reading", "resume_reading", "limits"])
    steps: list[Step] = []
    for _ in range(rng.randint(2, 14)):
        kind = rng.choice(kinds)
        end = rng.choice("AB")
        if kind == "sendto":
            steps.append((kind, end, rng.choice(SIZES), rng.choice(FORMS), rng.choice(TARGETS)))
        elif kind == "limits":
            steps.append((kind, end, rng.choice([0, 100, 65_536])))
        else:
            steps.append((kind, end))
    return settings, steps


class Endpoint(asyncio.DatagramProtocol):
    def __init__(self, name: str, world: World, answer: bool) -> None:
        self.name = name
        self.world = world
        self.answer = answer
        self.transport: Any = None
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.world.note(self.name, "made")

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.world.note(self.name, "datagram", data, self.world.who(addr))
        if self.answer:
            self.transport.sendto(b"<" + data[:3].upper(), None if self.world.connected(self.name)
                                  else addr)

    def error_received(self, exc: Exception) -> None:
        self.world.note(self.name, "error", type(exc).__name__, str(exc))

    def pause_writing(self) -> None:
        self.world.note(self.name, "pause_writing")

    def resume_writing(self) -> None:
        self.world.note(self.name, "resume_writing")

    def connection_lost(self, exc: BaseException | None) -> None:
        self.world.note(self.name, "lost", None if exc is None else type(exc).__name__)
        self.lost.set_result(None)


class World(Trace):
    def __init__(self, settings: dict[str, Any]) -> None:
        super().__init__("AB")
        self.settings = settings
        self.addresses: dict[Any, str] = {}

    def who(self, addr: Any) -> str:
        return self.addresses.get(addr, "other")

    def connected(self, end: str) -> bool:
        return self.settings["connected"][end] != "no"


def _closed_port() -> tuple[str, int]:
    """A UDP port on 127.0.0.1 that nothing listens on (bound, then freed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()


async def run_steps(settings: dict[str, Any], steps: list[Step]) -> dict[str, list[Any]]:
    loop = asyncio.get_running_loop()
    world = World(settings)
    # Each endpoint's socket is bound first, so that a connected one can
    # name its peer; it is handed to create_datagram_endpoint(sock=), or,
    # for remote_addr=, its address is (freed and bound again there).
    socks = {}
    for end in "AB":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        socks[end] = sock
        world.addresses[sock.getsockname()] = end
    address = {end: sock.getsockname() for end, sock in socks.items()}
    closed = _closed_port()
    ends: dict[str, Endpoint] = {}
    for end, peer in (("A", "B"), ("B", "A")):
        mode = settings["connected"][end]

        def make(end: str = end) -> Endpoint:
            return Endpoint(end, world, settings["answer"][end])
        if mode == "remote_addr":
            socks[end].close()
            _, ends[end] = await loop.create_datagram_endpoint(
                make, local_addr=address[end], remote_addr=address[peer])
            continue
        if mode == "sock":
            socks[end].connect(address[peer])
        _, ends[end] = await loop.create_datagram_endpoint(make, sock=socks[end])
    await world.settle()
    for index, step in enumerate(steps):
        kind = step[0]
        if kind == "settle":
            await world.settle()
            continue
        name = step[1]
        transport = ends[name].transport
        try:
            if kind == "sendto":
                target = step[4]
                peer = address["B" if name == "A" else "A"]
                addr: Any = {"peer": peer, "none": None, "closed": closed,
                             "bad": ("127.0.0.1",)}[target]
                result = transport.sendto(payload(index, step[2], step[3]), addr)
            elif kind == "limits":
                result = transport.set_write_buffer_limits(high=step[2])
            else:
                result = getattr(transport, kind)()
            outcome: Any = ("ok", result)
        except AttributeError:
            # sendto() on a transport that is closed and gone: asyncio's
            # fails on its own None loop ("'NoneType' object has no
            # attribute ..."); treadle raises the same type and says why.
            outcome = "AttributeError"
        except Exception as exc:
            message = str(exc).replace(repr(closed), "<closed>")
            for end, addr in address.items():
                message = message.replace(repr(addr), f"<{end}>")
            outcome = (type(exc).__name__, message)
        world.events["calls"].append((index, name, kind, outcome, transport.is_closing(),
                                     transport.get_write_buffer_size()))
    await world.settle()
    for endpoint in ends.values():
        endpoint.transport.close()
    await asyncio.wait_for(asyncio.gather(*(e.lost for e in ends.values())), 10)
    return world.events


@pytest.mark.parametrize("seed", SEEDS)
def test_a_datagram_program_runs_as_on_asyncio(seed: int) -> None:
    same_on_both_loops(run_steps, program(random.Random(seed)), seed)


def test_the_programs_exercise_what_they_claim() -> None:
    seen: set[str] = set()
    for _, trace in asyncio_traces(run_steps, program, list(SEEDS)[:60]):
        for end in "AB":
            for event in trace[end]:
                seen.add(" ".join(map(str, event)) if event[0] in ("error", "lost")
                         else event[0])
                if event[0] == "datagram":
                    seen.add(f"from {event[2]}")
                    if event[1].startswith(b"<"):
                        seen.add("answer")
        for call in trace["calls"]:
            seen.add(f"{call[2]} {call[3] if isinstance(call[3], str) else call[3][0]}")
    assert_seen(("made", "datagram", "from A", "from B", "answer",
                 "error ConnectionRefusedError [Errno 111] Connection refused",
                 "lost None", "sendto ok", "sendto TypeError", "sendto ValueError",
                 "sendto AttributeError", "close ok", "abort ok", "pause_reading ok",
                 "resume_reading ok", "limits ok"), seen)
