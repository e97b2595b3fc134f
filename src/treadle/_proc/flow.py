"""The write buffer of a pipe transport and its flow-control decisions.

Owns: the bytes a transport has accepted but the fd has not taken yet, and
asyncio's write flow control over them (pause the protocol when the buffer
grows past the high-water mark, resume it when it falls to the low-water
mark).
Never: touches an fd, a loop or a protocol.  It is a plain state machine
(h11 style): the transport asks it what to send and tells it what was sent,
and it answers whether the protocol must be paused or resumed now.  So every
rule here is tested without a loop or a pipe (``tests/proc/test_flow.py``).

Why chunks and not one ``bytearray`` (asyncio's choice): the transport
flushes with one ``os.writev`` of up to ``IOV_MAX`` chunks, so a burst of
writes costs one syscall and no joining copy; a partly written chunk is
kept as a ``memoryview`` slice, so a large chunk is never copied again to
drop its head.
"""

from __future__ import annotations

import os
from collections import deque

from .._writeflow import DEFAULT_HIGH_WATER, water_marks


def _iov_max() -> int:
    try:
        value = os.sysconf("SC_IOV_MAX")
    except (AttributeError, ValueError, OSError):
        value = -1
    # POSIX guarantees at least 16; Linux and the BSDs say 1024.
    return value if value > 0 else 16


#: The most chunks one ``os.writev`` may take.
IOV_MAX = _iov_max()


class WriteBuffer:
    """Pending output plus asyncio's pause/resume rule.

    ``size`` is what ``get_write_buffer_size()`` reports.  ``paused`` is
    whether the protocol has been told ``pause_writing()`` and not yet
    ``resume_writing()``.
    """

    __slots__ = ("_chunks", "size", "high", "low", "paused")

    _chunks: deque[bytes | memoryview]
    size: int
    high: int
    low: int
    paused: bool

    def __init__(self) -> None:
        self._chunks = deque()
        self.size = 0
        self.high = DEFAULT_HIGH_WATER
        self.low = DEFAULT_HIGH_WATER // 4
        self.paused = False

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size != 0

    # -- limits ----------------------------------------------------------

    def set_limits(self, high: int | None = None, low: int | None = None) -> None:
        """asyncio's rule (``water_marks``)."""
        self.high, self.low = water_marks(high, low)

    def limits(self) -> tuple[int, int]:
        """``(low, high)``, the order of ``get_write_buffer_limits()``."""
        return (self.low, self.high)

    # -- data ------------------------------------------------------------

    def push(self, data: bytes | memoryview) -> None:
        """Queue *data* (non-empty, flat bytes, not to be mutated by anyone:
        the transport copies a caller's mutable buffer before it gets here)."""
        self._chunks.append(data)
        self.size += len(data)

    def chunks(self, limit: int = IOV_MAX) -> list[bytes | memoryview]:
        """The first *limit* chunks, for one ``os.writev``."""
        chunks = self._chunks
        if len(chunks) <= limit:
            return list(chunks)
        return [chunks[i] for i in range(limit)]

    def advance(self, n: int) -> None:
        """Drop the first *n* bytes: the fd took them."""
        if n <= 0:
            return
        if n > self.size:
            raise ValueError(f"advance({n}) past the end of a {self.size}-byte buffer")
        self.size -= n
        chunks = self._chunks
        while n:
            head = chunks[0]
            length = len(head)
            if n >= length:
                chunks.popleft()
                n -= length
            else:
                view = head if isinstance(head, memoryview) else memoryview(head)
                chunks[0] = view[n:]
                n = 0

    def clear(self) -> None:
        self._chunks.clear()
        self.size = 0

    # -- flow control ----------------------------------------------------

    def pause_due(self) -> bool:
        """True exactly when the protocol must be told ``pause_writing()``
        now (the buffer just went past the high-water mark); records it."""
        if self.size > self.high and not self.paused:
            self.paused = True
            return True
        return False

    def resume_due(self) -> bool:
        """True exactly when the protocol must be told ``resume_writing()``
        now (paused, and the buffer is down to the low-water mark); records
        it."""
        if self.paused and self.size <= self.low:
            self.paused = False
            return True
        return False
