"""epoll, used directly.

Why not ``selectors.EpollSelector``: it wraps every event in a
``SelectorKey`` namedtuple and keeps a second fd map the kernel already
keeps.  ``select.epoll.poll`` returns ``(fd, mask)`` pairs, which is
exactly the backend interface, so a poll costs one syscall and one list.

Facts about epoll that matter here: it tracks open file *descriptions*,
not fd numbers, and drops a registration by itself when the last fd
referring to the description is closed; so a closed and reused fd number
may or may not still be registered.  ``register``/``modify`` therefore
fall back to each other, and ``unregister`` ignores "not registered" and
"bad fd".
"""

from __future__ import annotations

import errno
import select
from typing import Callable


class EpollBackend:
    __slots__ = ("_epoll", "poll")

    _epoll: select.epoll

    #: ``select.epoll.poll`` itself, bound once: the kernel calls it every
    #: turn, and it already speaks the interface (None blocks; a timeout is
    #: rounded *up* to whole milliseconds, so a timer is never woken early,
    #: which would cost an extra turn).
    poll: Callable[[float | None], list[tuple[int, int]]]

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self.poll = self._epoll.poll

    def fileno(self) -> int:
        return self._epoll.fileno()

    def register(self, fd: int, mask: int) -> None:
        try:
            self._epoll.register(fd, mask)
        except FileExistsError:
            self._epoll.modify(fd, mask)

    def modify(self, fd: int, mask: int) -> None:
        try:
            self._epoll.modify(fd, mask)
        except FileNotFoundError:
            self._epoll.register(fd, mask)

    def unregister(self, fd: int) -> None:
        try:
            self._epoll.unregister(fd)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EBADF):
                raise

    def close(self) -> None:
        self._epoll.close()
