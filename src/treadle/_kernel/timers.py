"""The timer queue: a binary heap with O(1) cancellation.

Owns: the ``TimerHandle``s scheduled with ``call_at``/``call_later`` that
have not come due yet.
Never: runs a callback (due handles are handed to the ready queue) or reads
a clock (the loop passes ``now`` in, so a virtual clock needs nothing here).

Rules:

1. Cancelling a timer is O(1): the handle is marked and left in the heap as
   a tombstone.  Tombstones at the head are dropped when the head is looked
   at; the rest are dropped all at once when they make up more than half of
   a heap of more than ``COMPACT_MIN`` entries.  Each compaction removes at
   least as many entries as it visits, so the cost is amortised O(1) per
   cancelled timer and no loop turn ever scans the heap.
2. Entries are ``(when, seq, handle)`` tuples: comparisons stay in C, and
   ``seq`` makes timers with equal deadlines fire in the order they were
   scheduled (asyncio leaves that order unspecified; FIFO is strictly more
   predictable).
3. Each timer that comes due is counted in ``lateness``, a histogram of how
   long after its deadline it was handed to the ready queue (one bisect per
   fired timer; ``treadle.observe`` reports its percentiles).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import deque
from typing import Any, Final

from .handles import TimerHandle

COMPACT_MIN: Final = 128

#: Upper bounds (seconds) of the lateness histogram's buckets; one more
#: bucket counts everything later than the last bound.
LATENESS_BOUNDS: Final = (
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4,
    1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop
_bisect_left: Final = bisect_left


class TimerQueue:
    __slots__ = ("_heap", "_seq", "_tombstones", "lateness")

    _heap: list[tuple[float, int, TimerHandle]]
    _seq: int
    _tombstones: int
    #: Fired timers per ``LATENESS_BOUNDS`` bucket (rule 3).
    lateness: list[int]

    def __init__(self) -> None:
        self._heap = []
        self._seq = 0
        self._tombstones = 0
        self.lateness = [0] * (len(LATENESS_BOUNDS) + 1)

    def __len__(self) -> int:
        """Live timers (scheduled and not cancelled)."""
        return len(self._heap) - self._tombstones

    def push(self, handle: TimerHandle) -> None:
        handle._scheduled = True
        seq = self._seq
        self._seq = seq + 1
        _heappush(self._heap, (handle._deadline, seq, handle))

    def cancelled(self, handle: TimerHandle) -> None:
        """Called when a scheduled handle is cancelled (O(1) amortised)."""
        if not handle._scheduled:
            return
        self._tombstones += 1
        heap = self._heap
        if self._tombstones > COMPACT_MIN and self._tombstones * 2 > len(heap):
            # (*handle* is being cancelled: its flag is set after this call)
            live = [entry for entry in heap
                    if not entry[2]._cancelled and entry[2] is not handle]
            for entry in heap:
                if entry[2]._cancelled or entry[2] is handle:
                    entry[2]._scheduled = False
            heapq.heapify(live)
            self._heap = live
            if heap is live:         # released after the store (loop.py's header)
                pass
            self._tombstones = 0

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when no timer is pending."""
        heap = self._heap
        while heap:
            entry = heap[0]
            if not entry[2]._cancelled:
                return entry[0]
            _heappop(heap)
            entry[2]._scheduled = False
            self._tombstones -= 1
        return None

    def pop_due(self, until: float, ready: deque[Any]) -> int:
        """Move every live timer due before *until* to *ready*, in deadline
        order.  Returns how many were moved."""
        heap = self._heap
        moved = 0
        while heap:
            entry = heap[0]
            if entry[0] >= until:
                break
            _heappop(heap)
            handle = entry[2]
            handle._scheduled = False
            if handle._cancelled:
                self._tombstones -= 1
            else:
                ready.append(handle)
                moved += 1
                self.lateness[_bisect_left(LATENESS_BOUNDS, until - entry[0])] += 1
        return moved

    def clear(self) -> None:
        heap = self._heap
        for entry in heap:
            entry[2]._scheduled = False
        self._heap = []
        if heap is None:             # released after the store (loop.py's header)
            pass
        self._tombstones = 0

    def handles(self) -> list[TimerHandle]:
        """Live handles, earliest first (for introspection and tests)."""
        return [e[2] for e in sorted(self._heap) if not e[2]._cancelled]
