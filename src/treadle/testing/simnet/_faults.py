"""Fault schedules as data: what happens to the network, and when.

Owns: ``Fault`` (one scripted event: at a virtual time, an action and its
arguments) and ``FaultSchedule`` (a list of them, sorted by time, that
prints back as text and parses from it), and the table of actions with
the arguments each takes.
Never: applies anything.  ``SimNetwork.schedule()`` checks a schedule
against its hosts and applies each fault at its time; faults the network
draws from the seed are recorded as ``Fault``s too, so a run's faults
print back as a schedule that scripts the same faults.

Text form, one fault per line (``#`` starts a comment)::

    at 5 partition a b
    at 5.5 partition a b one_way
    at 10 heal
    at 12 crash db
    at 20 restart db
    at 21 link a b latency=0.2 jitter=0.05
    at 30 dns_fail api.example
"""

from __future__ import annotations

import math
import shlex
from typing import Any, Iterable, Iterator

#: action -> (how many host names it takes: (min, max)), the flags it
#: accepts, and whether it takes key=value settings.
ACTIONS: dict[str, tuple[tuple[int, int], tuple[str, ...], bool]] = {
    "partition": ((1, 2), ("one_way",), False),
    "heal": ((0, 2), ("one_way",), False),
    "hold": ((2, 2), ("one_way",), False),
    "release": ((2, 2), ("one_way",), False),
    "crash": ((1, 1), (), False),
    "restart": ((1, 1), (), False),
    "reset": ((1, 1), (), False),
    "link": ((2, 2), ("one_way",), True),
    "dns_fail": ((0, 1), (), False),
    "dns_delay": ((0, 1), (), True),
    "dns_heal": ((0, 1), (), False),
}


class Fault:
    """One scripted fault: ``Fault(5.0, "partition", "a", "b", one_way=True)``."""

    __slots__ = ("time", "action", "args", "flags", "settings")

    def __init__(self, time: float, action: str, *args: str, **options: Any) -> None:
        if isinstance(time, bool) or not isinstance(time, (int, float)) \
                or math.isnan(time) or time < 0 or math.isinf(time):
            raise ValueError(f"a fault's time must be a finite number >= 0, got {time!r}")
        spec = ACTIONS.get(action)
        if spec is None:
            raise ValueError(f"unknown fault {action!r} (known: {', '.join(ACTIONS)})")
        (least, most), flag_names, takes_settings = spec
        if not least <= len(args) <= most:
            wanted = str(least) if least == most else f"{least} to {most}"
            raise ValueError(f"fault {action!r} takes {wanted} host name(s), "
                             f"got {len(args)}: {args!r}")
        for arg in args:
            if not isinstance(arg, str) or not arg:
                raise TypeError(f"fault {action!r}: host names are strings, got {arg!r}")
        flags = []
        settings = {}
        for key, value in options.items():
            if key in flag_names:
                if value:
                    flags.append(key)
            elif takes_settings:
                settings[key] = value
            else:
                raise ValueError(f"fault {action!r} takes no option {key!r}")
        self.time = float(time)
        self.action = action
        self.args = tuple(args)
        self.flags = tuple(flags)
        self.settings = settings

    def options(self) -> dict[str, Any]:
        out: dict[str, Any] = {f: True for f in self.flags}
        out.update(self.settings)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fault) and str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __repr__(self) -> str:
        return f"Fault({str(self)!r})"

    def __str__(self) -> str:
        parts = [f"at {_num(self.time)}", self.action, *self.args, *self.flags]
        parts += [f"{k}={_num(v) if isinstance(v, float) else v}"
                  for k, v in self.settings.items()]
        return " ".join(parts)


def _num(value: float) -> str:
    value = round(float(value), 9)
    return str(int(value)) if value.is_integer() else repr(value)


def parse_fault(line: str) -> Fault:
    """A fault from its text form (``"at 5 partition a b"``)."""
    words = shlex.split(line, comments=True)
    if len(words) < 2 or words[0] != "at":
        raise ValueError(f"a fault line reads 'at TIME ACTION ...', got {line!r}")
    try:
        time = float(words[1])
    except ValueError:
        raise ValueError(f"bad time {words[1]!r} in fault line {line!r}") from None
    if len(words) < 3:
        raise ValueError(f"no action in fault line {line!r}")
    action = words[2]
    spec = ACTIONS.get(action)
    if spec is None:
        raise ValueError(f"unknown fault {action!r} in {line!r} (known: {', '.join(ACTIONS)})")
    args: list[str] = []
    options: dict[str, Any] = {}
    for word in words[3:]:
        if "=" in word:
            key, _, value = word.partition("=")
            try:
                options[key] = float(value)
            except ValueError:
                options[key] = None if value == "None" else value
        elif word in spec[1]:
            options[word] = True
        else:
            args.append(word)
    return Fault(time, action, *args, **options)


class FaultSchedule:
    """Faults sorted by time (faults at the same time keep their order)."""

    def __init__(self, faults: Iterable[Fault | tuple[Any, ...] | str] = ()) -> None:
        items = []
        for fault in faults:
            if isinstance(fault, str):
                fault = parse_fault(fault)
            elif isinstance(fault, tuple):
                if len(fault) < 2:
                    raise ValueError(f"a fault tuple is (time, action, *hosts), got {fault!r}")
                options = fault[-1] if isinstance(fault[-1], dict) else {}
                names = fault[2:-1] if options else fault[2:]
                fault = Fault(fault[0], fault[1], *names, **options)
            elif not isinstance(fault, Fault):
                raise TypeError(f"not a fault: {fault!r}")
            items.append(fault)
        self.faults = sorted(items, key=lambda f: f.time)

    @classmethod
    def parse(cls, text: str) -> FaultSchedule:
        """A schedule from its text form: one fault per line."""
        lines = [line for line in text.splitlines() if shlex.split(line, comments=True)]
        return cls(parse_fault(line) for line in lines)

    def __iter__(self) -> Iterator[Fault]:
        return iter(self.faults)

    def __len__(self) -> int:
        return len(self.faults)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FaultSchedule) and str(self) == str(other)

    def __str__(self) -> str:
        return "\n".join(str(f) for f in self.faults)

    def __repr__(self) -> str:
        return f"FaultSchedule.parse({str(self)!r})"
