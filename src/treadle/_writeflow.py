"""asyncio's rules for the protocol side of every transport treadle has
(stream and datagram sockets, TLS, pipes, subprocesses).

Owns: the water-mark rule of ``set_write_buffer_limits()``, how a
transport tells its protocol to pause or resume writing, and the check of
what a protocol factory returned (``require_protocol``).
Never: keeps state; each transport keeps its own buffer and flags.
"""

from __future__ import annotations

from typing import Any

#: Defaults of asyncio's transports: pause above 64 KiB, resume at a quarter.
DEFAULT_HIGH_WATER = 64 * 1024


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
