"""Seeded scheduling: the ready-order function behind ``new_event_loop(seed=N)``.

Owns: deciding, from a seeded RNG, the order in which one turn's batch of
ready items (task steps and callbacks) runs, and working out which items
must keep their relative order.
Never: drops, duplicates or delays an item (the batch that comes in is the
batch that goes out, in the same turn), and never reorders two items from
one *source* - one task's steps, one future's callbacks, one transport's or
protocol's callbacks, repeated calls of one function - nor what one *step*
(a task step or a callback) scheduled, except which of the other tasks it
woke runs first.  A protocol never sees its data reordered and a future's
callbacks run in the order they were added, exactly as on asyncio; what
varies is which task goes first, which is where races between tasks live
(Trio shuffles its batches the same way).

Why a step's own scheduling is kept: asyncio code, the standard library's
included, relies on it.  "Create a task, ``await asyncio.sleep(0)``, the task
has started" and "close the transport, ``await asyncio.sleep(0)``,
``connection_lost`` has run" (what ``StreamWriter.drain()`` does after a
close) hold on every asyncio loop; breaking them would report races that
cannot happen.  So within the items one step added, order is kept except
inside a run of consecutive wake-ups of *other* tasks (``create_task`` twice,
``Event.set()``, a ``TaskGroup`` cancelling its children): those tasks may
start in any order, all of them still before whatever the step added next
(its own continuation included).

How sources are found (``sources_of``): a task step is its task (and the
future that woke it, if one did); a callback
(a ``Handle``) belongs to the object its callback is bound to, to the objects
in its arguments (the future a done-callback is for, the task a wake-up is
for), to what a ``functools.partial`` or a closure holds, and, when it holds
nothing else, to the callback function itself.  Steps are told apart with
the instrument hooks: after each outermost task step or callback, the length
of the loop's ready queue marks where that step's additions end, so the next
batch can be cut into the runs each step added (the I/O and timer items that
follow belong to no step).

The rules above are edges "a runs before b" between batch positions; the
output is a random topological order of that graph, drawn from the seeded
RNG.  An extra edge only shuffles less; it can never break a protocol.

Reproducibility: whenever several items may go next, they are ranked in a
canonical order before the RNG picks one (task items by the order in which
their tasks were created on this loop, other items by their place in the
batch), so the same seed gives the same order even where asyncio itself
iterates a set of tasks whose order depends on memory addresses (a
``TaskGroup`` cancelling its children).
"""

from __future__ import annotations

import functools
import random
import types
from collections import deque
from typing import Any, Sized

# Values that identify nothing: equal values from unrelated code would link
# unrelated callbacks.
_ANONYMOUS = (type(None), bool, int, float, complex, str, bytes, bytearray,
              memoryview, range, type, types.ModuleType, BaseException)

_NO_CALLBACK = object()


#: At most this many items of a tuple or list an item holds are its sources:
#: a closure holding a thousand tasks (``gather``'s callback) would
#: otherwise cost a thousand look-ups per batch, and each extra source only
#: orders more, never less, than needed.
_MAX_CONTAINED = 16


def _add_object(value: object, out: list[object], depth: int = 0) -> None:
    if isinstance(value, _ANONYMOUS):
        return
    if isinstance(value, (tuple, list, frozenset)):
        if depth < 1:
            for i, inner in enumerate(value):
                if i == _MAX_CONTAINED:
                    break
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
        # Not a Handle: a task queued as itself (its kernel core, which
        # stands for the Task users hold).  If a future it awaited woke it
        # (the kernel queues the task directly, without a Handle), that
        # future is a source too: its callbacks keep their order.
        task = getattr(item, "_task", None) or item
        waiter = getattr(item, "_fut_waiter", None)
        return [task] if waiter is None else [task, waiter]
    out: list[object] = []
    _add_callable(callback, out)
    loop = getattr(item, "_loop", None)
    for arg in getattr(item, "_args", None) or ():
        if arg is not loop:
            _add_object(arg, out)
    if not out and callback is not None:
        out.append(callback)
    return out


def task_of(item: Any) -> object | None:
    """The task a ready item steps or wakes (None: a plain callback)."""
    callback = getattr(item, "_callback", _NO_CALLBACK)
    if callback is _NO_CALLBACK:
        # a task queued as itself (its core, which stands for the Task)
        task: object = getattr(item, "_task", None) or item
        return task
    owner: object = getattr(callback, "__self__", None)
    if owner is not None and _is_task(owner):
        return owner                    # its _wakeup / _step
    return None


def _is_task(obj: object) -> bool:
    return isinstance(obj, _TASK_TYPES)


class SeededOrder:
    """A ready order (``loop.set_ready_order``) that shuffles each batch from
    ``random.Random(seed)`` within the rules of the module docstring.

    Also an instrument (``loop.add_instrument``): it numbers the tasks created
    on the loop (for the canonical order) and marks where each step's
    additions to the ready queue end.  ``install(loop)`` does both;
    ``treadle.new_event_loop(seed=N)`` calls it.
    """

    __slots__ = ("_seed", "_rng", "_serials", "_next_serial", "_queue",
                 "_depth", "_producer", "_step_ends")

    _seed: int
    _rng: random.Random
    _serials: dict[int, int]
    _next_serial: int
    _queue: Sized | None
    _depth: int
    _producer: int
    _step_ends: list[tuple[int, int]]

    def __init__(self, seed: int) -> None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"seed must be an int, got {type(seed).__name__}")
        self._seed = seed
        self._rng = random.Random(seed)
        self._serials = {}
        self._next_serial = 0
        self._queue = None
        self._depth = 0
        # id() of the task whose step is running (0: a plain callback).  An
        # id, not the task: holding the task would keep a pending task that
        # everything else dropped alive (asyncio logs those when collected).
        self._producer = 0
        self._step_ends = []

    @property
    def seed(self) -> int:
        return self._seed

    def __repr__(self) -> str:
        return f"<SeededOrder seed={self._seed}>"

    def install(self, loop: Any) -> None:
        """Make this the ready order of treadle loop *loop*."""
        queue = getattr(loop, "_ready", None)
        # Without the ready queue (another kernel layout) steps cannot be
        # told apart: only the object sources are kept in order then.
        self._queue = queue if isinstance(queue, deque) else None
        self._depth = 0
        self._step_ends = []
        loop.set_ready_order(self)
        loop.add_instrument(self)

    def uninstall(self, loop: Any) -> None:
        """Undo ``install(loop)``: the loop is first in, first out again."""
        if loop.get_ready_order() is self:
            loop.set_ready_order(None)
        try:
            loop.remove_instrument(self)
        except KeyError:
            pass
        self._queue = None

    # -- instrument hooks -------------------------------------------------

    def task_spawned(self, task: object) -> None:
        self._next_serial += 1
        self._serials[id(task)] = self._next_serial

    def task_exited(self, task: object) -> None:
        self._serials.pop(id(task), None)

    def before_task_step(self, task: object) -> None:
        if self._depth == 0:
            self._producer = id(task)
        self._depth += 1

    def before_callback(self, handle: object) -> None:
        if self._depth == 0:
            # A step of a task the kernel does not step itself (asyncio's C
            # task) is a callback bound to that task.
            task = task_of(handle)
            self._producer = 0 if task is None else id(task)
        self._depth += 1

    def after_task_step(self, task: object) -> None:
        self._step_done()

    def after_callback(self, handle: object) -> None:
        self._step_done()

    def _step_done(self) -> None:
        # Only outermost steps count: an eager task's first step runs inside
        # the step that created it, and what it schedules is that step's.
        self._depth -= 1
        if self._depth <= 0:
            self._depth = 0
            queue = self._queue
            if queue is not None:
                self._step_ends.append((len(queue), self._producer))
            self._producer = 0

    # -- the ready order --------------------------------------------------

    def __call__(self, batch: list[Any]) -> list[Any]:
        step_ends = self._step_ends
        self._step_ends = []
        n = len(batch)
        if n < 2:
            return batch
        succ: list[list[int]] = [[] for _ in range(n)]
        indegree = [0] * n

        def edge(a: int, b: int) -> None:
            succ[a].append(b)
            indegree[b] += 1

        # 1. Each source's items in order.
        last: dict[int, int] = {}
        for i, item in enumerate(batch):
            for source in sources_of(item):
                key = id(source)
                j = last.get(key)
                if j is not None and j != i:
                    edge(j, i)
                last[key] = i
        # 2. Each step's additions in order, except within runs of wake-ups
        #    of other tasks (positions are those the queue had when the step
        #    ended; if they no longer fit the batch, skip this rule).
        if step_ends and step_ends[-1][0] <= n:
            start = 0
            for end, producer in step_ends:
                if end > start:
                    self._order_step(batch, start, end, producer, edge)
                    start = end
        # 3. A random topological order, choosing among the items that may
        #    go next in their canonical ranking.
        keys = [self._canonical_key(item, i) for i, item in enumerate(batch)]
        available = sorted((i for i in range(n) if not indegree[i]),
                           key=keys.__getitem__)
        out = []
        while available:
            k = self._pick(available, keys) if len(available) > 1 else 0
            i = available.pop(k)
            out.append(batch[i])
            for j in succ[i]:
                indegree[j] -= 1
                if not indegree[j]:
                    _insert_sorted(available, j, keys)
        if len(out) != n:               # a cycle: cannot happen, but never lose work
            return batch
        return out

    def _pick(self, available: list[int], keys: list[tuple[int, int]]) -> int:
        """Which of *available* (batch positions, in canonical order, at
        least two) runs next: an index into it.  (The simulated network's
        order asks its recorded choices here instead.)"""
        return self._rng.randrange(len(available))

    @staticmethod
    def _order_step(batch: list[Any], start: int, end: int, producer: int,
                    edge: Any) -> None:
        """Edges for the items one step added, positions start..end-1."""
        # The additions form blocks run one after the other: a single item,
        # or a run of wake-ups of other tasks (no order inside it).  Every
        # item of a block comes after every item of the block before.
        previous: list[int] = []
        current: list[int] = []
        current_is_wakeups = False
        for i in range(start, end):
            task = task_of(batch[i])
            wakeup = task is not None and id(task) != producer
            if not (wakeup and current_is_wakeups):
                previous = current
                current = []
                current_is_wakeups = wakeup
            current.append(i)
            for p in previous:
                edge(p, i)

    def _canonical_key(self, item: Any, position: int) -> tuple[int, int]:
        serials = self._serials
        task = task_of(item)
        if task is not None:
            serial = serials.get(id(task), 0)
            if serial:
                return (0, serial)
        return (1, position)


def _insert_sorted(available: list[int], i: int, keys: list[tuple[int, int]]) -> None:
    key = keys[i]
    lo, hi = 0, len(available)
    while lo < hi:
        mid = (lo + hi) // 2
        if keys[available[mid]] < key:
            lo = mid + 1
        else:
            hi = mid
    available.insert(lo, i)


def _task_types() -> tuple[type, ...]:
    import asyncio
    from .._kernel import Task
    return (Task, asyncio.Task)


_TASK_TYPES = _task_types()
