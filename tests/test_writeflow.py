"""The write buffer's state machine (``_writeflow.WriteBuffer``), without a
loop or an fd."""

from __future__ import annotations

import pytest

from treadle._writeflow import DEFAULT_HIGH_WATER, IOV_MAX, WriteBuffer


def test_defaults_are_asyncios():
    buf = WriteBuffer()
    assert buf.limits() == (DEFAULT_HIGH_WATER // 4, DEFAULT_HIGH_WATER)
    assert DEFAULT_HIGH_WATER == 64 * 1024
    assert buf.size == 0 and not buf and len(buf) == 0
    assert IOV_MAX >= 16


@pytest.mark.parametrize("high, low, expected", [
    (None, None, (16384, 65536)),
    (100, None, (25, 100)),
    (None, 10, (10, 40)),
    (10, 10, (10, 10)),
    (0, 0, (0, 0)),
])
def test_set_limits(high, low, expected):
    buf = WriteBuffer()
    buf.set_limits(high, low)
    assert buf.limits() == expected


@pytest.mark.parametrize("high, low", [(1, 2), (-1, None), (10, -1)])
def test_set_limits_rejects(high, low):
    buf = WriteBuffer()
    with pytest.raises(ValueError, match="must be >="):
        buf.set_limits(high, low)
    assert buf.limits() == (16384, 65536)      # unchanged


def test_advance_across_chunks_keeps_order():
    buf = WriteBuffer()
    for chunk in (b"abc", b"defg", b"h"):
        buf.push(chunk)
    assert buf.size == 8
    buf.advance(2)
    assert b"".join(bytes(c) for c in buf.chunks) == b"cdefgh"
    buf.advance(1)
    assert [bytes(c) for c in buf.chunks] == [b"defg", b"h"]
    buf.advance(5)
    assert buf.size == 0 and buf.chunks == []
    buf.advance(0)
    with pytest.raises(ValueError):
        buf.advance(1)


def test_partial_chunk_is_a_view_not_a_copy():
    big = bytes(range(256)) * 100
    buf = WriteBuffer()
    buf.push(big)
    buf.advance(10)
    (head,) = buf.chunks
    assert isinstance(head, memoryview) and head.obj is big
    assert bytes(head) == big[10:]


def test_chunks_limit():
    buf = WriteBuffer()
    for i in range(10):
        buf.push(bytes([i]))
    assert [bytes(c) for c in buf.head(3)] == [b"\0", b"\1", b"\2"]
    assert len(buf.chunks) == 10


def test_pause_when_past_high_then_resume_at_low():
    buf = WriteBuffer()
    buf.set_limits(high=10, low=4)
    buf.push(b"x" * 10)
    assert not buf.pause_due()          # at the mark: not past it
    buf.push(b"x")
    assert buf.pause_due() and buf.paused
    buf.push(b"x")
    assert not buf.pause_due()          # told once
    buf.advance(7)                      # 5 left
    assert not buf.resume_due()
    buf.advance(1)                      # 4 left: at the low mark
    assert buf.resume_due() and not buf.paused
    assert not buf.resume_due()         # told once


def test_clear():
    buf = WriteBuffer()
    buf.push(b"abc")
    buf.clear()
    assert buf.size == 0 and buf.chunks == []
