"""A small asyncio service with a few things wrong, to look at with
`treadle ps`, `treadle pstree` and `treadle top`:

    treadle run examples/kitchen.py &
    treadle ps $!            # every task: state, what it waits on, who awaits it
    treadle pstree $!        # the same as a tree
    treadle top $!           # live timing per task and per loop

Plain asyncio: it also runs with `python examples/kitchen.py`.  It runs for a
minute, then stops.
"""

import asyncio
import hashlib
import os
import time


async def cook(orders: asyncio.Queue, stove: asyncio.Lock, name: str) -> None:
    while True:
        order = await orders.get()
        async with stove:                   # one cook at the stove at a time
            await asyncio.sleep(0.05 * order)
        orders.task_done()


async def waiter(orders: asyncio.Queue) -> None:
    for order in range(1, 10_000):
        await orders.put(order % 4 + 1)
        await asyncio.sleep(0.1)


async def dishwasher() -> None:
    while True:
        await asyncio.sleep(0)              # yields, but only to itself
        hashlib.sha256(b"plate" * 2000).digest()


async def inspector() -> None:
    while True:
        await asyncio.sleep(2)
        time.sleep(0.3)                     # a blocking call on the loop


async def delivery() -> None:
    # Waits for a future that nothing will ever complete.
    await asyncio.get_running_loop().create_future()


async def main() -> None:
    print(f"kitchen open, pid {os.getpid()}", flush=True)
    orders: asyncio.Queue = asyncio.Queue(maxsize=5)
    stove = asyncio.Lock()
    try:
        async with asyncio.timeout(60), asyncio.TaskGroup() as tg:
            for n in range(3):
                tg.create_task(cook(orders, stove, f"cook-{n}"), name=f"cook-{n}")
            tg.create_task(waiter(orders), name="waiter")
            tg.create_task(dishwasher(), name="dishwasher")
            tg.create_task(inspector(), name="inspector")
            tg.create_task(delivery(), name="delivery")
    except TimeoutError:
        print("kitchen closed")


if __name__ == "__main__":
    asyncio.run(main())
