"""Scenarios shared by the determinism tests (module level: the
cross-process check imports them in a fresh interpreter)."""

from __future__ import annotations

import asyncio
import datetime
import itertools
import random
import time
import uuid


async def chatter(net):
    """Three clients, a server, jitter and loss, a partition: lots of
    decisions."""
    net.configure_link("server", "c0", jitter=0.01)
    server = net.add_host("server") if "server" not in net.hosts else net.hosts["server"]

    async def handle(reader, writer):
        while line := await reader.readline():
            writer.write(b"%d:" % random.randrange(1000) + line)
            await writer.drain()
        writer.close()

    async def serve():
        srv = await asyncio.start_server(handle, None, 80)
        async with srv:
            await srv.serve_forever()

    server.start(serve)
    await asyncio.sleep(0)

    async def client(i):
        reader, writer = await asyncio.open_connection("server", 80)
        out = []
        for j in range(5):
            writer.write(b"%d-%d %s\n" % (i, j, uuid.uuid4().hex[:6].encode()))
            out.append(await reader.readline())
            await asyncio.sleep(random.random() / 10)
        writer.close()
        return out, time.time(), datetime.datetime.now().isoformat()

    net.schedule("at 0.2 partition server c1\nat 0.9 heal")
    tasks = [net.hosts[f"c{i}"].spawn(client(i)) for i in range(3)]
    return await asyncio.gather(*tasks)


def setup_chatter(net):
    net.add_host("server")
    for i in range(3):
        net.add_host(f"c{i}")


async def chatter_scenario(net):
    setup_chatter(net)
    return await chatter(net)


_runs = itertools.count()


async def leaky_scenario(net):
    """Reaches a source of nondeterminism the simulation does not close:
    state kept between runs (a module-level counter)."""
    a = net.add_host("a")
    run = next(_runs)

    async def work(i):
        await asyncio.sleep(0.001 * ((i + run) % 3))

    async def all_work():
        await asyncio.gather(*(work(i) for i in range(5)))

    await a.run(all_work())


def make_race(rounds):
    """A known rare race: five workers step together; the bug needs the
    last-created worker to run first in each of *rounds* (as when a late
    reader overtakes the writers that many times).  Seeded shuffling finds
    it with probability (1/5) ** len(rounds) a run."""

    async def race(net):
        host = net.add_host("app")
        firsts: dict[int, int] = {}

        async def worker(i):
            for step in range(10):
                firsts.setdefault(step, i)
                await asyncio.sleep(0)

        async def main():
            await asyncio.gather(*(worker(i) for i in range(5)))

        await host.run(main())
        if all(firsts[r] == 4 for r in rounds):
            raise AssertionError("the late worker overtook the others")

    return race


rare_race = make_race((2, 5, 8))
simple_race = make_race((5,))
