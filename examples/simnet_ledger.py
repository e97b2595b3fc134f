"""A deposit service with a bug that only a crash-restart shows, found and
replayed with treadle's simulated network.

The ledger server keeps a balance on its disk.  Each ``DEPOSIT n`` adds n,
writes the new balance and answers ``OK <balance>``; a background task
syncs the disk every second (group commit: one fsync for many writes).
The client deposits 1, twenty times, reconnecting and retrying when the
connection fails, and counts the deposits the server acknowledged.

The promise: an acknowledged deposit is never lost.  The bug: the server
answers before its write is synced, so a crash in the second after an
answer loses a deposit the client was told about.  Every test without
crashes passes; so do most runs with them.

    python examples/simnet_ledger.py            # explore seeds, print the failure
    pytest --treadle-shuffle=30 examples/simnet_ledger.py   # the same, in pytest
    pytest --treadle-seed=N examples/simnet_ledger.py       # replay seed N

The fix is one line: sync before answering (``SYNC_BEFORE_REPLY = True``).
"""

from __future__ import annotations

import asyncio

#: The fix.  False is the bug: answer first, sync within the second.
SYNC_BEFORE_REPLY = False
PORT = 9000
DEPOSITS = 20


async def ledger_server(host) -> None:
    """The server's main: runs on the ledger host, again after a restart."""
    disk = host.disk
    balance = int(disk.read("balance", b"0"))

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal balance
        try:
            while line := await reader.readline():
                command, amount = line.split()
                if command != b"DEPOSIT":
                    writer.write(b"ERR\n")
                    continue
                balance += int(amount)
                disk.write("balance", b"%d" % balance)
                if SYNC_BEFORE_REPLY:
                    disk.sync()
                writer.write(b"OK %d\n" % balance)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def group_commit() -> None:
        while True:
            await asyncio.sleep(1.0)
            disk.sync()

    syncing = asyncio.create_task(group_commit())
    server = await asyncio.start_server(handle, None, PORT)
    try:
        async with server:
            await server.serve_forever()
    finally:
        syncing.cancel()


async def depositor() -> int:
    """Deposit 1, DEPOSITS times, retrying on failures; return how many
    deposits the server acknowledged."""
    acknowledged = 0
    while acknowledged < DEPOSITS:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("ledger", PORT), 2.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.5)
            continue
        try:
            while acknowledged < DEPOSITS:
                writer.write(b"DEPOSIT 1\n")
                reply = await asyncio.wait_for(reader.readline(), 2.0)
                if not reply.startswith(b"OK "):
                    raise ConnectionError("the ledger went away")
                acknowledged += 1
                await asyncio.sleep(0.1)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.5)
        finally:
            writer.close()
    return acknowledged


async def scenario(net) -> None:
    """Two hosts; crashes of the ledger drawn from the seed."""
    ledger = net.add_host("ledger")
    client = net.add_host("client")
    ledger.start(ledger_server, ledger)
    net.random_faults(kinds=("crash",), hosts=["ledger"], every=0.5, probability=0.05,
                      duration=1.0)
    await asyncio.sleep(0.01)
    acknowledged = await client.run(depositor())
    balance = int(ledger.disk.read("balance", b"0"))
    assert balance >= acknowledged, (
        f"lost acknowledged deposits: the client was told {acknowledged}, "
        f"the ledger has {balance}")


async def test_acknowledged_deposits_survive_crashes(treadle_net):
    """The example as a pytest test (``treadle_net`` makes it a treadle
    test; its seed comes from --treadle-seed/--treadle-shuffle)."""
    await scenario(treadle_net)


def main() -> None:
    from treadle.testing.simnet import explore, replay
    found = explore(scenario, strategy="random", runs=100)
    if not found.found:
        print(f"no failure in {found.runs} seeds")
        return
    print(f"seed {found.seed} fails (run {found.runs} of the exploration): {found.failure}")
    print(f"rerun: pytest --treadle-seed={found.seed} {__file__}")
    print(f"shrunk from {found.original_deviations} to {len(found.deviations)} "
          f"deviation(s): replay({found.replay!r})")
    try:
        replay(scenario, found.replay)
    except AssertionError as exc:
        print(f"replayed: {exc}")


if __name__ == "__main__":
    main()
