"""The progress display of ``treadle bench``, on stderr.

Owns: telling the user what is running and how long is left.
Never: writes to stdout (which carries the table or the JSON records) or
uses anything but plain text: on a terminal one line redrawn with ``\\r``;
anywhere else (a pipe, a CI log) one line per finished run, so logs stay
readable.
"""

from __future__ import annotations

import shutil
import time
from typing import TextIO

BAR_WIDTH = 24


def _clock(seconds: float) -> str:
    s = max(0, int(seconds + 0.5))
    return f"{s // 60}:{s % 60:02d}" if s < 3600 else f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def bar(done: int, total: int, width: int = BAR_WIDTH) -> str:
    """``[#####.......]``: *done* of *total*, in plain ASCII."""
    filled = 0 if total <= 0 else min(width, done * width // total)
    return "[" + "#" * filled + "." * (width - filled) + "]"


class Progress:
    """Reports runs as they start and finish.  Disabled (``enabled=False``)
    it prints nothing at all."""

    def __init__(self, total: int, stream: TextIO, *, enabled: bool = True,
                 tty: bool | None = None, now: float | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream
        self.enabled = enabled
        if tty is None:
            isatty = getattr(stream, "isatty", None)
            tty = bool(isatty()) if callable(isatty) else False
        self.tty = tty
        self.t0 = time.monotonic() if now is None else now
        self._width = 0

    def _eta(self, now: float) -> str:
        elapsed = now - self.t0
        if not self.done:
            return f"{_clock(elapsed)} elapsed"
        left = elapsed / self.done * (self.total - self.done)
        return f"{_clock(elapsed)} elapsed, ~{_clock(left)} left"

    def start(self, label: str, now: float | None = None) -> None:
        """A run is starting (drawn on a terminal only)."""
        if not (self.enabled and self.tty):
            return
        t = time.monotonic() if now is None else now
        line = (f"{bar(self.done, self.total)} {self.done}/{self.total}  "
                f"{label}  ({self._eta(t)})")
        # A line wider than the terminal would wrap, and "\r" would then
        # redraw only its last part.
        line = line[:max(20, shutil.get_terminal_size((120, 24)).columns - 1)]
        pad = max(0, self._width - len(line))
        self._width = len(line)
        self.stream.write("\r" + line + " " * pad)
        self.stream.flush()

    def finish(self, label: str, outcome: str, now: float | None = None) -> None:
        """A run has finished with *outcome* (a short result or error)."""
        self.done += 1
        if not self.enabled or self.tty:
            return
        t = time.monotonic() if now is None else now
        self.stream.write(f"[{self.done}/{self.total}] {label}: {outcome} "
                          f"({self._eta(t)})\n")
        self.stream.flush()

    def message(self, text: str) -> None:
        """A line that must stay visible (a warning)."""
        if not self.enabled:
            return
        self.clear()
        self.stream.write(text + "\n")
        self.stream.flush()

    def clear(self) -> None:
        if self.enabled and self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def close(self) -> None:
        self.clear()
