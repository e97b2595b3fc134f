"""getaddrinfo/getnameinfo on both loops, the numeric fast path (treadle),
and the pure address helpers."""

from __future__ import annotations

import asyncio
import socket

import pytest

import treadle
from treadle._net import dns

NUMERIC_CASES = [
    ("127.0.0.1", 80, {}),
    ("127.0.0.1", "8080", {}),
    ("127.0.0.1", None, {"type": socket.SOCK_STREAM}),
    ("::1", 443, {}),
    (b"::1", b"443", {}),
    ("0.0.0.0", 0, {"flags": socket.AI_PASSIVE}),
    (None, 80, {"flags": socket.AI_PASSIVE}),
    (None, 80, {}),
    ("127.0.0.1", 53, {"family": socket.AF_INET, "type": socket.SOCK_DGRAM}),
    ("127.0.0.1", 80, {"flags": socket.AI_CANONNAME}),
    ("::ffff:127.0.0.1", 1, {"proto": socket.IPPROTO_TCP}),
]


@pytest.mark.parametrize("host, port, kwargs", NUMERIC_CASES)
def test_getaddrinfo_returns_what_socket_getaddrinfo_returns(run, host, port, kwargs):
    expected = socket.getaddrinfo(host, port, kwargs.get("family", 0),
                                  kwargs.get("type", 0), kwargs.get("proto", 0),
                                  kwargs.get("flags", 0))

    async def main():
        return await asyncio.get_running_loop().getaddrinfo(host, port, **kwargs)
    assert run(main()) == expected


def test_getaddrinfo_errors_match_socket_getaddrinfo(run):
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo("127.0.0.1", 80, family=socket.AF_INET6)
        try:
            socket.getaddrinfo("127.0.0.1", 80, socket.AF_INET6)
        except socket.gaierror as exc:
            assert info.value.errno == exc.errno
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo(None, None)
        with pytest.raises(socket.gaierror):
            await loop.getaddrinfo("host.invalid", 80)
    run(main())


def test_getaddrinfo_resolves_names_and_services(run):
    async def main():
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo("localhost", "http", type=socket.SOCK_STREAM)
        assert infos
        assert all(info[4][1] == 80 for info in infos)
    run(main())


def test_a_patched_socket_getaddrinfo_is_used(run, monkeypatch):
    # Tests resolve made-up names by replacing socket.getaddrinfo
    # (unittest.mock.patch): the loop looks it up at each call, as asyncio's.
    real = socket.getaddrinfo
    asked = []

    def fake(host, port, *args, **kwargs):
        asked.append(host)
        if host == "testhost.test":
            host = "127.0.0.1"
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)

    async def main():
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo("testhost.test", 80, type=socket.SOCK_STREAM)
        server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("testhost.test", port)
        writer.close()
        await writer.wait_closed()
        server.close()
        await server.wait_closed()
        return infos

    infos = run(main())
    assert {info[4] for info in infos} == {("127.0.0.1", 80)}
    assert asked.count("testhost.test") == 2


def test_getnameinfo(run):
    async def main():
        loop = asyncio.get_running_loop()
        host, port = await loop.getnameinfo(("127.0.0.1", 80),
                                            socket.NI_NUMERICHOST | socket.NI_NUMERICSERV)
        assert (host, port) == ("127.0.0.1", "80")
    run(main())


class _NoExecutor:
    """Fails the test if anything is sent to the executor."""

    def __init__(self, loop):
        self.loop = loop
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        raise AssertionError("getaddrinfo went to the executor")


@pytest.mark.parametrize("host, port, kwargs", NUMERIC_CASES)
def test_numeric_hosts_are_answered_on_the_loop_thread(host, port, kwargs):
    async def main():
        loop = asyncio.get_running_loop()
        loop.run_in_executor = _NoExecutor(loop)
        return await loop.getaddrinfo(host, port, **kwargs)

    with asyncio.Runner(loop_factory=treadle.new_event_loop) as runner:
        assert runner.run(main())


@pytest.mark.parametrize("host, port", [("localhost", 80), ("127.0.0.1", "http"),
                                        ("[::1]", 80), ("", 80)])
def test_names_and_services_go_to_the_executor(host, port):
    async def main():
        loop = asyncio.get_running_loop()
        calls = []
        original = loop.run_in_executor

        def spy(executor, func, *args):
            calls.append(args[:2])
            return original(executor, func, *args)
        loop.run_in_executor = spy
        try:
            await loop.getaddrinfo(host, port)
        except socket.gaierror:
            pass
        return calls

    with asyncio.Runner(loop_factory=treadle.new_event_loop) as runner:
        assert runner.run(main()) == [(host, port)]


def test_debug_mode_logs_lookups(caplog):
    async def main():
        return await asyncio.get_running_loop().getaddrinfo("127.0.0.1", 80)

    with caplog.at_level("DEBUG", logger="asyncio"):
        with asyncio.Runner(loop_factory=treadle.new_event_loop, debug=True) as runner:
            runner.run(main())
    assert any("Getting address info 127.0.0.1:80" in r.getMessage() for r in caplog.records)


def test_numeric_addrinfo():
    tcp, udp = socket.IPPROTO_TCP, socket.IPPROTO_UDP
    assert dns.numeric_addrinfo("127.0.0.1", 80, 0, socket.SOCK_STREAM, 0) == \
        (socket.AF_INET, socket.SOCK_STREAM, tcp, "", ("127.0.0.1", 80))
    assert dns.numeric_addrinfo("::1", "53", 0, socket.SOCK_DGRAM, 0) == \
        (socket.AF_INET6, socket.SOCK_DGRAM, udp, "", ("::1", 53, 0, 0))
    assert dns.numeric_addrinfo(b"::1", None, socket.AF_INET6, socket.SOCK_STREAM, 0,
                                1, 2) == \
        (socket.AF_INET6, socket.SOCK_STREAM, tcp, "", ("::1", 0, 1, 2))
    assert dns.numeric_addrinfo("127.0.0.1", "", 0, socket.SOCK_STREAM, 0)[4] == ("127.0.0.1", 0)
    # Needs the resolver:
    assert dns.numeric_addrinfo("localhost", 80, 0, socket.SOCK_STREAM, 0) is None
    assert dns.numeric_addrinfo("127.0.0.1", "http", 0, socket.SOCK_STREAM, 0) is None
    assert dns.numeric_addrinfo("fe80::1%lo", 80, 0, socket.SOCK_STREAM, 0) is None
    assert dns.numeric_addrinfo(None, 80, 0, socket.SOCK_STREAM, 0) is None
    assert dns.numeric_addrinfo("127.0.0.1", 80, socket.AF_INET6, socket.SOCK_STREAM, 0) is None
    assert dns.numeric_addrinfo("127.0.0.1", 80, 0, socket.SOCK_RAW, 0) is None
    assert dns.numeric_addrinfo("127.0.0.1", 80, 0, socket.SOCK_STREAM, 99) is None


def test_interleave_addrinfos():
    v4 = [(socket.AF_INET, 1, 6, "", (f"10.0.0.{i}", 80)) for i in range(3)]
    v6 = [(socket.AF_INET6, 1, 6, "", (f"::{i}", 80, 0, 0)) for i in range(2)]
    mixed = [v6[0], v6[1], v4[0], v4[1], v4[2]]
    assert dns.interleave_addrinfos(mixed) == [v6[0], v4[0], v6[1], v4[1], v4[2]]
    assert dns.interleave_addrinfos(mixed, 2) == [v6[0], v6[1], v4[0], v4[1], v4[2]]
    assert dns.interleave_addrinfos(v4) == v4
    assert dns.interleave_addrinfos([]) == []
