"""Datagrams, the simulated DNS, fault schedules and bad input."""

from __future__ import annotations

import asyncio
import socket

import pytest

from treadle.testing.simnet import Fault, FaultSchedule, SimNetwork

pytestmark = pytest.mark.treadle


class Collect(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[bytes] = []
        self.errors: list[Exception] = []

    def datagram_received(self, data, addr):
        self.got.append(data)

    def error_received(self, exc):
        self.errors.append(exc)


async def _listen(host):
    """A datagram endpoint on port 53 of *host*, collecting what arrives."""
    receiver = Collect()

    async def listen():
        await asyncio.get_running_loop().create_datagram_endpoint(
            lambda: receiver, local_addr=("0.0.0.0", 53))

    await host.run(listen())
    return receiver


async def _udp_pair(net, count, **link):
    a = net.add_host("a", "10.3.0.1")
    b = net.add_host("b", "10.3.0.2")
    if link:
        net.configure_link("a", "b", **link)
    loop = asyncio.get_running_loop()
    receiver = await _listen(b)

    async def send():
        transport, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, remote_addr=("b", 53))
        for i in range(count):
            transport.sendto(b"%d" % i)
            await asyncio.sleep(0.001)
        await asyncio.sleep(5)
        transport.close()

    await a.run(send())
    return receiver.got


async def test_datagram_endpoint_arguments_on_a_host(treadle_net):
    # The real loop's create_datagram_endpoint() runs on a host: a connected
    # socket passed in sends to its peer, and the argument checks are
    # asyncio's.
    a = treadle_net.add_host("a", "10.3.0.1")
    b = treadle_net.add_host("b", "10.3.0.2")
    loop = asyncio.get_running_loop()
    receiver = await _listen(b)

    async def send():
        sock = a.socket(type=socket.SOCK_DGRAM)
        await loop.sock_connect(sock, ("b", 53))
        transport, _ = await loop.create_datagram_endpoint(asyncio.DatagramProtocol,
                                                           sock=sock)
        transport.sendto(b"given")
        with pytest.raises(AttributeError, match="connection_made"):
            await loop.create_datagram_endpoint(lambda: None, remote_addr=("b", 53))
        with pytest.raises(ValueError, match="unexpected address family"):
            await loop.create_datagram_endpoint(asyncio.DatagramProtocol)
        await asyncio.sleep(1)
        transport.close()

    await a.run(send())
    assert receiver.got == [b"given"]


async def test_udp_delivers_in_order_without_faults(treadle_net):
    got = await _udp_pair(treadle_net, 50)
    assert got == [b"%d" % i for i in range(50)]


async def test_udp_loss_duplication_and_reordering(treadle_net):
    got = await _udp_pair(treadle_net, 400, loss=0.2, duplicate=0.1, reorder=0.2,
                          reorder_delay=0.01)
    sent = {b"%d" % i for i in range(400)}
    assert set(got) < sent                      # some lost
    assert len(got) != len(set(got))            # some twice
    numbers = [int(x) for x in got]
    assert numbers != sorted(numbers)           # some out of order


async def test_udp_port_unreachable_reaches_a_connected_sender(treadle_net):
    a = treadle_net.add_host("a")
    treadle_net.add_host("b")
    loop = asyncio.get_running_loop()
    proto = Collect()

    async def send():
        transport, _ = await loop.create_datagram_endpoint(lambda: proto,
                                                           remote_addr=("b", 9999))
        transport.sendto(b"anyone?")
        await asyncio.sleep(1)
        transport.close()

    await a.run(send())
    assert len(proto.errors) == 1
    assert isinstance(proto.errors[0], ConnectionRefusedError)


async def test_udp_too_large(treadle_net):
    a = treadle_net.add_host("a")
    treadle_net.add_host("b")
    loop = asyncio.get_running_loop()
    proto = Collect()

    async def send():
        transport, _ = await loop.create_datagram_endpoint(lambda: proto,
                                                           remote_addr=("b", 1))
        transport.sendto(b"x" * 70000)
        transport.close()

    await a.run(send())
    assert proto.errors and proto.errors[0].errno == 90   # EMSGSIZE


async def test_dns_records_getaddrinfo_and_getnameinfo(treadle_net):
    a = treadle_net.add_host("a", ["10.4.0.1", "fd00::1"])
    treadle_net.add_host("b", "10.4.0.2")
    treadle_net.add_dns("api.example.com", "a", "b")
    loop = asyncio.get_running_loop()

    async def lookups():
        infos = await loop.getaddrinfo("api.example.com", 443, type=socket.SOCK_STREAM)
        assert [i[4] for i in infos] == [("10.4.0.1", 443), ("fd00::1", 443, 0, 0),
                                         ("10.4.0.2", 443)]
        v4 = await loop.getaddrinfo("a", "http", family=socket.AF_INET)
        assert {i[1] for i in v4} == {socket.SOCK_STREAM, socket.SOCK_DGRAM,
                                      socket.SOCK_RAW}
        assert v4[0][4] == ("10.4.0.1", 80)
        assert await loop.getnameinfo(("10.4.0.2", 80)) == ("b", "http")
        assert await loop.getnameinfo(("10.4.0.2", 80), socket.NI_NUMERICHOST
                                      | socket.NI_NUMERICSERV) == ("10.4.0.2", "80")
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo("nope.example.com", 80)
        assert info.value.errno == socket.EAI_NONAME

    await a.run(lookups())


async def test_dns_faults(treadle_net):
    a = treadle_net.add_host("a")
    treadle_net.add_host("b")
    loop = asyncio.get_running_loop()
    treadle_net.dns_fail("b")

    async def lookups():
        with pytest.raises(socket.gaierror) as info:
            await loop.getaddrinfo("b", 80)
        assert info.value.errno == socket.EAI_AGAIN
        treadle_net.dns_heal()
        treadle_net.dns_delay(seconds=2.5)
        start = loop.time()
        await loop.getaddrinfo("b", 80)
        return loop.time() - start

    assert await a.run(lookups()) == pytest.approx(2.5)


async def test_fault_schedule_applies_at_its_times_and_prints_back(treadle_net):
    treadle_net.add_host("a")
    treadle_net.add_host("b")
    text = """
        at 1 partition a b one_way
        at 2 heal
        at 3 crash b
        at 4 restart b
        at 5 link a b latency=0.25
    """
    schedule = treadle_net.schedule(text)
    assert str(schedule) == "\n".join([
        "at 1 partition a b one_way", "at 2 heal", "at 3 crash b", "at 4 restart b",
        "at 5 link a b latency=0.25"])
    assert FaultSchedule.parse(str(schedule)) == schedule
    await asyncio.sleep(1.5)
    assert treadle_net.link("a", "b").blocked and not treadle_net.link("b", "a").blocked
    await asyncio.sleep(1)
    assert not treadle_net.link("a", "b").blocked
    await asyncio.sleep(1)
    assert not treadle_net.hosts["b"].up
    await asyncio.sleep(1)
    assert treadle_net.hosts["b"].up
    await asyncio.sleep(1)
    assert treadle_net.link("b", "a").latency == 0.25
    assert str(treadle_net.applied_faults()) == str(schedule)


def test_faults_as_data():
    fault = Fault(2.5, "partition", "a", "b", one_way=True)
    assert str(fault) == "at 2.5 partition a b one_way"
    schedule = FaultSchedule([(1, "crash", "db"), "at 0.5 heal", fault])
    assert [f.time for f in schedule] == [0.5, 1.0, 2.5]
    with pytest.raises(ValueError, match="unknown fault 'explode'"):
        Fault(1, "explode", "a")
    with pytest.raises(ValueError, match="takes 1 host name"):
        Fault(1, "crash")
    with pytest.raises(ValueError, match="finite number"):
        Fault(float("nan"), "heal")


def test_bad_input_gets_clear_errors():
    net = SimNetwork()
    net.add_host("a", "10.5.0.1")
    with pytest.raises(ValueError, match="address 10.5.0.1 already belongs to host 'a'"):
        net.add_host("b", "10.5.0.1")
    with pytest.raises(ValueError, match="already a host named 'a'"):
        net.add_host("a")
    with pytest.raises(ValueError, match="not an IP address"):
        net.add_host("c", "ten.0.0.1")
    with pytest.raises(ValueError, match=r"no host named 'zz' \(hosts: 'a'\)"):
        net.partition("a", "zz")
    with pytest.raises(ValueError, match="no link from host 'a' to itself"):
        net.partition("a", "a")
    with pytest.raises(ValueError, match="no host named 'ghost'"):
        net.crash("ghost")
    with pytest.raises(TypeError, match="unknown link parameter 'latncy'"):
        net.configure_link("a", "a", latncy=1)
    with pytest.raises(ValueError, match="probability"):
        SimNetwork(loss=2)

    async def main(n):
        n.schedule("at 1 crash nobody")

    with pytest.raises(ValueError, match="no host named 'nobody'"):
        SimNetwork().run(main)
