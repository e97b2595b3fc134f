"""Seeded scheduling: the ready-order function behind ``new_event_loop(seed=N)``.

Owns: deciding, from a seeded RNG, the order in which one turn's batch of
ready items (task steps and callbacks) runs, and working out which items
must keep their relative order.
Never: drops, duplicates or delays an item (the batch that comes in is the
batch that goes out, in the same turn), and never reorders two items from
one *source*: one task's steps, one future's callbacks, one transport's or
protocol's callbacks, repeated calls of one function.  A protocol never sees
its data reordered and a future's callbacks run in the order they were
added, exactly as on asyncio; only *which source goes first* varies, which
is where races between tasks live (Trio shuffles its batches the same way).

How sources are found (``sources_of``): a task step is its task; a callback
(a ``Handle``) is linked to the object its callback is bound to, to the
objects in its arguments (the future a done-callback is for, the task a
wake-up is for), to what a ``functools.partial`` or a closure holds, and,
when it holds nothing else, to the callback function itself.  Items that
share any source form one group (union-find over the batch); the output is a
uniformly random interleaving of the groups, each group in its own order.
Linking too much only shuffles less; it can never break a protocol.

Reproducibility: the groups are put in a canonical order before the RNG is
consulted (tasks by the order in which they were created on this loop,
other groups by their place in the batch), so the same seed gives the same
order even where asyncio itself iterates a set of tasks (``TaskGroup``
cancelling its children) whose order depends on memory addresses.
"""

from __future__ import annotations

import functools
import random
import types
from typing import Any

# Values that identify nothing: equal values from unrelated code would link
# unrelated callbacks.
_ANONYMOUS = (type(None), bool, int, float, complex, str, bytes, bytearray,
              memoryview, range, type, types.ModuleType, BaseException)

_NO_CALLBACK = object()


def _add_object(value: object, out: list[object], depth: int = 0) -> None:
    if isinstance(value, _ANONYMOUS):
        return
    if isinstance(value, (tuple, list, frozenset)):
        if depth < 1:
            for inner in value:
                _add_object(inner, out, depth + 1)
        return
    out.append(value)


def _add_callable(fn: object, out: list[object]) -> None:
    """Add what a callable is bound to or holds."""
    for _ in range(8):              # partial(partial(...)) chains, bounded
        if isinstance(fn, functools.partial):
            for arg in fn.args:
                _add_object(arg, out)
            for arg in fn.keywords.values():
                _add_object(arg, out)
            fn = fn.func
            continue
        break
    owner = getattr(fn, "__self__", None)
    if owner is not None and not isinstance(owner, types.ModuleType):
        out.append(owner)
        return
    closure = getattr(fn, "__closure__", None)
    if closure:
        for cell in closure:
            try:
                content = cell.cell_contents
            except ValueError:      # an empty cell
                continue
            _add_object(content, out)


def sources_of(item: Any) -> list[object]:
    """The objects a ready item comes from (see the module docstring)."""
    callback = getattr(item, "_callback", _NO_CALLBACK)
    if callback is _NO_CALLBACK:
        # Not a Handle: a task queued as itself.
        return [item]
    out: list[object] = []
    _add_callable(callback, out)
    loop = getattr(item, "_loop", None)
    for arg in getattr(item, "_args", None) or ():
        if arg is not loop:
            _add_object(arg, out)
    if not out and callback is not None:
        out.append(callback)
    return out


class SeededOrder:
    """A ready order (``loop.set_ready_order``) that shuffles each batch from
    ``random.Random(seed)``, keeping each source's items in order.

    Also an instrument (``loop.add_instrument``): ``task_spawned`` numbers
    the tasks created on the loop, for the canonical order described in the
    module docstring.  ``treadle.new_event_loop(seed=N)`` installs both.
    """

    __slots__ = ("_seed", "_rng", "_serials", "_next_serial")

    _seed: int
    _rng: random.Random
    _serials: dict[int, int]
    _next_serial: int

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self._seed = seed
        self._rng = random.Random(seed)
        self._serials = {}
        self._next_serial = 0

    @property
    def seed(self) -> int:
        return self._seed

    def __repr__(self) -> str:
        return f"<SeededOrder seed={self._seed}>"

    # -- instrument hooks -------------------------------------------------

    def task_spawned(self, task: object) -> None:
        self._next_serial += 1
        self._serials[id(task)] = self._next_serial

    def task_exited(self, task: object) -> None:
        self._serials.pop(id(task), None)

    # -- the ready order --------------------------------------------------

    def __call__(self, batch: list[Any]) -> list[Any]:
        n = len(batch)
        if n < 2:
            return batch
        # Union-find over batch positions; owner maps a source's id to the
        # first position that named it.
        parent = list(range(n))

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        owner: dict[int, int] = {}
        for i, item in enumerate(batch):
            for source in sources_of(item):
                key = id(source)
                j = owner.get(key)
                if j is None:
                    owner[key] = i
                    continue
                a, b = find(i), find(j)
                if a != b:
                    if a < b:
                        parent[b] = a
                    else:
                        parent[a] = b
        groups: dict[int, list[Any]] = {}
        for i in range(n):
            groups.setdefault(find(i), []).append(batch[i])
        if len(groups) < 2:
            return batch
        ordered = sorted(groups.items(), key=self._canonical_key)
        # A uniform interleaving: shuffle one ticket per item, then hand
        # each group's items out in their own order.
        tickets = [g for g, (_, members) in enumerate(ordered) for _ in members]
        self._rng.shuffle(tickets)
        cursors = [0] * len(ordered)
        out = []
        for g in tickets:
            members = ordered[g][1]
            out.append(members[cursors[g]])
            cursors[g] += 1
        return out

    def _canonical_key(self, group: tuple[int, list[Any]]) -> tuple[int, int]:
        first, members = group
        serials = self._serials
        best = 0
        for item in members:
            for source in sources_of(item):
                serial = serials.get(id(source), 0)
                if serial and (not best or serial < best):
                    best = serial
        if best:
            return (0, best)
        return (1, first)
