"""TCP over the simulated network, through asyncio's streams and protocols,
on simulated hosts (treadle-only feature: these run on treadle's loop)."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat

import pytest

from treadle.testing.simnet import SimNetwork, SimulationError, current_host

pytestmark = pytest.mark.treadle


async def echo_server(port: int = 7) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, None, port)
    async with server:
        await server.serve_forever()


async def test_streams_between_two_hosts(treadle_net):
    server = treadle_net.add_host("server", "10.1.0.1")
    client = treadle_net.add_host("client", "10.1.0.2")
    server.start(echo_server)
    await asyncio.sleep(0)

    async def talk():
        assert current_host() is client
        reader, writer = await asyncio.open_connection("server", 7)
        assert writer.get_extra_info("peername") == ("10.1.0.1", 7)
        assert writer.get_extra_info("sockname")[0] == "10.1.0.2"
        payload = bytes(range(256)) * 1000
        writer.write(payload)
        await writer.drain()
        got = await reader.readexactly(len(payload))
        writer.close()
        await writer.wait_closed()
        return got == payload

    assert await client.run(talk())
    loop = asyncio.get_running_loop()
    assert loop.time() > 0     # latency took virtual time


async def test_refused_unreachable_and_unknown_names(treadle_net):
    treadle_net.add_host("server", "10.1.0.1")
    client = treadle_net.add_host("client", "10.1.0.2")

    async def attempts():
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("server", 80)
        with pytest.raises(socket.gaierror) as info:
            await asyncio.open_connection("nosuchhost", 80)
        assert info.value.errno == socket.EAI_NONAME
        with pytest.raises(OSError) as info2:
            await asyncio.open_connection("10.9.9.9", 80)
        assert "Connect call failed" in str(info2.value)

    await client.run(attempts())


async def test_connect_times_out_through_a_partition(treadle_net):
    server = treadle_net.add_host("server")
    client = treadle_net.add_host("client")
    server.start(echo_server)
    treadle_net.partition("server", "client")
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        await client.run(asyncio.open_connection("server", 7))
    assert loop.time() - start == pytest.approx(127.0)


async def test_partition_then_heal_delivers_late(treadle_net):
    server = treadle_net.add_host("server")
    client = treadle_net.add_host("client")
    server.start(echo_server)
    await asyncio.sleep(0)
    reader, writer = await client.run(asyncio.open_connection("server", 7))
    treadle_net.partition("server", "client")
    loop = asyncio.get_running_loop()
    loop.call_later(30, treadle_net.heal)
    writer.write(b"ping")
    start = loop.time()
    assert await client.run(reader.readexactly(4)) == b"ping"
    assert loop.time() - start >= 30
    writer.close()


async def test_partition_longer_than_tcp_timeout_fails_the_connection(treadle_net):
    treadle_net.tcp_timeout = 60.0
    server = treadle_net.add_host("server")
    client = treadle_net.add_host("client")
    server.start(echo_server)
    await asyncio.sleep(0)

    async def stuck():
        reader, writer = await asyncio.open_connection("server", 7)
        treadle_net.partition("server", "client")
        writer.write(b"x" * 100)
        return await reader.read(100)

    with pytest.raises(TimeoutError):
        await client.run(stuck())


async def test_crash_and_restart(treadle_net):
    server = treadle_net.add_host("server")
    client = treadle_net.add_host("client")
    starts = []

    async def serve():
        starts.append(asyncio.get_running_loop().time())
        await echo_server()

    server.start(serve)
    await asyncio.sleep(0)
    reader, writer = await client.run(asyncio.open_connection("server", 7))
    writer.write(b"a")
    assert await client.run(reader.readexactly(1)) == b"a"
    treadle_net.crash("server")
    assert not server.up
    # the server's sockets vanished: our data goes nowhere until restart,
    # then the new life answers with RST
    asyncio.get_running_loop().call_later(5, treadle_net.restart, "server")
    writer.write(b"b")
    with pytest.raises(ConnectionResetError):
        await client.run(reader.readexactly(1))
    assert len(starts) == 2
    r2, w2 = await client.run(asyncio.open_connection("server", 7))
    w2.write(b"c")
    assert await client.run(r2.readexactly(1)) == b"c"
    w2.close()


async def test_flow_control_pauses_a_writer(treadle_net):
    a = treadle_net.add_host("a")
    b = treadle_net.add_host("b")
    got = asyncio.Event()
    paused = []

    class Slow(asyncio.Protocol):
        def connection_made(self, transport):
            transport.pause_reading()      # a reader that does not read
            got.set()

    class Fast(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def pause_writing(self):
            paused.append(self.transport.get_write_buffer_size())

    async def serve():
        await asyncio.get_running_loop().create_server(Slow, None, 9)
        await asyncio.sleep(3600)

    a.start(serve)
    await asyncio.sleep(0)

    async def flood():
        loop = asyncio.get_running_loop()
        transport, proto = await loop.create_connection(Fast, "a", 9)
        await got.wait()
        for _ in range(100):
            transport.write(b"x" * 10000)
        await asyncio.sleep(1)
        size = transport.get_write_buffer_size()
        transport.abort()
        return size

    size = await b.run(flood())
    assert paused and size > 0
    # what the kernels hold (send + receive buffers) is bounded
    assert size >= 1_000_000 - treadle_net.sndbuf - treadle_net.rcvbuf


async def test_half_close(treadle_net):
    a = treadle_net.add_host("a")
    b = treadle_net.add_host("b")

    async def serve():
        async def handle(reader, writer):
            data = await reader.read()          # until EOF
            writer.write(data[::-1])
            await writer.drain()
            writer.close()
        await asyncio.start_server(handle, None, 5)
        await asyncio.sleep(3600)

    a.start(serve)
    await asyncio.sleep(0)

    async def talk():
        reader, writer = await asyncio.open_connection("a", 5)
        writer.write(b"abc")
        writer.write_eof()
        reply = await reader.read()
        writer.close()
        return reply

    assert await b.run(talk()) == b"cba"


async def test_backlog_full_delays_connections(treadle_net):
    a = treadle_net.add_host("a")
    b = treadle_net.add_host("b")

    async def serve():
        sock = a.socket()
        sock.bind(("0.0.0.0", 6))
        sock.listen(1)
        await asyncio.sleep(10)     # not accepting for 10 s
        loop = asyncio.get_running_loop()
        conns = []
        for _ in range(2):
            conn, _ = await loop.sock_accept(sock)
            conns.append(conn)
        await asyncio.sleep(3600)

    a.start(serve)
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    start = loop.time()

    writers = []

    async def connect():
        r, w = await asyncio.open_connection("a", 6)
        writers.append(w)
        return loop.time() - start

    t1, t2 = sorted(await asyncio.gather(b.spawn(connect()), b.spawn(connect())))
    assert t1 < 1            # in the backlog at once
    assert t2 > 10           # SYN dropped until the server accepted


async def test_sock_api_on_simulated_sockets(treadle_net):
    a = treadle_net.add_host("a", "10.2.0.1")
    b = treadle_net.add_host("b", "10.2.0.2")
    loop = asyncio.get_running_loop()

    async def serve():
        sock = a.socket()
        sock.bind(("", 4000))
        sock.listen()
        conn, addr = await loop.sock_accept(sock)
        assert addr[0] == "10.2.0.2"
        data = await loop.sock_recv(conn, 100)
        await loop.sock_sendall(conn, data * 2)
        conn.close()
        sock.close()

    async def client():
        sock = b.socket()
        await loop.sock_connect(sock, ("a", 4000))
        await loop.sock_sendall(sock, b"hi")
        out = b""
        while chunk := await loop.sock_recv(sock, 100):
            out += chunk
        sock.close()
        return out

    a.spawn(serve())
    assert await b.run(client()) == b"hihi"


async def test_create_connection_arguments_on_a_host(treadle_net):
    # The real loop's create_connection() runs on a host: local_addr, Happy
    # Eyeballs, its argument checks, and connect_accepted_socket() on a
    # simulated socket.
    a = treadle_net.add_host("a", "10.3.0.1")
    b = treadle_net.add_host("b", "10.3.0.2")
    a.start(echo_server)
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()

    async def client():
        transport, _ = await loop.create_connection(
            asyncio.Protocol, "a", 7, local_addr=("10.3.0.2", 5555),
            happy_eyeballs_delay=0.25)
        assert transport.get_extra_info("sockname") == ("10.3.0.2", 5555)
        transport.close()
        with pytest.raises(AttributeError, match="connection_made"):
            await loop.create_connection(lambda: None, "a", 7)   # as asyncio's
        with pytest.raises(ValueError, match="server_hostname is only meaningful"):
            await loop.create_connection(asyncio.Protocol, "a", 7, server_hostname="a")
        udp = b.socket(type=socket.SOCK_DGRAM)
        with pytest.raises(ValueError, match="A Stream Socket was expected"):
            await loop.create_connection(asyncio.Protocol, sock=udp)
        udp.close()

        listener = b.socket()
        listener.bind(("", 6000))
        listener.listen()
        connecting = asyncio.ensure_future(asyncio.open_connection("b", 6000))
        conn, _ = await loop.sock_accept(listener)
        accepted, _ = await loop.connect_accepted_socket(asyncio.Protocol, conn)
        _, writer = await connecting
        peer = accepted.get_extra_info("peername")
        accepted.close()
        writer.close()
        listener.close()
        return peer[0]

    assert await b.run(client()) == "10.3.0.2"


async def test_real_socket_on_a_simulated_host_fails_at_once(treadle_net):
    a = treadle_net.add_host("a")
    loop = asyncio.get_running_loop()

    async def use_real_socket():
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))      # real network state: refused
            sock.setblocking(False)
            with pytest.raises(SimulationError, match="real socket that is already bound"):
                await loop.sock_connect(sock, ("127.0.0.1", 1))
            with pytest.raises(SimulationError, match="host 'a'"):
                await loop.create_connection(asyncio.Protocol, sock=sock)
            with pytest.raises(SimulationError, match="host 'a'"):
                await loop.create_server(asyncio.Protocol, sock=sock)
            with pytest.raises(SimulationError):
                loop.add_reader(sock.fileno(), lambda: None)

    await a.run(use_real_socket())


async def test_loopback_on_a_host(treadle_net):
    a = treadle_net.add_host("a")

    async def main():
        server = await asyncio.start_server(
            lambda r, w: w.write(b"local") or w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("localhost", port)
        data = await reader.read()
        writer.close()
        server.close()
        await server.wait_closed()
        return data

    assert await a.run(main()) == b"local"


async def test_unix_sockets_on_a_host(treadle_net, tmp_path):
    a = treadle_net.add_host("a")
    # A real socket file at the same path: the host's paths are its own, so
    # the simulated server neither removes it as stale nor when it closes.
    path = str(tmp_path / "app.sock")
    real = socket.socket(socket.AF_UNIX)
    real.bind(path)
    real.close()

    async def main():
        async def handle(reader, writer):
            writer.write(await reader.readline())
            writer.close()
        server = await asyncio.start_unix_server(handle, path)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"unix\n")
        line = await reader.readline()
        writer.close()
        with pytest.raises(OSError) as info:
            await asyncio.start_unix_server(handle, path)
        assert info.value.errno == errno.EADDRINUSE
        assert str(info.value) == f"[Errno {errno.EADDRINUSE}] Address {path!r} is already in use"
        server.close()
        await server.wait_closed()
        # Closed, the path is free again; a bound socket can be passed in.
        sock = a.socket(socket.AF_UNIX)
        sock.bind(path)
        server = await asyncio.start_unix_server(handle, sock=sock)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(b"again\n")
        line += await reader.readline()
        writer.close()
        server.close()
        await server.wait_closed()
        tcp = a.socket()
        with pytest.raises(ValueError, match="A UNIX Domain Stream Socket was expected"):
            await asyncio.get_running_loop().create_unix_server(asyncio.Protocol, sock=tcp)
        tcp.close()
        return line

    assert await a.run(main()) == b"unix\nagain\n"
    assert stat.S_ISSOCK(os.stat(path).st_mode)


async def test_reset_host_connections(treadle_net):
    a = treadle_net.add_host("a")
    b = treadle_net.add_host("b")
    a.start(echo_server)
    await asyncio.sleep(0)
    reader, writer = await b.run(asyncio.open_connection("a", 7))
    assert treadle_net.reset("a") == 1       # one connection has an end on a
    with pytest.raises(ConnectionResetError):
        await b.run(reader.read(1))


async def test_hold_and_release(treadle_net):
    a = treadle_net.add_host("a")
    b = treadle_net.add_host("b")
    a.start(echo_server)
    await asyncio.sleep(0)
    reader, writer = await b.run(asyncio.open_connection("a", 7))
    treadle_net.hold("a", "b")
    writer.write(b"held")
    loop = asyncio.get_running_loop()
    loop.call_later(50, treadle_net.release, "a", "b")
    start = loop.time()
    assert await b.run(reader.readexactly(4)) == b"held"
    assert loop.time() - start >= 50
    writer.close()


def test_standalone_run_returns_the_result():
    async def main(net):
        a = net.add_host("a")
        a.start(echo_server)
        b = net.add_host("b")
        await asyncio.sleep(0)
        r, w = await b.run(asyncio.open_connection("a", 7))
        w.write(b"z")
        data = await b.run(r.readexactly(1))
        w.close()
        return data

    assert SimNetwork(seed=3).run(main) == b"z"


async def test_a_fresh_real_socket_is_adopted(treadle_net):
    """aiohttp's Happy Eyeballs makes its own sockets and hands them to
    sock_connect: a socket with no address yet becomes a simulated one."""
    a = treadle_net.add_host("a")
    b = treadle_net.add_host("b")
    a.start(echo_server)
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()

    async def client():
        sock = socket.socket()
        sock.setblocking(False)
        await loop.sock_connect(sock, ("a", 7))
        reader, writer = await asyncio.open_connection(sock=sock)
        writer.write(b"adopted")
        data = await reader.readexactly(7)
        writer.close()
        await writer.wait_closed()
        assert sock.fileno() == -1          # closed with its stand-in
        return data

    assert await b.run(client()) == b"adopted"


def test_hosts_started_before_the_network_runs():
    net = SimNetwork(seed=2)
    a = net.add_host("a")
    assert a.start(echo_server) is None      # starts with the run

    async def main(net):
        b = net.add_host("b")
        r, w = await b.run(asyncio.open_connection("a", 7))
        w.write(b"early")
        data = await b.run(r.readexactly(5))
        w.close()
        return data

    assert net.run(main) == b"early"


async def test_a_crashed_peer_times_out_and_stops_sending(treadle_net):
    treadle_net.tcp_timeout = 100.0
    a = treadle_net.add_host("a")
    b = treadle_net.add_host("b")
    a.start(echo_server)
    await asyncio.sleep(0)
    reader, writer = await b.run(asyncio.open_connection("a", 7))
    treadle_net.crash("a")
    writer.write(b"into the void")
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        await b.run(reader.read(10))
    assert loop.time() - start == pytest.approx(100.0)


async def test_ephemeral_ports_run_out(treadle_net):
    a = treadle_net.add_host("a")

    async def exhaust():
        socks = []
        try:
            while True:
                s = a.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(s)
                s.bind(("0.0.0.0", 0))
        except OSError as exc:
            return exc.errno, len(socks) - 1
        finally:
            for s in socks:
                s.close()

    err, bound = await a.run(exhaust())
    assert err == 99 and bound == 60999 - 32768 + 1       # EADDRNOTAVAIL
