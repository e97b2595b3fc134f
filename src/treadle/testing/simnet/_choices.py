"""Every decision of a simulated run, as one list of numbers.

Owns: the *choice sources* that decide what a simulation leaves to chance -
which ready task runs first, whether a datagram is lost, how much jitter a
packet gets, whether a random fault strikes - and the record of what they
decided, which is what replaying and shrinking a run work on.
Never: touches a loop, a socket or the clock.  Callers ask; this module
answers and writes the answer down.

The model (after Hypothesis' choice sequences and simloom's recorded
choices): a run asks a sequence of questions, each one of three kinds -
``pick(n)`` (one of n ready items; 0 is the canonical one), ``flip(p)``
(a fault that strikes with probability p; 0 is "no fault") and
``fraction()`` (a point in [0, 1) for jitter; 0 is "none").  The answers,
in order, are the run's *record*.  A non-zero answer is a *deviation*
from the plain run, the run in which nothing is left to chance.  Replaying
a record - or any dict ``{position: answer}``, every other answer 0 -
reproduces the run exactly, so a failing run can be shrunk to its fewest
deviations and printed as a short string (``"17:2,104:1"``).

Only ``random.Random.random()`` is used to draw: it is the one method
Python promises to keep producing the same sequence from the same seed on
every version, so a seed means the same answers on 3.11 and 3.15.
"""

from __future__ import annotations

import random
from typing import Sequence

#: Kinds of question, as recorded in ``Choices.kinds``.
PICK = "p"
FLIP = "f"
FRACTION = "x"


class Source:
    """Where answers come from.  ``answer(kind, n, p, position, keys)``
    returns the raw answer; ``Choices`` clamps and records it.  Only a
    source with ``wants_keys`` is told which tasks a pick is between."""

    wants_keys = False

    def answer(self, kind: str, n: int, p: float, position: int,
               keys: Sequence[int] | None) -> float:
        raise NotImplementedError


class RandomSource(Source):
    """Answers drawn from ``random.Random(seed)``: uniform picks, flips with
    their probability, uniform fractions."""

    def __init__(self, seed: int, *, shuffle: bool = True) -> None:
        self.rng = random.Random(seed)
        self.shuffle = shuffle

    def answer(self, kind: str, n: int, p: float, position: int,
               keys: Sequence[int] | None) -> float:
        if kind == PICK:
            if not self.shuffle:
                return 0
            return min(n - 1, int(self.rng.random() * n))
        if kind == FLIP:
            return 1 if self.rng.random() < p else 0
        return self.rng.random()


class ReplaySource(Source):
    """Answers from a record: position -> answer, 0 everywhere else.  Used
    to replay, to shrink and, with a *then* source, to explore around a
    prefix (bounded systematic search)."""

    def __init__(self, answers: dict[int, float], then: Source | None = None,
                 upto: int = -1) -> None:
        self.answers = answers
        self.then = then
        self.upto = upto

    def answer(self, kind: str, n: int, p: float, position: int,
               keys: Sequence[int] | None) -> float:
        if self.then is not None and position > self.upto:
            return self.then.answer(kind, n, p, position, keys)
        return self.answers.get(position, 0)


class PCTSource(Source):
    """Probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010),
    on treadle's batches.

    Each task gets a random priority when first seen; a pick goes to the
    ready task of highest priority.  At *depth - 1* change points, drawn
    uniformly from the first *steps* picks, the task just picked drops below
    every other.  A bug of depth d (d ordering constraints) is found with
    probability at least 1 / (n * k^(d-1)) per run, for n tasks and k
    steps.  Flips and fractions are drawn as ``RandomSource`` draws them."""

    wants_keys = True

    def __init__(self, seed: int, *, depth: int = 3, steps: int = 2000) -> None:
        if depth < 1:
            raise ValueError(f"PCT depth must be >= 1, got {depth}")
        if steps < 1:
            raise ValueError(f"PCT steps must be >= 1, got {steps}")
        self.rng = random.Random(seed)
        self.priorities: dict[int, float] = {}
        self.change_points = sorted(
            1 + int(self.rng.random() * steps) for _ in range(depth - 1))
        self.low = 0.0
        self.picks = 0

    def answer(self, kind: str, n: int, p: float, position: int,
               keys: Sequence[int] | None) -> float:
        if kind == FLIP:
            return 1 if self.rng.random() < p else 0
        if kind == FRACTION:
            return self.rng.random()
        self.picks += 1
        if keys is None:
            keys = range(n)
        priorities = self.priorities
        best = 0
        best_priority = -1.0
        for i, key in enumerate(keys):
            priority = priorities.get(key)
            if priority is None:
                priority = priorities[key] = 1.0 + self.rng.random()
            if priority > best_priority:
                best, best_priority = i, priority
        if self.change_points and self.picks == self.change_points[0]:
            while self.change_points and self.change_points[0] == self.picks:
                self.change_points.pop(0)
            self.low -= 1.0
            priorities[keys[best]] = self.low
        return best


class Choices:
    """The decisions of one run: asks its source, clamps the answer to the
    question, and records it."""

    __slots__ = ("source", "record", "kinds", "arity", "wants_keys")

    def __init__(self, source: Source) -> None:
        self.source = source
        self.wants_keys = source.wants_keys
        self.record: list[float] = []
        self.kinds: list[str] = []
        #: How many answers each question had (0: a fraction, continuous).
        self.arity: list[int] = []

    def pick(self, n: int, keys: Sequence[int] | None = None) -> int:
        """One of *n* (n >= 2) ready items; 0 is the canonical first."""
        position = len(self.record)
        raw = self.source.answer(PICK, n, 0.0, position, keys)
        value = int(raw)
        if not 0 <= value < n:
            value = value % n if value > 0 else 0
        self.record.append(value)
        self.kinds.append(PICK)
        self.arity.append(n)
        return value

    def flip(self, p: float) -> bool:
        """True with probability *p* (a fault strikes)."""
        position = len(self.record)
        value = 1 if self.source.answer(FLIP, 2, p, position, None) else 0
        self.record.append(value)
        self.kinds.append(FLIP)
        self.arity.append(2)
        return bool(value)

    def fraction(self) -> float:
        """A number in [0, 1) (0: the least, e.g. no jitter)."""
        position = len(self.record)
        value = float(self.source.answer(FRACTION, 0, 0.0, position, None))
        if not 0.0 <= value < 1.0:
            value = 0.0
        self.record.append(value)
        self.kinds.append(FRACTION)
        self.arity.append(0)
        return value

    def deviations(self) -> dict[int, float]:
        """Position -> answer, for every answer that is not 0."""
        return {i: v for i, v in enumerate(self.record) if v}


def format_deviations(deviations: dict[int, float]) -> str:
    """``{17: 2, 104: 0.25}`` -> ``"17:2,104:0.25"`` (``"-"`` for none)."""
    if not deviations:
        return "-"
    parts = []
    for position in sorted(deviations):
        value = deviations[position]
        text = str(int(value)) if float(value).is_integer() else repr(float(value))
        parts.append(f"{position}:{text}")
    return ",".join(parts)


def parse_deviations(text: str) -> dict[int, float]:
    """The inverse of ``format_deviations``; ``ValueError`` naming the bad
    part."""
    text = text.strip()
    if text in ("", "-"):
        return {}
    out: dict[int, float] = {}
    for part in text.split(","):
        position, sep, value = part.strip().partition(":")
        try:
            if not sep:
                raise ValueError
            index = int(position)
            number = float(value)
            if index < 0:
                raise ValueError
        except ValueError:
            raise ValueError(
                f"bad replay entry {part!r}: expected POSITION:VALUE, "
                f"e.g. 17:2") from None
        out[index] = int(number) if number.is_integer() else number
    return out
