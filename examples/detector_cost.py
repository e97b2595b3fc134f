"""What the blocking detector costs a busy loop, measured inside one process.

    python examples/detector_cost.py [--phases N] [--phase-seconds S]

Between two processes of the same program this machine's speed moves by
more than the detector costs (hash seeds, memory layout, the neighbours of
a shared VM), so the comparison is made inside one process: half-second
phases alternate with the detector on (the default threshold) and off
(``loop.blocking_threshold = None``: the watchdog then only refreshes its
coarse clock, four times a second), and each phase counts operations per
CPU-second of the loop's thread, which includes the thread switches the
watchdog's ticks cause.  Printed per workload: the median of the on/off
ratios of adjacent phases (1.000: no cost), its quartiles, and the ticks
per second seen in each kind of phase.

Workloads: ``call_soon`` (chained callbacks), ``switch`` (one task on
``sleep(0)``), ``echo`` (ten 1 KiB Protocol echo pairs over loopback TCP
on the same loop: every turn polls and releases the GIL).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Awaitable, Callable

import treadle
from treadle.observe import _watchdog

MESSAGE = b"x" * 1024


class _Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)  # type: ignore[attr-defined]


class _Client(asyncio.Protocol):
    round_trips = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.pending = 0
        transport.write(MESSAGE)  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        self.pending += len(data)
        if self.pending >= len(MESSAGE):
            self.pending -= len(MESSAGE)
            _Client.round_trips += 1
            self.transport.write(MESSAGE)  # type: ignore[attr-defined]


async def _call_soon(seconds: float) -> int:
    loop = asyncio.get_running_loop()
    done = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        finished = loop.create_future()
        left = 1000

        def step() -> None:
            nonlocal left
            left -= 1
            if left:
                loop.call_soon(step)
            else:
                finished.set_result(None)

        loop.call_soon(step)
        await finished
        done += 1000
    return done


async def _switch(seconds: float) -> int:
    done = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(1000):
            await asyncio.sleep(0)
        done += 1000
    return done


async def _echo(seconds: float) -> int:
    start = _Client.round_trips
    await asyncio.sleep(seconds)
    return _Client.round_trips - start


async def _measure(name: str, work: Callable[[float], Awaitable[int]],
                   phases: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    rates: dict[bool, list[float]] = {True: [], False: []}
    ticks: dict[bool, list[float]] = {True: [], False: []}
    for i in range(phases):
        for on in ((True, False) if i % 2 else (False, True)):
            loop.blocking_threshold = 0.1 if on else None
            await asyncio.sleep(0.02)          # the watchdog sees the change
            cpu0, wall0, ticks0 = time.thread_time(), time.monotonic(), _watchdog.ticks
            done = await work(seconds)
            rates[on].append(done / (time.thread_time() - cpu0))
            ticks[on].append((_watchdog.ticks - ticks0) / (time.monotonic() - wall0))
    ratios = sorted(a / b for a, b in zip(rates[True], rates[False]))
    q = len(ratios) // 4
    print(f"{name:10} on/off {statistics.median(ratios):.3f} "
          f"(quartiles {ratios[q]:.3f}-{ratios[-1 - q]:.3f}), "
          f"ticks/s on {statistics.median(ticks[True]):.0f}, "
          f"off {statistics.median(ticks[False]):.0f}")


async def main(phases: int, seconds: float) -> None:
    loop = asyncio.get_running_loop()
    await _measure("call_soon", _call_soon, phases, seconds)
    await _measure("switch", _switch, phases, seconds)
    server = await loop.create_server(_Echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    clients = [await loop.create_connection(_Client, "127.0.0.1", port) for _ in range(10)]
    try:
        await _measure("echo", _echo, phases, seconds)
    finally:
        for transport, _ in clients:
            transport.close()
        server.close()
        await server.wait_closed()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phases", type=int, default=20, help="pairs of phases (default 20)")
    parser.add_argument("--phase-seconds", type=float, default=0.5)
    args = parser.parse_args()
    treadle.run(main(args.phases, args.phase_seconds))
