"""Load: 1,000 concurrent connections each echo 1 MiB, written in random
chunk sizes, through a treadle server; every byte is checked.

Server and clients share one treadle loop (the machine may have two cores;
a second process would only add noise).  Each connection's payload is a
distinct rotation of one random MiB, so the test keeps 1 MiB of reference
data instead of 1 GiB, and checks each received chunk against its expected
slice as it arrives.  Bounded: it fails, rather than hangs, if the echo
does not finish within the deadline.
"""

from __future__ import annotations

import asyncio
import random
import resource

import pytest

import treadle

CONNECTIONS = 1000
SIZE = 1024 * 1024
DEADLINE = 240.0


class EchoServer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)

    def pause_writing(self):
        # The client is slow to read: stop reading until it catches up.
        self.transport.pause_reading()

    def resume_writing(self):
        self.transport.resume_reading()

    def eof_received(self):
        return False            # close once everything is echoed back


class Client(asyncio.Protocol):
    def __init__(self, payload: memoryview, rng: random.Random, done: asyncio.Future):
        self.payload = payload
        self.rng = rng
        self.sent = 0
        self.received = 0
        self.done = done
        self.paused = False
        self.error = None

    def connection_made(self, transport):
        self.transport = transport
        self.send_more()

    def send_more(self):
        while not self.paused and self.sent < SIZE:
            n = min(self.rng.randint(1, 65536), SIZE - self.sent)
            self.transport.write(self.payload[self.sent:self.sent + n])
            self.sent += n
        if self.sent == SIZE and not self.paused:
            self.transport.write_eof()
            self.sent += 1          # only once

    def pause_writing(self):
        self.paused = True

    def resume_writing(self):
        self.paused = False
        if self.sent < SIZE:
            self.send_more()
        elif self.sent == SIZE:
            self.send_more()

    def data_received(self, data):
        end = self.received + len(data)
        if end > SIZE or self.payload[self.received:end] != data:
            self.error = AssertionError(
                f"corrupt echo at bytes {self.received}..{end}")
            self.transport.abort()
            return
        self.received = end

    def connection_lost(self, exc):
        if self.done.done():
            return
        if self.error is not None:
            self.done.set_exception(self.error)
        elif exc is not None:
            self.done.set_exception(exc)
        elif self.received != SIZE:
            self.done.set_exception(AssertionError(
                f"echo ended after {self.received} of {SIZE} bytes"))
        else:
            self.done.set_result(self.received)


@pytest.mark.load
@pytest.mark.timeout(DEADLINE + 60)
def test_thousand_connections_echo_a_mebibyte_each():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * CONNECTIONS + 200
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} file descriptors, hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        with asyncio.Runner(loop_factory=treadle.new_event_loop) as runner:
            total = runner.run(asyncio.wait_for(_main(), DEADLINE))
        assert total == CONNECTIONS * SIZE
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def _main() -> int:
    loop = asyncio.get_running_loop()
    rng = random.Random(20261125)
    block = rng.randbytes(SIZE)
    server = await loop.create_server(EchoServer, "127.0.0.1", 0, backlog=CONNECTIONS)
    port = server.sockets[0].getsockname()[1]
    transports = []
    try:
        futures = []
        for i in range(CONNECTIONS):
            shift = (i * 7919) % SIZE
            payload = memoryview(block[shift:] + block[:shift])
            done = loop.create_future()
            tr, _ = await loop.create_connection(
                lambda p=payload, d=done, s=i: Client(p, random.Random(s), d),
                "127.0.0.1", port)
            transports.append(tr)
            futures.append(done)
        results = await asyncio.gather(*futures)
        return sum(results)
    finally:
        for tr in transports:
            tr.abort()
        server.close()
        await server.wait_closed()
