"""Scheduling, differentially: generated programs of tasks run on asyncio's
loop and on treadle's must leave the same trace.

A program is a tree of steps - yield to the loop, spawn children, await or
cancel one, set or wait for an event, shield, ``wait_for``, ``timeout()``,
``gather`` (with and without ``return_exceptions``), ``asyncio.wait()`` (each
``return_when``), a queue, a lock,
``call_soon``, raise - and every step that observes something (a result, an
exception and its message, ``cancelling()``, the order in which tasks and
callbacks run) appends it to the trace.  asyncio's ordering is the
specification: the order tasks wake in, the order done-callbacks and
``call_soon`` callbacks run in, how cancellation propagates through shields,
``wait_for`` and ``gather``.

What the programs leave out, because asyncio itself does not fix it: the
cyclic garbage collector (off while a program runs: when it runs depends on
how much each loop allocates, and what it finds decides when "exception was
never retrieved" is reported); ``TaskGroup`` (it keeps its tasks in a set,
iterated in address order: which child a failing group cancels first
differs from run to run on asyncio too; CPython's ``test_taskgroups`` runs
on treadle in the conformance suite); the order in which ``asyncio.run()``
cancels what is left (a set too: the programs finish their own tasks);
timeouts that could expire in real time (every timeout is 0 or far beyond
the program's run).  treadle-only: it compares the two loops.  Measured
when it was written: 4,000 programs, the same traces on both loops.
"""

from __future__ import annotations

import asyncio
import gc
import random
from typing import Any, Callable

import pytest

import treadle

pytestmark = pytest.mark.treadle

#: Seeds of the programs run on every test run.
SEEDS = range(200)
#: A timeout that never expires while a program runs.
NEVER = 30.0

Step = tuple[Any, ...]


def program(rng: random.Random, depth: int = 0) -> list[Step]:
    """A random list of steps; composite steps hold sub-programs."""
    simple = ["yield", "yield", "event_set", "raise", "queue_put", "call_soon"]
    nested = ["spawn", "shield", "wait_for", "timeout", "gather", "wait"]
    other = ["await_child", "cancel_child", "cancelling_child", "event_wait",
             "queue_get", "lock"]
    kinds = simple + nested + other if depth < 3 else simple
    steps: list[Step] = []
    for _ in range(rng.randint(1, 6)):
        kind = rng.choice(kinds)
        if kind in nested:
            subs = [program(rng, depth + 1) for _ in range(rng.randint(1, 3))]
            steps.append((kind, subs, rng.randint(0, 3)))
        else:
            steps.append((kind, rng.randint(0, 3)))
    return steps


class World:
    """What the steps of one program share, and the trace they leave."""

    def __init__(self) -> None:
        self.trace: list[Any] = []
        self.events = [asyncio.Event() for _ in range(4)]
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.lock = asyncio.Lock()

    def note(self, *what: Any) -> None:
        self.trace.append(what)

    async def run(self, steps: list[Step], name: str) -> str:
        children: list[asyncio.Future[Any]] = []
        for step in steps:
            try:
                await self.step(step, name, children)
            except asyncio.CancelledError as exc:
                self.note(name, "cancelled", exc.args)
                raise
        for child in children:
            child.cancel()
        if children:
            results = await asyncio.gather(*children, return_exceptions=True)
            self.note(name, "children", [_outcome(r) for r in results])
        return name

    async def step(self, step: Step, name: str,
                   children: list[asyncio.Future[Any]]) -> None:
        kind, arg = step[0], step[1]
        sub: Callable[[int, str], Any] = lambda i, tag: self.run(arg[i], f"{name}.{tag}{i}")
        if kind == "yield":
            for _ in range(arg):
                await asyncio.sleep(0)
            self.note(name, "yielded", arg)
        elif kind == "spawn":
            children.extend(asyncio.ensure_future(sub(i, "c")) for i in range(len(arg)))
            self.note(name, "spawned", len(arg))
        elif kind == "await_child" and children:
            child = children[arg % len(children)]
            try:
                self.note(name, "child", await child)
            except asyncio.CancelledError as exc:
                self.note(name, "child cancelled", exc.args)
                if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                    raise
            except ValueError as exc:
                self.note(name, "child failed", exc.args)
        elif kind == "cancel_child" and children:
            child = children[arg % len(children)]
            message = f"m{arg}" if arg == 2 else None
            self.note(name, "cancel", child.cancel(message), child.done())
        elif kind == "cancelling_child" and children:
            child = children[arg % len(children)]
            self.note(name, "cancelling", child.cancelling(), child.done())  # type: ignore[attr-defined]
        elif kind == "event_set":
            self.events[arg].set()
            self.note(name, "set", arg)
        elif kind == "event_wait":
            event = self.events[arg]
            try:
                async with asyncio.timeout(NEVER if event.is_set() else 0):
                    await event.wait()
                self.note(name, "event", arg)
            except TimeoutError:
                self.note(name, "event timed out", arg)
        elif kind == "shield":
            self.note(name, "shielded", await asyncio.shield(sub(0, "s")))
        elif kind == "wait_for":
            try:
                result = await asyncio.wait_for(sub(0, "w"), 0 if step[2] == 0 else NEVER)
                self.note(name, "wait_for", result)
            except TimeoutError:
                self.note(name, "wait_for timed out")
        elif kind == "timeout":
            try:
                async with asyncio.timeout(0 if step[2] == 0 else NEVER) as scope:
                    result = await sub(0, "t")
                self.note(name, "timeout", result, scope.expired())
            except TimeoutError:
                self.note(name, "timed out")
        elif kind == "gather":
            results = await asyncio.gather(*(sub(i, "g") for i in range(len(arg))),
                                           return_exceptions=bool(step[2] % 2))
            self.note(name, "gathered", [_outcome(r) for r in results])
        elif kind == "wait":
            tasks = [asyncio.ensure_future(sub(i, "v")) for i in range(len(arg))]
            children.extend(tasks)
            how = (asyncio.FIRST_COMPLETED, asyncio.FIRST_EXCEPTION, asyncio.ALL_COMPLETED)
            done, _ = await asyncio.wait(tasks, return_when=how[step[2] % 3])
            self.note(name, "waited", sorted(tasks.index(t) for t in done))
        elif kind == "raise" and arg == 3:
            self.note(name, "raising")
            raise ValueError(name)
        elif kind == "queue_put":
            self.queue.put_nowait((name, arg))
            self.note(name, "put", arg)
        elif kind == "queue_get" and not self.queue.empty():
            self.note(name, "got", await self.queue.get())
        elif kind == "call_soon":
            asyncio.get_running_loop().call_soon(self.note, name, "callback", arg)
        elif kind == "lock":
            async with self.lock:
                self.note(name, "locked")
                await asyncio.sleep(0)
            self.note(name, "unlocked")


def _name_of(task: asyncio.Task[Any]) -> str:
    """The step path a task runs (every task of a program runs World.run)."""
    return str(task.get_coro().cr_frame.f_locals["name"])  # type: ignore[union-attr]


def _outcome(result: Any) -> Any:
    if isinstance(result, BaseException):
        return (type(result).__name__, result.args)
    return result


def run_program(factory: Callable[[], asyncio.AbstractEventLoop],
                steps: list[Step]) -> tuple[list[Any], list[Any]]:
    """The trace of *steps* on a loop from *factory*, and what reached the
    loop's exception handler."""
    reported: list[Any] = []

    async def main() -> list[Any]:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _, context: reported.append(context["message"]))
        world = World()
        top = asyncio.ensure_future(world.run(steps, "m"))
        try:
            world.note("main", await asyncio.wait_for(top, NEVER))
        except BaseException as exc:
            world.note("main", _outcome(exc))
        # Tasks still running (a shield's inner task, say) finish, or are
        # cancelled in the order of their names: asyncio.run() would cancel
        # them in the order of a set.
        me = asyncio.current_task()
        for _ in range(100):
            if asyncio.all_tasks() == {me}:
                break
            await asyncio.sleep(0)
        left = sorted(asyncio.all_tasks() - {me}, key=_name_of)
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        return world.trace

    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            trace = runner.run(main())
        during = list(reported)     # (what the collection below finds comes later)
        gc.collect()
    finally:
        if was_enabled:
            gc.enable()
    return trace, during


@pytest.mark.parametrize("seed", SEEDS)
def test_a_program_runs_as_on_asyncio(seed: int) -> None:
    steps = program(random.Random(seed))
    expected = run_program(asyncio.new_event_loop, steps)
    got = run_program(treadle.new_event_loop, steps)
    assert got == expected, f"program of seed {seed}: {steps!r}"


def test_the_programs_exercise_what_they_claim() -> None:
    # A generator that stopped producing some steps, or programs that all
    # end the same way, would make the comparison above hollow.
    notes: set[str] = set()
    for seed in SEEDS:
        trace, _ = run_program(asyncio.new_event_loop, program(random.Random(seed)))
        notes.update(entry[1] if entry[0] != "main" else f"main {entry[1][0]}"
                     for entry in trace if isinstance(entry[1], str) or entry[0] == "main")
    for expected in ("cancelled", "child cancelled", "child failed", "shielded",
                     "wait_for timed out", "timed out", "event timed out", "gathered",
                     "callback", "got", "locked", "raising", "cancelling", "children",
                     "waited", "main m", "main ValueError"):
        assert expected in notes, expected
