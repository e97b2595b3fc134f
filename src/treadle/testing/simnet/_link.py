"""Links: how long a packet takes from one host to another, and whether it
gets there.

Owns: one direction of the path between two hosts - latency, jitter,
bandwidth (a packet waits for the ones before it to be sent), the
datagram fault rates (loss, duplication, reordering), and the scripted
states: partitioned (packets are lost) and held (packets wait at the link
until released).
Never: schedules anything or touches a socket.  ``transit()`` answers "when
does a packet sent now arrive", ``datagram_copies()`` "how many copies of
a datagram arrive, with what extra delay"; the network stack acts on the
answers.  Randomness comes only from the run's ``Choices``.
"""

from __future__ import annotations

import math
from typing import Any

from ._choices import Choices

#: What each link parameter means and its default (seconds, bytes/second,
#: probabilities).
DEFAULTS: dict[str, float | None] = {
    "latency": 0.001,       # one-way delay
    "jitter": 0.0,          # extra delay, uniform in [0, jitter)
    "bandwidth": None,      # bytes per second (None: unlimited)
    "loss": 0.0,            # datagrams lost (TCP retransmits: a delay)
    "duplicate": 0.0,       # datagrams delivered twice
    "reorder": 0.0,         # datagrams held back by reorder_delay
    "reorder_delay": 0.01,  # how far a reordered datagram falls behind
}


def check_params(params: dict[str, Any]) -> dict[str, float | None]:
    """Validated link parameters (``TypeError``/``ValueError`` naming the
    bad one)."""
    out: dict[str, float | None] = {}
    for name, value in params.items():
        if name not in DEFAULTS:
            raise TypeError(f"unknown link parameter {name!r} "
                            f"(known: {', '.join(DEFAULTS)})")
        if value is None and name == "bandwidth":
            out[name] = None
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"link parameter {name} must be a number, got {value!r}")
        number = float(value)
        if math.isnan(number) or number < 0 or math.isinf(number):
            raise ValueError(f"link parameter {name} must be a finite number >= 0, "
                             f"got {value!r}")
        if name in ("loss", "duplicate", "reorder") and number > 1:
            raise ValueError(f"link parameter {name} is a probability (0..1), "
                             f"got {value!r}")
        if name == "bandwidth" and number == 0:
            raise ValueError("link parameter bandwidth must be > 0 (None: unlimited)")
        out[name] = number
    return out


class Link:
    """One direction of the path from one host to another."""

    __slots__ = ("src", "dst", "latency", "jitter", "bandwidth", "loss",
                 "duplicate", "reorder", "reorder_delay", "blocked", "held",
                 "busy_until")

    def __init__(self, src: str, dst: str, params: dict[str, float | None]) -> None:
        self.src = src
        self.dst = dst
        self.latency = 0.0
        self.jitter = 0.0
        self.bandwidth: float | None = None
        self.loss = 0.0
        self.duplicate = 0.0
        self.reorder = 0.0
        self.reorder_delay = 0.0
        #: Partitioned: every packet that would cross is lost.
        self.blocked = False
        #: Held: packets wait at the far end until released.
        self.held = False
        #: When the link finishes sending what it has (bandwidth).
        self.busy_until = 0.0
        self.configure(params)

    def configure(self, params: dict[str, float | None]) -> None:
        for name, value in params.items():
            setattr(self, name, value)

    def settings(self) -> dict[str, float | None]:
        return {name: getattr(self, name) for name in DEFAULTS}

    def __repr__(self) -> str:
        state = " partitioned" if self.blocked else ""
        state += " held" if self.held else ""
        return f"<Link {self.src}->{self.dst} latency={self.latency}{state}>"

    @property
    def passes(self) -> bool:
        """True when a packet sent now can get through (not partitioned)."""
        return not self.blocked

    def transit(self, now: float, nbytes: int, choices: Choices) -> float:
        """When a packet of *nbytes* sent at *now* arrives (bandwidth queues
        it behind the packets before it; jitter comes from *choices*)."""
        start = now
        bandwidth = self.bandwidth
        if bandwidth is not None:
            if self.busy_until > start:
                start = self.busy_until
            start += nbytes / bandwidth
            self.busy_until = start
        arrival = start + self.latency
        if self.jitter:
            arrival += self.jitter * choices.fraction()
        return arrival

    def datagram_copies(self, choices: Choices) -> list[float]:
        """Extra delays of the copies of one datagram that arrive: [] when it
        is lost, two entries when duplicated, a delay when reordered."""
        if self.loss and choices.flip(self.loss):
            return []
        delay = self.reorder_delay if self.reorder and choices.flip(self.reorder) else 0.0
        if self.duplicate and choices.flip(self.duplicate):
            return [delay, delay]
        return [delay]
