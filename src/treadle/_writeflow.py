"""How every treadle transport writes: the write rule, the write buffer and
asyncio's flow control, in one place (compiled).

Owns:

* **The write rule** (``WriteRule``): asyncio's "``write()`` sends at
  once", with one exception.  In order:

  1. While the transport is calling its own protocol (``data_received``,
     ``buffer_updated``, ``eof_received``, ``connection_made``,
     ``resume_writing``), a write only buffers; everything written goes out
     together when that call returns.  A handler that writes a header and
     a body sends one packet, not two.
  2. Otherwise a write goes out at once, as on asyncio: a peer doing a
     blocking ``recv`` right after ``writer.write(b"x")`` in the same
     thread sees the byte (uvloop issue #631), a task that writes and then
     blocks has sent what it wrote, and a task writing in a loop without
     yielding sees its peer's errors at the next write.

     (Until December 2026 later writes of a loop turn were held and left
     together at its end.  That saved syscalls for a task writing in a
     loop, and cost more where it mattered: the second write of a
     response, say uvicorn's body after its headers, left a whole turn
     after the first, so a client on another CPU was woken twice per
     response, not once; measured under wrk, the server spent 50% more
     kernel time per Starlette request than uvloop's, and sending at once
     served 15% more requests.)
  3. Whatever the fd does not accept stays buffered, the loop watches the
     fd for writability, and above the high-water mark the protocol is
     paused (asyncio's rule).  Bytes held back by rule 1 never pause the
     protocol by themselves: crossing the high-water mark sends them at
     once, and only what the fd refuses counts.

  ``WriteRule`` decides *when*; each transport decides *how* (``send`` /
  ``sendmsg`` for sockets, ``os.write`` / ``os.writev`` for pipes, TLS
  records for TLS).  It is the base class of the socket transports' core
  (``_net/core.py``) and an attribute of the pipe and TLS transports.

* **The write buffer** (``WriteBuffer``): the bytes a transport accepted and
  the fd has not taken yet, as a list of chunks that goes to ``sendmsg`` /
  ``writev`` as it is (a burst of writes costs one syscall and no joining
  copy), with asyncio's pause/resume rule over its size.  A partly sent
  chunk is kept as a ``memoryview`` slice: a large chunk is never copied
  again to drop its head.
* asyncio's water-mark rule (``water_marks``), telling a protocol to pause
  or resume (``tell_protocol``), the warning for writes after the
  connection was lost (``lost_write``), and the check of what a protocol
  factory returned (``require_protocol``).

Never: touches an fd or a protocol's data.  ``WriteBuffer`` is a plain
state machine (tested without a loop in ``tests/proc/test_flow.py``);
``WriteRule`` counts the transport's calls into its protocol, and
registers end-of-batch work (TLS), nothing else.

Why compiled: the socket transports' hot path (``_net/core.py``) runs
through here on every write; compiled, these are direct C calls.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Final

from ._kernel import _compat
from ._kernel.loop import KernelLoop

#: Defaults of asyncio's transports: pause above 64 KiB, resume at a quarter.
DEFAULT_HIGH_WATER: Final = 64 * 1024

#: A transport warns once its protocol keeps writing this many times after
#: the connection was lost (asyncio's LOG_THRESHOLD_FOR_CONNLOST_WRITES).
CONNLOST_WRITES_LOG_THRESHOLD: Final = 5


def _iov_max() -> int:
    try:
        value = os.sysconf("SC_IOV_MAX")
    except (AttributeError, ValueError, OSError):
        value = -1
    # POSIX guarantees at least 16; Linux and the BSDs say 1024.
    return value if value > 0 else 16


#: The most chunks one ``sendmsg`` / ``os.writev`` may take.
IOV_MAX: Final = _iov_max()


def water_marks(high: int | None, low: int | None,
                default_high: int = DEFAULT_HIGH_WATER) -> tuple[int, int]:
    """``(high, low)`` by asyncio's rule: *high* defaults to *default_high*
    (or four times *low* when only *low* is given), *low* to a quarter of
    *high*; ``ValueError`` unless ``high >= low >= 0``."""
    if high is None:
        high = default_high if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


def tell_protocol(loop: Any, transport: Any, protocol: Any, method: str,
                  report_as: Any = None) -> None:
    """Call ``protocol.pause_writing()`` or ``resume_writing()`` (*method*);
    a failure goes to the loop's exception handler, as on asyncio, naming
    *transport* and *protocol* (or *report_as*: TLS names its own protocol
    object, as asyncio's SSLProtocol does), and the transport carries on."""
    try:
        getattr(protocol, method)()
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        loop.call_exception_handler({
            "message": f"protocol.{method}() failed",
            "exception": exc,
            "transport": transport,
            "protocol": protocol if report_as is None else report_as,
        })


def require_protocol(protocol: Any) -> None:
    """Raise asyncio's ``AttributeError`` if *protocol* (what a protocol
    factory returned) has no ``connection_made``.  asyncio's transports
    look the method up as they are made, so that is how its
    ``create_connection(lambda: None, ...)`` and the like fail.  Checked
    before anything is made: the call fails cleanly, with no half-made
    transport left for the garbage collector, and no child spawned."""
    protocol.connection_made  # noqa: B018 - the lookup is the check


def lost_write(count: int, message: str) -> int:
    """A write after the connection was lost: dropped, as on asyncio, which
    logs *message* once such writes pile up.  Returns the new count."""
    if count >= CONNLOST_WRITES_LOG_THRESHOLD:
        _compat.log(logging.WARNING, message)
    return count + 1


def byte_view(data: Any) -> Any:
    """*data* (bytes-like) as an object whose ``len()`` is its size in bytes
    and that ``send``/``os.write`` take: a multi-byte or multi-dimensional
    memoryview is cast to bytes, a non-contiguous one copied."""
    if type(data) is memoryview and (data.itemsize != 1 or data.ndim != 1
                                     or not data.c_contiguous):
        if data.c_contiguous:
            return data.cast("B")
        return data.tobytes()
    return data


#: asyncio's stream socket transports have a writelines() of their own from
#: 3.12 (its own checks first, then a memoryview of each item); before it,
#: the base class's joins the items and calls write().
WRITELINES_OWN: Final = _compat.PY312

#: From 3.14 (3.14.10 here, and 3.15) that writelines() passes over items
#: that are false (``if data``: an empty chunk, but also None or 0) before
#: taking a memoryview of the rest, so ``writelines([b"a", None])`` sends
#: ``b"a"`` there and raises ``TypeError`` on 3.12 and 3.13.
WRITELINES_SKIPS_FALSE: Final = _compat.PY314


def refuse_writes(eof: bool, sendfile_in_progress: bool, method: str) -> None:
    """asyncio's refusals of a write on a stream socket transport after
    ``write_eof()`` or during a ``sendfile()``, in the words of *method*,
    the method that was called."""
    if eof:
        raise RuntimeError(f"Cannot call {method}() after write_eof()")
    if sendfile_in_progress:
        raise RuntimeError(f"unable to {method}; sendfile is in progress")


def writelines_items(list_of_data: Any, joined: bool = not WRITELINES_OWN) -> list[Any]:
    """The non-empty items of a ``writelines()`` call, as ``byte_view``s.
    Any object with the buffer protocol is taken, as asyncio takes it, and
    anything else refused with asyncio's ``TypeError``: ``bytes.join``'s
    where asyncio joins the items (*joined*: the base class's
    ``writelines()``, which pipe transports keep on every version and
    socket transports up to 3.11), else the one a ``memoryview`` of it
    raises (after passing over false items, where asyncio's does:
    ``WRITELINES_SKIPS_FALSE``)."""
    try:
        items = iter(list_of_data)
    except TypeError:
        if not joined:
            raise
        raise TypeError("can only join an iterable") from None
    skip_false = WRITELINES_SKIPS_FALSE and not joined
    chunks = []
    index = 0
    for data in items:
        if type(data) is not bytes:
            if skip_false and not data:
                continue
            try:
                data = byte_view(data if isinstance(data, (bytearray, memoryview))
                                 else memoryview(data))
            except TypeError:
                if not joined:
                    raise
                raise TypeError(f"sequence item {index}: expected a bytes-like object, "
                                f"{type(data).__name__} found") from None
        if len(data):
            chunks.append(data)
        index += 1
    return chunks


def frozen(data: Any) -> Any:
    """*data* (from ``byte_view``), or a copy of it if the caller could still
    change it after ``write()`` returns (a ``bytearray``, a writable
    ``memoryview``)."""
    t = type(data)
    if t is bytes:
        return data
    if t is memoryview and data.readonly:
        return data
    return bytes(data)


class WriteBuffer:
    """Pending output plus asyncio's pause/resume rule.

    ``chunks`` is what goes to ``sendmsg``/``writev`` (at most ``IOV_MAX``
    at a time); ``size`` is what ``get_write_buffer_size()`` reports;
    ``paused`` is whether the protocol has been told ``pause_writing()`` and
    not yet ``resume_writing()``.
    """

    __slots__ = ("chunks", "size", "high", "low", "paused")

    chunks: list[Any]
    size: int
    high: int
    low: int
    paused: bool

    def __init__(self) -> None:
        self.chunks = []
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

    def push(self, data: Any) -> None:
        """Queue *data* (non-empty, from ``byte_view``, not to be mutated by
        anyone: see ``frozen``)."""
        self.chunks.append(data)
        self.size += len(data)

    def head(self, limit: int = IOV_MAX) -> list[Any]:
        """The chunks one ``sendmsg``/``writev`` may take (the list itself
        when it is short enough: send it before changing the buffer)."""
        chunks = self.chunks
        if len(chunks) <= limit:
            return chunks
        return chunks[:limit]

    def advance(self, n: int) -> None:
        """Drop the first *n* bytes: the fd took them."""
        if n <= 0:
            return
        if n > self.size:
            raise ValueError(f"advance({n}) past the end of a {self.size}-byte buffer")
        self.size -= n
        chunks = self.chunks
        if not self.size:
            chunks.clear()
            return
        i = 0
        while n:
            chunk = chunks[i]
            length = len(chunk)
            if n >= length:
                n -= length
                i += 1
            else:
                chunks[i] = memoryview(chunk)[n:]
                n = 0
        if i:
            del chunks[:i]

    def freeze(self) -> None:
        """Copy every chunk the caller could still change (chunks pushed
        unfrozen because they were about to be sent at once)."""
        chunks = self.chunks
        for i in range(len(chunks)):
            chunks[i] = frozen(chunks[i])

    def clear(self) -> None:
        self.chunks.clear()
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


class WriteRule:
    """When a transport's writes leave (rules 1 and 2 of the module
    docstring).  The transport keeps the data; this keeps the timing.

    ``in_callback()``: must this write wait (rule 1)?
    ``enter_callback()`` / ``leave_callback()`` bracket the transport's
    calls into its protocol (they nest).  ``after_batch(fn)``: run *fn* at
    the end of the loop's current batch (TLS orders a failed handshake's
    wake-up after its alert with it).
    """

    # (Slots in every core class: the interpreted build's objects have the
    # compiled build's shape, no __dict__ and no weak references.)
    __slots__ = ("_kernel", "_callback_depth")

    #: The loop's kernel, when it is treadle's (None: no batches).
    _kernel: KernelLoop | None
    #: Depth of the transport's calls into its protocol (rule 1).
    _callback_depth: int

    def __init__(self, loop: object) -> None:
        self._kernel = loop if isinstance(loop, KernelLoop) else None
        self._callback_depth = 0

    def in_callback(self) -> bool:
        return self._callback_depth != 0

    def enter_callback(self) -> None:
        self._callback_depth += 1

    def leave_callback(self) -> None:
        self._callback_depth -= 1

    def after_batch(self, fn: Callable[[], object]) -> bool:
        """Run *fn* at the end of the current batch (False, and nothing
        done, on a loop that is not treadle's)."""
        kernel = self._kernel
        if kernel is None:
            return False
        kernel._call_at_batch_end(fn)
        return True
