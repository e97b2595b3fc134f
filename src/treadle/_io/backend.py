"""The interface between the kernel and a readiness backend.

Owns: the contract every backend keeps.  The kernel's run loop calls
``poll(timeout)`` once per turn at most and turns each ``(fd, mask)`` it
gets back into reader/writer callbacks; it calls ``register``/``modify``/
``unregister`` only when the set of events it wants for an fd changes.
That is the whole interface (as asyncio's ``_run_once`` sees only
``select()``, and Trio's run loop only its IOManager): no sockets, no
transports, no callbacks cross it.

Rules:

1. Masks use epoll's bit values: ``READABLE`` (EPOLLIN) and ``WRITABLE``
   (EPOLLOUT).  A backend may report other bits (error, hang-up); the
   kernel treats any bit other than WRITABLE as "wake the reader" and any
   bit other than READABLE as "wake the writer", so a peer reset reaches
   whoever is waiting.
2. Registrations are level-triggered: an fd that stays readable is reported
   on every poll, so a reader that leaves data unread is called again.
3. ``register`` on an fd the backend already holds, or ``modify`` on one it
   does not, must still end with the fd registered for the given mask (fd
   numbers are reused after close, and the kernel cannot always know).
4. ``unregister`` of an fd that was closed in the meantime is silent.
"""

from __future__ import annotations

import select
from typing import Final, Protocol

READABLE: Final = 0x001
WRITABLE: Final = 0x004


class IOBackend(Protocol):
    """What the kernel needs from a readiness backend."""

    def register(self, fd: int, mask: int) -> None: ...

    def modify(self, fd: int, mask: int) -> None: ...

    def unregister(self, fd: int) -> None: ...

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to *timeout* seconds (None: forever, 0: don't block) and
        return the ready ``(fd, mask)`` pairs."""
        ...

    def close(self) -> None: ...

    def fileno(self) -> int: ...


def default_backend() -> IOBackend:
    """epoll on Linux; the best ``selectors`` selector elsewhere."""
    if hasattr(select, "epoll"):
        from .epoll import EpollBackend
        return EpollBackend()
    from .selector import SelectorBackend
    return SelectorBackend()
