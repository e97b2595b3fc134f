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
2. Timers come out in ``(deadline, seq)`` order: ``seq`` makes timers with
   equal deadlines fire in the order they were scheduled (asyncio leaves
   that order unspecified; FIFO is strictly more predictable).  How the heap
   holds them depends on the build, each the fastest for it:
   interpreted, ``(deadline, seq, handle)`` tuples ordered by ``heapq``
   (comparisons in C); compiled, the handles themselves, ordered by this
   module's own sift functions, which compare the handles' native
   ``_deadline``/``_seq`` fields (a few machine instructions, where a tuple
   comparison goes through ``PyObject_RichCompare`` twice, and no tuple is
   allocated per timer).  Only this class sees the difference; others read
   the heap through ``entries()``.
3. Each timer that comes due is counted in ``lateness``, a histogram of how
   long after its deadline it was handed to the ready queue (one bisect per
   fired timer; ``treadle.observe`` reports its percentiles).
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import deque
from types import FunctionType
from typing import TYPE_CHECKING, Any, Final

from .handles import TimerHandle

if TYPE_CHECKING:
    # Heap positions are machine integers to the compiler: unboxed
    # arithmetic, and list indexing without the tagged-integer paths.  Used
    # in annotations only, so the interpreted build needs no mypy_extensions.
    from mypy_extensions import i64

COMPACT_MIN: Final = 128

#: Upper bounds (seconds) of the lateness histogram's buckets; one more
#: bucket counts everything later than the last bound.
LATENESS_BOUNDS: Final = (
    1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4,
    1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)

_heappush: Final = heapq.heappush
_heappop: Final = heapq.heappop
_heapify: Final = heapq.heapify
_bisect_left: Final = bisect_left


def _probe() -> None:
    """Compiled, a function is not a Python function object."""


#: True in the compiled build: the heap holds handles (rule 2).
NATIVE_HEAP: Final = not isinstance(_probe, FunctionType)


def _before(a: TimerHandle, b: TimerHandle) -> bool:
    """*a* fires before *b* (rule 2's order)."""
    return a._deadline < b._deadline or (a._deadline == b._deadline and a._seq < b._seq)


def _sift_up(heap: list[Any], start: i64, pos: i64) -> None:
    """The handle at *pos* moves towards the root (no higher than *start*)
    while it fires before its parent (heapq's ``_siftdown``)."""
    item: TimerHandle = heap[pos]
    while pos > start:
        parent_pos = (pos - 1) >> 1
        parent: TimerHandle = heap[parent_pos]
        if not _before(item, parent):
            break
        heap[pos] = parent
        pos = parent_pos
    heap[pos] = item


def _sift_down(heap: list[Any], pos: i64) -> None:
    """Restore the heap below *pos* (heapq's ``_siftup``: the earlier child
    moves up until a leaf is reached, then the displaced handle sifts up
    from there; fewer comparisons than stopping early)."""
    end: i64 = len(heap)
    start = pos
    item: TimerHandle = heap[pos]
    child: i64 = 2 * pos + 1
    while child < end:
        right = child + 1
        if right < end and not _before(heap[child], heap[right]):
            child = right
        heap[pos] = heap[child]
        pos = child
        child = 2 * pos + 1
    heap[pos] = item
    _sift_up(heap, start, pos)


def _native_pop(heap: list[Any]) -> TimerHandle:
    """Remove and return the first handle of a non-empty native heap."""
    last: TimerHandle = heap.pop()
    if not heap:
        return last
    first: TimerHandle = heap[0]
    heap[0] = last
    _sift_down(heap, 0)
    return first


class TimerQueue:
    __slots__ = ("_heap", "_seq", "_tombstones", "lateness")

    #: Tuples interpreted, handles compiled (rule 2).
    _heap: list[Any]
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
        handle._seq = seq
        if NATIVE_HEAP:
            heap = self._heap
            heap.append(handle)
            _sift_up(heap, 0, len(heap) - 1)
        else:
            _heappush(self._heap, (handle._deadline, seq, handle))

    def entries(self) -> list[TimerHandle]:
        """The scheduled handles, cancelled ones included, in heap order (a
        copy: observers call this from other threads)."""
        heap = list(self._heap)
        if NATIVE_HEAP:
            return heap
        return [entry[2] for entry in heap]

    def cancelled(self, handle: TimerHandle) -> None:
        """Called when a scheduled handle is cancelled (O(1) amortised)."""
        if not handle._scheduled:
            return
        self._tombstones += 1
        heap = self._heap
        if self._tombstones > COMPACT_MIN and self._tombstones * 2 > len(heap):
            # (*handle* is being cancelled: its flag is set after this call)
            live = []
            for entry in heap:
                timer: TimerHandle = entry if NATIVE_HEAP else entry[2]
                if timer._cancelled or timer is handle:
                    timer._scheduled = False
                else:
                    live.append(entry)
            if NATIVE_HEAP:
                for pos in reversed(range(len(live) // 2)):
                    _sift_down(live, pos)
            else:
                _heapify(live)
            self._heap = live
            if heap is live:         # released after the store (loop.py's header)
                pass
            self._tombstones = 0

    def next_deadline(self) -> float | None:
        """The earliest live deadline, or None when no timer is pending."""
        heap = self._heap
        while heap:
            entry = heap[0]
            handle: TimerHandle = entry if NATIVE_HEAP else entry[2]
            if not handle._cancelled:
                return handle._deadline
            if NATIVE_HEAP:
                _native_pop(heap)
            else:
                _heappop(heap)
            handle._scheduled = False
            self._tombstones -= 1
        return None

    def pop_due(self, until: float, ready: deque[Any]) -> int:
        """Move every live timer due before *until* to *ready*, in deadline
        order.  Returns how many were moved."""
        heap = self._heap
        moved = 0
        while heap:
            # (Spelled out rather than through _handle_at()/_pop(): a call
            # each per timer costs the interpreted build.)
            entry = heap[0]
            handle: TimerHandle = entry if NATIVE_HEAP else entry[2]
            deadline = handle._deadline
            if deadline >= until:
                break
            if NATIVE_HEAP:
                _native_pop(heap)
            else:
                _heappop(heap)
            handle._scheduled = False
            if handle._cancelled:
                self._tombstones -= 1
            else:
                ready.append(handle)
                moved += 1
                self.lateness[_bisect_left(LATENESS_BOUNDS, until - deadline)] += 1
        return moved

    def clear(self) -> None:
        # Emptied in place, as asyncio empties its timer list: a new list
        # would be a new object to leak tests that compare gc.get_objects()
        # across a loop's close() (grpclib's).
        for handle in self.entries():
            handle._scheduled = False
        self._heap.clear()
        self._tombstones = 0

    def handles(self) -> list[TimerHandle]:
        """Live handles, earliest first (for introspection and tests)."""
        live = [h for h in self.entries() if not h._cancelled]
        live.sort(key=_order)
        return live


def _order(handle: TimerHandle) -> tuple[float, int]:
    return handle._deadline, handle._seq
