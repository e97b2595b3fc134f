"""Measuring inside a benchmark child: wall and CPU time, resident memory.

Owns: the clocks and memory probes every workload uses, so that all of them
measure the same way, and the allocator state every run starts from.
Never: imports a loop or treadle's runtime; the numbers must not depend on
which loop is under test.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from types import TracebackType


class Meter:
    """Wall time (``perf_counter``) and this process's CPU time of a block."""

    __slots__ = ("wall", "cpu", "_w0", "_c0")

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._w0 = 0.0
        self._c0 = 0.0

    def __enter__(self) -> "Meter":
        self._w0 = time.perf_counter()
        self._c0 = time.process_time()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.wall = time.perf_counter() - self._w0
        self.cpu = time.process_time() - self._c0


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss() -> int | None:
    """Resident set size of this process now, in bytes (Linux), else None."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


def peak_rss() -> int:
    """The most this process has ever had resident, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux and the BSDs, bytes on macOS.
    return int(peak if sys.platform == "darwin" else peak * 1024)


def rss_probe() -> tuple[int, str]:
    """(bytes, what was read): the current RSS where the OS tells it, else
    the peak (which can only grow, so deltas of it are upper bounds)."""
    now = current_rss()
    if now is not None:
        return now, "rss"
    return peak_rss(), "peak_rss"


def raise_fd_limit(wanted: int) -> int:
    """Raise this process's soft fd limit towards *wanted*; return the limit
    now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return int(soft) if soft != resource.RLIM_INFINITY else wanted


#: Size of the block allocated and freed before each run (see steady_allocator).
WARM_BLOCK = 4 << 20


def steady_allocator() -> None:
    """Put the C allocator in the state a long-running process reaches.

    glibc's malloc serves blocks above a threshold (128 KiB at start) with
    mmap, and raises that threshold the first time the process frees such
    a block.  asyncio's socket transports read into a fresh 256 KiB bytes
    object each time, so in a fresh process every read costs mmap, mremap
    and munmap until something frees a large block: measured here, asyncio's
    echo server needed four times the CPU per round trip, and whether it
    did depended on what unrelated imports had happened to allocate.  One
    large block freed first makes every loop run in the steady state, the
    same for all of them.  (A no-op on allocators without the threshold.)
    """
    block = bytearray(WARM_BLOCK)
    del block
