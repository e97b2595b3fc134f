"""Same seed, same run: the determinism check, the replacements for clocks
and randomness, executors."""

from __future__ import annotations

import asyncio
import datetime
import random
import threading
import time
import uuid

import pytest

from treadle.testing.simnet import NondeterminismError, SimNetwork, check_determinism

from . import scenarios


def test_same_seed_same_run():
    a = SimNetwork(seed=7, keep_events=True)
    b = SimNetwork(seed=7, keep_events=True)
    result_a = a.run(scenarios.chatter_scenario)
    result_b = b.run(scenarios.chatter_scenario)
    assert result_a == result_b
    assert a.log.events() == b.log.events()
    assert a.log.digest() == b.log.digest()
    other = SimNetwork(seed=8)
    assert other.run(scenarios.chatter_scenario) != result_a


def test_determinism_check_passes_and_counts_events():
    assert check_determinism(scenarios.chatter_scenario, seed=3) > 50


def test_determinism_check_names_the_first_difference():
    with pytest.raises(NondeterminismError) as info:
        check_determinism(scenarios.leaky_scenario, seed=1, runs=5)
    message = str(info.value)
    assert "differ at event #" in message
    assert "run 1:" in message


def test_determinism_across_processes_with_different_hash_seeds():
    assert check_determinism(scenarios.chatter_scenario, seed=11, processes=True) > 50


def test_clocks_and_randomness_follow_the_simulation():
    seen = []

    async def main(net):
        a = net.add_host("a")

        async def look():
            await asyncio.sleep(60)
            seen.append((time.time(), datetime.datetime.now(datetime.timezone.utc),
                         random.random(), uuid.uuid4(), time.monotonic()))
        await a.run(look())

    state = random.getstate()
    real_now = time.time()
    SimNetwork(seed=5).run(main)
    SimNetwork(seed=5).run(main)
    assert seen[0] == seen[1]
    assert seen[0][0] == 1_700_000_060.0
    assert seen[0][1] == datetime.datetime(2023, 11, 14, 22, 14, 20,
                                           tzinfo=datetime.timezone.utc)
    # everything is real again afterwards
    assert random.getstate() == state
    assert abs(time.time() - real_now) < 60
    assert datetime.datetime.now().year >= 2024
    assert isinstance(datetime.datetime.now(), datetime.datetime)


def test_clock_replacements_can_be_switched_off():
    seen = []

    async def main(net):
        seen.append(time.time())

    SimNetwork(fake_time=False).run(main)
    assert abs(seen[0] - time.time()) < 60


def test_real_datetimes_still_pass_isinstance_inside_a_run():
    made_outside = datetime.datetime(2020, 1, 1)

    async def main(net):
        assert isinstance(made_outside, datetime.datetime)
        assert isinstance(datetime.datetime.now(), datetime.datetime)
        assert isinstance(datetime.date.today(), datetime.date)
        return datetime.datetime.now() - made_outside

    assert SimNetwork().run(main).days > 1000


def test_executor_work_completes_at_a_deterministic_point():
    def run(seed):
        order = []

        async def main(net):
            a = net.add_host("a")

            def slow(i):
                time.sleep(0.002 * (5 - i))      # real time: finishes in reverse
                return threading.current_thread().name

            async def one(i):
                name = await asyncio.to_thread(slow, i)
                order.append(i)
                return name

            async def all_of_them():
                return await asyncio.gather(*(one(i) for i in range(5)))

            names = await a.run(all_of_them())
            assert all(n != threading.current_thread().name for n in names)

        net = SimNetwork(seed=seed, keep_events=True, log_steps=True)
        net.run(main)
        return order, net.log.digest()

    first = run(2)
    assert run(2) == first


def test_the_end_of_a_run_lets_cleanup_finish():
    # When the scenario returns, a server still has a connection open (3.12
    # and 3.13's cancelled serve_forever() wait for it in wait_closed()),
    # and its handler's cleanup starts a task and waits for it, shielded, as
    # websockets' close does: run() still returns.
    async def scenario(net):
        server = net.add_host("server")
        client = net.add_host("client")
        cleanups = []

        async def handle(reader, writer):
            try:
                await reader.read()
            finally:
                done = asyncio.get_running_loop().create_future()

                async def goodbye():
                    writer.close()
                    try:
                        await writer.wait_closed()
                    except OSError:
                        pass
                    done.set_result(None)
                cleanups.append(asyncio.create_task(goodbye()))
                await asyncio.shield(done)

        async def serve():
            srv = await asyncio.start_server(handle, None, 80)
            async with srv:
                await srv.serve_forever()

        server.start(serve)
        await asyncio.sleep(0.1)

        async def connect():
            return await asyncio.open_connection("server", 80)
        streams = await client.run(connect())
        await asyncio.sleep(0.1)
        return streams is not None

    assert SimNetwork(seed=1).run(scenario) is True
