"""A backend over the stdlib ``selectors`` module, for platforms without
epoll (macOS and the BSDs get kqueue, others poll or select)."""

from __future__ import annotations

import selectors

from .backend import READABLE, WRITABLE

_TO_SEL = {READABLE: selectors.EVENT_READ, WRITABLE: selectors.EVENT_WRITE,
           READABLE | WRITABLE: selectors.EVENT_READ | selectors.EVENT_WRITE}


class SelectorBackend:
    __slots__ = ("_sel",)

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        """On *selector* (asyncio's ``SelectorEventLoop(selector)``), else
        on the platform's default one.  The backend owns it: ``close()``
        closes it."""
        self._sel = selectors.DefaultSelector() if selector is None else selector

    def fileno(self) -> int:
        fileno = getattr(self._sel, "fileno", None)
        return int(fileno()) if fileno is not None else -1

    def register(self, fd: int, mask: int) -> None:
        try:
            self._sel.register(fd, _TO_SEL[mask])
        except KeyError:
            self._sel.modify(fd, _TO_SEL[mask])

    def modify(self, fd: int, mask: int) -> None:
        try:
            self._sel.modify(fd, _TO_SEL[mask])
        except KeyError:
            self._sel.register(fd, _TO_SEL[mask])

    def unregister(self, fd: int) -> None:
        try:
            self._sel.unregister(fd)
        except (KeyError, ValueError, OSError):
            pass

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        out = []
        for key, events in self._sel.select(timeout):
            mask = 0
            if events & selectors.EVENT_READ:
                mask |= READABLE
            if events & selectors.EVENT_WRITE:
                mask |= WRITABLE
            out.append((key.fd, mask))
        return out

    def close(self) -> None:
        self._sel.close()
