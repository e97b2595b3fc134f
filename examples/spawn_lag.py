"""How long the loop stalls while a process with a large heap spawns
children.

A ticker task sleeps 1 ms at a time and records how late each wake-up is;
meanwhile 100 children (``true``) are spawned, ten at a time.  With the
heap resident, every ``fork`` copies its page tables, which takes
milliseconds per GiB; asyncio forks on the loop thread, treadle in a thread
of its own.

    python examples/spawn_lag.py asyncio 1024
    python examples/spawn_lag.py treadle 1024      # MiB of resident heap
    python examples/spawn_lag.py treadle 1024 fork # a full fork per child

Without ``fork`` ``subprocess`` uses ``vfork``, which copies no page
tables; a ``preexec_fn`` (here one that does nothing) makes it fork.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time


async def main(children: int, fork: bool) -> tuple[float, float, float, float]:
    lateness: list[float] = []
    stop = False

    async def ticker() -> None:
        while not stop:
            t0 = time.perf_counter()
            await asyncio.sleep(0.001)
            lateness.append(time.perf_counter() - t0 - 0.001)

    async def spawn() -> None:
        if fork:
            proc = await asyncio.create_subprocess_exec("true", preexec_fn=_nothing)
        else:
            proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.05)
    lateness.clear()
    t0 = time.perf_counter()
    for _ in range(children // 10):
        await asyncio.gather(*(spawn() for _ in range(10)))
    elapsed = time.perf_counter() - t0
    stop = True
    await tick
    lateness.sort()
    p99 = lateness[int(len(lateness) * 0.99)]
    return elapsed, statistics.median(lateness), p99, lateness[-1]


def _nothing() -> None:
    pass


def run() -> None:
    loop_name = sys.argv[1] if len(sys.argv) > 1 else "treadle"
    heap_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    fork = "fork" in sys.argv[3:]
    heap = bytearray(heap_mib << 20)          # zero pages, made resident below
    for i in range(0, len(heap), 4096):
        heap[i] = 1
    if loop_name == "treadle":
        import treadle
        factory = treadle.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        elapsed, p50, p99, worst = runner.run(main(100, fork))
    how = "fork" if fork else "vfork"
    print(f"{loop_name}: heap {heap_mib} MiB, {how}, 100 spawns in {elapsed * 1e3:.0f} ms; "
          f"ticker lateness p50 {p50 * 1e3:.2f} ms, p99 {p99 * 1e3:.2f} ms, "
          f"worst {worst * 1e3:.1f} ms")
    del heap


if __name__ == "__main__":
    run()
