"""The simulation's pure state machines, driven directly (no loop)."""

from __future__ import annotations

import socket

import pytest

from treadle.testing.simnet._choices import (Choices, PCTSource, RandomSource,
                                             ReplaySource)
from treadle.testing.simnet._dns import Resolver
from treadle.testing.simnet._link import Link, check_params
from treadle.testing.simnet._tcp import Flow


def test_flow_send_buffer_window_and_order():
    flow = Flow(sndbuf=10, rcvbuf=8, mss=4)
    assert flow.write(b"0123456789abc") == 10          # the send buffer is full
    assert flow.send_space() == 0
    segs = []
    while (seg := flow.next_segment()) is not None:
        segs.append(seg)
    assert [s.data for s in segs] == [b"0123", b"4567"]  # the window (8) is full
    assert flow.arrived(segs[0], acked=True) and flow.arrived(segs[1], acked=True)
    assert flow.next_segment() is None                   # receiver has not read
    assert flow.read(3) == b"012"
    assert flow.next_segment().data == b"89"             # window reopened by 3
    assert flow.send_space() == 10 - 2                   # unacked data occupies it


def test_flow_go_back_n_after_a_loss():
    flow = Flow(mss=2)
    flow.write(b"abcdef")
    a, b, c = flow.next_segment(), flow.next_segment(), flow.next_segment()
    assert flow.lost(a)                     # a, b and c go back, in order
    assert not flow.arrived(b, acked=True)  # a stale arrival is ignored
    again = [flow.next_segment() for _ in range(3)]
    assert b"".join(s.data for s in again) == b"abcdef"
    for s in again:
        assert flow.arrived(s, acked=True)
    assert flow.read(100) == b"abcdef"


def test_flow_fin_and_eof():
    flow = Flow()
    flow.write(b"x")
    flow.shutdown()
    assert flow.write(b"more") == 0
    seg = flow.next_segment()
    assert seg.fin and seg.data == b"x"
    flow.arrived(seg, acked=False)
    assert flow.unacked == 1 and not flow.done_sending
    flow.acked()
    assert flow.done_sending
    assert flow.read(10) == b"x" and flow.readable()
    assert flow.read(10) == b"" and not flow.readable()


def test_link_transit_bandwidth_and_jitter():
    choices = Choices(ReplaySource({1: 0.5}))
    link = Link("a", "b", check_params({"latency": 0.01, "bandwidth": 1000.0,
                                        "jitter": 0.1}))
    assert link.transit(0.0, 100, choices) == pytest.approx(0.1 + 0.01)
    # the second packet waits for the first to be sent; jitter 0.5 * 0.1
    assert link.transit(0.0, 100, choices) == pytest.approx(0.2 + 0.01 + 0.05)


def test_link_datagram_copies():
    link = Link("a", "b", check_params({"loss": 0.5, "duplicate": 0.5,
                                        "reorder": 0.5, "reorder_delay": 0.2}))
    assert link.datagram_copies(Choices(ReplaySource({0: 1}))) == []        # lost
    assert link.datagram_copies(Choices(ReplaySource({1: 1, 2: 1}))) == [0.2, 0.2]
    assert link.datagram_copies(Choices(ReplaySource({}))) == [0.0]


def test_choices_record_clamp_and_replay():
    choices = Choices(RandomSource(1))
    picks = [choices.pick(3) for _ in range(20)]
    assert all(0 <= p < 3 for p in picks)
    again = Choices(ReplaySource(choices.deviations()))
    assert [again.pick(3) for _ in range(20)] == picks
    odd = Choices(ReplaySource({0: 7, 1: 0.5}))
    assert odd.pick(3) == 1           # clamped to the question
    assert odd.flip(0.1) is True
    assert Choices(RandomSource(5)).record == []


def test_random_source_is_the_same_on_every_python():
    # random.Random(seed).random() is the one sequence Python promises.
    choices = Choices(RandomSource(42))
    assert [choices.pick(10) for _ in range(8)] == [6, 0, 2, 2, 7, 6, 8, 0]


def test_pct_prefers_one_task_until_a_change_point():
    source = PCTSource(3, depth=2, steps=5)
    change = source.change_points[0]        # the pick after which priorities change
    choices = Choices(source)
    keys = [11, 12, 13]
    picks = [keys[choices.pick(3, keys)] for _ in range(6)]
    assert len(set(picks[:change])) == 1
    assert picks[change] != picks[0]


def test_resolver():
    r = Resolver()
    r.add("db", ["10.0.0.5", "fd00::5"])
    infos = r.getaddrinfo("DB.", 5432, type=socket.SOCK_STREAM)
    assert [i[4] for i in infos] == [("10.0.0.5", 5432), ("fd00::5", 5432, 0, 0)]
    assert r.getaddrinfo("db", 1, family=socket.AF_INET6, type=socket.SOCK_DGRAM)[0][2] \
        == socket.IPPROTO_UDP
    assert r.getaddrinfo(None, 80, flags=socket.AI_PASSIVE,
                         type=socket.SOCK_STREAM)[0][4] == ("0.0.0.0", 80)
    with pytest.raises(socket.gaierror):
        r.getaddrinfo("web", 80)
    with pytest.raises(socket.gaierror):
        r.getaddrinfo("db", "no-such-service")
    assert r.getnameinfo(("10.0.0.5", 22)) == ("db", "ssh")
    with pytest.raises(ValueError, match="IP address"):
        r.add("10.0.0.1", ["10.0.0.1"])
