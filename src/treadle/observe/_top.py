"""``treadle top PID``: the live view, in a terminal.

Owns: the terminal side of ``top``: a curses screen redrawn whenever the
process sends a frame (each second), keys to change the sort (←/→ or
``<``/``>`` pick the column, ``r`` reverses, ``q`` quits), and ``--once``,
which prints one frame as plain text.
Never: computes anything the frames do not carry (``_render.top_lines``
lays them out; rates are differences between two frames).
"""

from __future__ import annotations

import select
import sys
from typing import Any

from ._client import ClientError, Session
from ._render import TOP_COLUMNS, top_lines

SORTABLE = [key for _title, key, _w, _r in TOP_COLUMNS if key is not None]


def run_top(pid: int, *, interval: float, sort: str, once: bool,
            reverse: bool = False) -> int:
    with Session(pid) as session:
        limit = 50 if once else 500
        session.send({"cmd": "top", "interval": interval, "sort": sort,
                      "reverse": reverse, "limit": limit})
        if once or not sys.stdout.isatty():
            first = session.read()
            second = session.read()     # one interval later: rates and timings
            width = _width() if sys.stdout.isatty() else 1000
            print("\n".join(top_lines(second, first, width=width)))
            return 0
        import curses
        return int(curses.wrapper(_screen, session, sort, reverse))


def _width() -> int:
    import shutil
    return max(80, shutil.get_terminal_size((160, 40)).columns)


def _screen(stdscr: Any, session: Session, sort: str, reverse: bool) -> int:
    import curses
    curses.curs_set(0)
    stdscr.nodelay(True)
    stdscr.keypad(True)
    previous: dict[str, Any] | None = None
    current: dict[str, Any] | None = None
    session.settimeout(None)
    while True:
        ready, _, _ = select.select([session.fileno(), sys.stdin.fileno()], [], [], 0.2)
        if session.fileno() in ready:
            previous, current = current, session.read()
            _draw(stdscr, current, previous)
        while True:
            key = stdscr.getch()
            if key == -1:
                break
            if key in (ord("q"), ord("Q"), 27):
                return 0
            if key in (curses.KEY_RIGHT, ord(">"), ord(".")):
                sort = SORTABLE[(SORTABLE.index(sort) + 1) % len(SORTABLE)] \
                    if sort in SORTABLE else SORTABLE[0]
            elif key in (curses.KEY_LEFT, ord("<"), ord(",")):
                sort = SORTABLE[(SORTABLE.index(sort) - 1) % len(SORTABLE)] \
                    if sort in SORTABLE else SORTABLE[0]
            elif key in (ord("r"), ord("R")):
                reverse = not reverse
            elif key == curses.KEY_RESIZE and current is not None:
                _draw(stdscr, current, previous)
                continue
            else:
                continue
            session.send({"sort": sort, "reverse": reverse})


def _draw(stdscr: Any, doc: dict[str, Any], previous: dict[str, Any] | None) -> None:
    import curses
    height, width = stdscr.getmaxyx()
    lines = top_lines(doc, previous, width=max(20, width - 1))
    lines.append("")
    stdscr.erase()
    footer = "←/→ sort column   r reverse   q quit"
    for y, line in enumerate(lines[:max(1, height - 1)]):
        attr = curses.A_REVERSE if line.startswith("ID") else curses.A_NORMAL
        try:
            stdscr.addnstr(y, 0, line, max(1, width - 1), attr)
        except curses.error:
            pass
    try:
        stdscr.addnstr(height - 1, 0, footer, max(1, width - 1), curses.A_DIM)
    except curses.error:
        pass
    stdscr.refresh()


__all__ = ["ClientError", "run_top"]
