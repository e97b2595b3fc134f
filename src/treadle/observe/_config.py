"""The environment variables that configure observation, read in one place.

Owns: parsing ``TREADLE_OBSERVE``, ``TREADLE_BLOCKING_THRESHOLD``,
``TREADLE_TRACK_TASKS`` and ``TREADLE_RUNTIME_DIR``.
Never: caches a value another module could not re-read: each function reads
the environment when called (a loop reads them when it is created).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping

#: The blocking threshold when nothing says otherwise (seconds).
DEFAULT_THRESHOLD = 0.1

_OFF = {"0", "off", "no", "false", "none", ""}


_NO_ENVIRONMENT: Mapping[str, str] = {}


def _environ() -> Mapping[str, str]:
    """Where treadle's settings are read from: the environment, or nothing
    under ``python -E`` (read in place, never copied)."""
    return _NO_ENVIRONMENT if sys.flags.ignore_environment else os.environ


def _env(name: str) -> str | None:
    return _environ().get(name)


def enabled() -> bool:
    """``TREADLE_OBSERVE=0`` turns every observation thread off: no blocking
    detector, no ``treadle ps``/``top`` socket.  (The loop's own counters
    stay: they cost nothing.)"""
    value = _env("TREADLE_OBSERVE")
    return value is None or value.strip().lower() not in _OFF


def threshold() -> float | None:
    """The blocking detector's default threshold in seconds, from
    ``TREADLE_BLOCKING_THRESHOLD`` (seconds, or ``off``); None: off."""
    if not enabled():
        return None
    value = _env("TREADLE_BLOCKING_THRESHOLD")
    if value is None:
        return DEFAULT_THRESHOLD
    text = value.strip().lower()
    if text in _OFF:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return DEFAULT_THRESHOLD
    if not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def track_tasks() -> bool:
    """``TREADLE_TRACK_TASKS=1``: per-task timing from the first turn."""
    value = _env("TREADLE_TRACK_TASKS")
    return value is not None and value.strip().lower() not in _OFF


def runtime_dir(uid: int, environ: Mapping[str, str] | None = None) -> str:
    """The directory holding ``<pid>.sock`` for a process of *uid* with the
    environment *environ* (ours by default)."""
    env = _environ() if environ is None else environ
    explicit = env.get("TREADLE_RUNTIME_DIR")
    if explicit:
        return explicit
    xdg = env.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, "treadle")
    return os.path.join("/tmp", f"treadle-{uid}")
