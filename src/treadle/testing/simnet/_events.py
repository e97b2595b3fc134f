"""The event log of a simulated run.

Owns: recording what happened in a run - connections, deliveries, drops,
resets, faults, crashes, task steps when asked - as lines of text stamped
with virtual time, a running digest of them all, and the comparison of two
logs that names the first event where they differ.
Never: records anything that differs between two identical runs: no
object ids, no real time, no task names drawn from process-wide counters
(tasks are numbered per run).
"""

from __future__ import annotations

import zlib
from collections import deque
from typing import Iterable


class EventLog:
    """Events of one run: ``(index, time, host, text)``.

    Keeps the last *tail* events (for failure reports) and, when *keep_all*,
    every event (for the determinism check); a digest covers them all."""

    __slots__ = ("_tail", "_all", "_crc", "count")

    def __init__(self, *, tail: int = 50, keep_all: bool = False) -> None:
        self._tail: deque[tuple[int, float, str, str]] = deque(maxlen=max(1, tail))
        self._all: list[tuple[int, float, str, str]] | None = [] if keep_all else None
        self._crc = 0
        self.count = 0

    def add(self, time: float, host: str, text: str) -> None:
        event = (self.count, time, host, text)
        self.count += 1
        self._tail.append(event)
        if self._all is not None:
            self._all.append(event)
        self._crc = zlib.crc32(f"{time!r} {host} {text}\n".encode(), self._crc)

    def digest(self) -> str:
        """A checksum of every event so far (CRC-32 and the count: the same
        in every process and on every Python version)."""
        return f"{self._crc:08x}-{self.count}"

    def tail(self, n: int | None = None) -> list[tuple[int, float, str, str]]:
        events = list(self._tail)
        return events if n is None else events[-n:]

    def events(self) -> list[tuple[int, float, str, str]]:
        """Every event (only with ``keep_all``)."""
        if self._all is None:
            raise RuntimeError("this event log keeps only its last events "
                               "(EventLog(keep_all=True) keeps them all)")
        return list(self._all)


def format_event(event: tuple[int, float, str, str]) -> str:
    index, time, host, text = event
    return f"#{index:<6} t={time:<12.6f} {host or '-':<10} {text}"


def format_events(events: Iterable[tuple[int, float, str, str]]) -> str:
    return "\n".join(format_event(e) for e in events)


def first_difference(a: list[tuple[int, float, str, str]],
                     b: list[tuple[int, float, str, str]]) -> int | None:
    """Index of the first event where two logs differ (None: identical)."""
    for i, (x, y) in enumerate(zip(a, b)):
        if x[1:] != y[1:]:
            return i
    if len(a) != len(b):
        return min(len(a), len(b))
    return None
