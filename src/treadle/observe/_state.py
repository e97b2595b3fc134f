"""What observation keeps per loop.

Owns: ``LoopObservation``, the object every treadle loop carries as
``loop._observation``: its blocking threshold, the watchdog's view of it
(``WatchState``), the blocking events seen so far, the per-task tracker when
one is attached, and how long the loop has run.
Never: runs code on the loop; the watchdog and server threads write here,
the loop thread reads ``threshold`` through the loop's property.
"""

from __future__ import annotations

import math
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable



class BlockEvent:
    """One time a callback, a task step or a whole loop iteration held the
    loop longer than the threshold.  (A plain class: this module is
    imported with treadle, and must stay cheap to import.)"""

    __slots__ = ("kind", "label", "task_id", "task_name", "noticed_at", "held",
                 "total", "stack")

    def __init__(self, kind: str, label: str, task_id: int | None,
                 task_name: str | None, noticed_at: float, held: float,
                 stack: list[str]) -> None:
        #: "step" (a task step), "callback", or "turn" (an iteration)
        self.kind = kind
        self.label = label
        self.task_id = task_id
        self.task_name = task_name
        #: time.time() when it was noticed
        self.noticed_at = noticed_at
        #: How long it had held the loop when reported (at least this long).
        self.held = held
        #: Its total, once it ended (None while it still runs).
        self.total: float | None = None
        self.stack = stack

    def as_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__slots__}


class WatchState:
    """The watchdog's memory of one loop between two ticks (only the
    watchdog thread writes it)."""

    def __init__(self) -> None:
        self.last_tick = 0.0
        self.serial = -1
        self.items_run = 0
        self.turn_first = 0.0
        self.turn_prev = 0.0
        self.turn_size: int | None = None
        self.turn_exact = False
        self.turn_reported: BlockEvent | None = None
        self.turn_items = 0
        self.turn_samples: dict[str, int] = {}
        #: ``id()`` of the item running at the last tick, None if none.  An
        #: id, not a reference: a reference would keep a task alive (or
        #: need a weak reference made per item, objects that come and go
        #: with the ticks and move the counts of programs that check
        #: ``gc.get_objects()`` for leaks).  Within one batch an id names
        #: one item: every item of a batch is alive when the batch starts,
        #: so no two of them share an address (``_tick`` compares ids only
        #: within a batch).
        self.item_id: int | None = None
        #: The task a reported item belonged to (weakly), for the report's end.
        self.item_task: Callable[[], Any] | None = None
        self.item_first = 0.0
        self.item_prev = 0.0
        self.item_last = 0.0
        self.item_reported: BlockEvent | None = None
        #: Set by the watchdog once it has closed the reports of a loop
        #: that stopped (``Observer.loop_stopped`` waits for it).
        self.settled: threading.Event | None = None

    def same_item(self, item: Any) -> bool:
        return self.item_id == id(item)

    def current_hold(self) -> float | None:
        """How long the item running now has held the loop, as far as the
        watchdog knows (None when nothing has been running for a tick)."""
        if self.item_id is None or self.item_last <= self.item_first:
            return None
        return self.item_last - self.item_first


class LoopObservation:
    """Everything observation keeps about one loop."""

    def __init__(self, loop: Any, threshold: float | None) -> None:
        self._loop = weakref.ref(loop)
        self._threshold = threshold
        self.watch = WatchState()
        self.lock = threading.Lock()
        self.blocks: deque[BlockEvent] = deque(maxlen=64)
        self.blocked = 0
        self.longest_block = 0.0
        self.slow_turns = 0
        #: task -> the longest it held the loop (the watchdog's view)
        self.task_blocks: weakref.WeakKeyDictionary[Any, float] = (
            weakref.WeakKeyDictionary())
        self.tracker: Any = None
        self.track_requested = False      # switched on by the program
        self.run_started: float | None = None
        self.run_total = 0.0
        #: time.monotonic() when the loop last stopped running.
        self.stopped_at: float | None = None

    @property
    def loop(self) -> Any:
        return self._loop()

    @property
    def threshold(self) -> float | None:
        return self._threshold

    @threshold.setter
    def threshold(self, value: float | None) -> None:
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(
                    f"blocking_threshold must be a number of seconds or None, "
                    f"got {type(value).__name__}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(
                    f"blocking_threshold must be a positive number of seconds "
                    f"or None, got {value!r}")
            value = float(value)
        self._threshold = value

    def run_time(self) -> float:
        total = self.run_total
        started = self.run_started
        if started is not None:
            total += time.monotonic() - started
        return total

    def record(self, event: BlockEvent, task: Any) -> None:
        with self.lock:
            self.blocks.append(event)
            if event.kind == "turn":
                self.slow_turns += 1
            else:
                self.blocked += 1
            self.longest_block = max(self.longest_block, event.held)
            if task is not None:
                self.task_blocks[task] = max(self.task_blocks.get(task, 0.0), event.held)

    def finished(self, event: BlockEvent, total: float, task: Any) -> None:
        with self.lock:
            event.total = total
            self.longest_block = max(self.longest_block, total)
            if task is not None:
                self.task_blocks[task] = max(self.task_blocks.get(task, 0.0), total)

    def task_block(self, task: Any) -> float:
        """The longest *task* held the loop in one step (0.0: never past
        the threshold)."""
        with self.lock:
            return self.task_blocks.get(task, 0.0)
