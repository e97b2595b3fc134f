"""The ``simnet`` workload: how fast treadle's simulated network runs.

Owns: a scenario of many hosts and connections on
``treadle.testing.simnet`` - servers answering requests over asyncio
streams, clients sending one every *interval* virtual seconds (with
jitter on every link) - and its measure: simulated deliveries (TCP
segments and datagrams handed to a receiver) per real second.
Never: runs on another loop: the simulation is treadle's, so asyncio's and
uvloop's columns show n/a.

The full size is the scenario of the simulation's README section: 50 hosts,
1,000 connections, 10 simulated minutes.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any


def scenario_result(hosts: int, connections: int, minutes: float, interval: float,
                    seed: int = 1) -> dict[str, Any]:
    """Run the scenario; real seconds, virtual seconds and deliveries."""
    from ..testing.simnet import SimNetwork

    servers = max(1, hosts // 5)
    clients = hosts - servers
    per_client = max(1, connections // clients)
    duration = minutes * 60.0
    done = [0]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                writer.write(b"ok " + line)
                await writer.drain()
        finally:
            writer.close()

    async def serve() -> None:
        server = await asyncio.start_server(handle, None, 80)
        async with server:
            await server.serve_forever()

    async def connection(target: str, offset: float) -> None:
        loop = asyncio.get_running_loop()
        reader, writer = await asyncio.open_connection(target, 80)
        await asyncio.sleep(offset)
        end = loop.time() + duration
        payload = b"x" * 90 + b"\n"
        while loop.time() < end:
            writer.write(payload)
            await reader.readline()
            done[0] += 1
            await asyncio.sleep(interval)
        writer.close()

    async def main(net: SimNetwork) -> None:
        names = [f"s{i}" for i in range(servers)]
        for name in names:
            net.add_host(name).start(serve)
        client_hosts = [net.add_host(f"c{i}") for i in range(clients)]
        await asyncio.sleep(0)
        tasks = []
        for i, host in enumerate(client_hosts):
            for j in range(per_client):
                target = names[(i * per_client + j) % servers]
                offset = interval * ((i * per_client + j) % 97) / 97
                tasks.append(host.spawn(connection(target, offset)))
        await asyncio.gather(*tasks)

    net = SimNetwork(seed, jitter=0.002, log_tail=1, fake_time=False, fake_random=False)
    start = time.perf_counter()
    cpu = time.process_time()
    net.run(main)
    wall = time.perf_counter() - start
    return {"wall_s": wall, "cpu_s": time.process_time() - cpu,
            "virtual_s": net._now(), "deliveries": net.deliveries,
            "round_trips": done[0], "hosts": hosts,
            "connections": clients * per_client}


def simnet(factory: Any, p: dict[str, Any]) -> dict[str, Any]:
    """The bench workload: the scenario above at *p*'s size; the value is
    simulated deliveries per real second."""
    from ._workloads import NotApplicable, _is_treadle_loop
    probe = factory()
    native = _is_treadle_loop(probe)
    probe.close()
    if not native:
        raise NotApplicable("the simulated network is treadle's (treadle.testing.simnet)")
    result = scenario_result(int(p["hosts"]), int(p["connections"]), float(p["minutes"]),
                             float(p["interval"]))
    wall = result["wall_s"]
    cpu = result["cpu_s"]
    deliveries = result["deliveries"]
    return {"value": deliveries / wall if wall > 0 else None, "ops": deliveries,
            "wall_s": wall, "cpu_s": cpu,
            "ops_per_cpu_s": deliveries / cpu if cpu > 0 else None,
            "extra": {k: result[k] for k in ("virtual_s", "round_trips", "hosts",
                                             "connections")}}
