"""treadle only: the staggered race behind Happy Eyeballs
(``treadle._net.staggered``)."""

from __future__ import annotations

import asyncio

import pytest

import treadle
from treadle._net.staggered import staggered_race


def trun(coro):
    with asyncio.Runner(loop_factory=treadle.new_event_loop) as runner:
        return runner.run(coro)


class Attempts:
    """Coroutine functions whose outcome each test scripts."""

    def __init__(self):
        self.started = []
        self.cancelled = []
        self.gates = {}

    def make(self, i, *, result=None, error=None, wait=False):
        async def attempt():
            self.started.append(i)
            try:
                if wait:
                    gate = self.gates.setdefault(i, asyncio.get_running_loop().create_future())
                    await gate
                else:
                    await asyncio.sleep(0)
            except asyncio.CancelledError:
                self.cancelled.append(i)
                raise
            if error is not None:
                raise error
            return result
        return attempt


def test_first_success_wins_in_order():
    async def main():
        a = Attempts()
        fns = [a.make(0, error=OSError("a")), a.make(1, result="b"), a.make(2, result="c")]
        result, index, excs = await staggered_race(asyncio.get_running_loop(), fns, None)
        assert (result, index) == ("b", 1)
        assert a.started == [0, 1]           # never needed the third
        assert isinstance(excs[0], OSError) and excs[1] is None
    trun(main())


def test_all_fail():
    async def main():
        a = Attempts()
        fns = [a.make(i, error=OSError(str(i))) for i in range(3)]
        result, index, excs = await staggered_race(asyncio.get_running_loop(), fns, 0.01)
        assert result is None and index is None
        assert [str(e) for e in excs] == ["0", "1", "2"]
    trun(main())


def test_no_attempts():
    async def main():
        assert await staggered_race(asyncio.get_running_loop(), [], 0.1) == (None, None, [])
    trun(main())


def test_the_delay_starts_the_next_attempt_and_the_loser_is_cancelled():
    async def main():
        loop = asyncio.get_running_loop()
        a = Attempts()
        discarded = []
        fns = [a.make(0, wait=True), a.make(1, result="fast")]
        result, index, excs = await staggered_race(loop, fns, 0.02, discard=discarded.append)
        assert (result, index) == ("fast", 1)
        assert a.cancelled == [0]
        assert isinstance(excs[0], asyncio.CancelledError) or excs[0] is None
        assert discarded == []
    trun(main())


def test_without_delay_the_next_attempt_waits_for_a_failure():
    async def main():
        loop = asyncio.get_running_loop()
        a = Attempts()
        fns = [a.make(0, wait=True), a.make(1, result="never")]
        task = asyncio.create_task(staggered_race(loop, fns, None))
        await asyncio.sleep(0.05)
        assert a.started == [0]
        a.gates[0].set_exception(OSError("late failure"))
        result, index, _ = await task
        assert (result, index) == ("never", 1)
    trun(main())


def test_a_simultaneous_second_success_is_discarded():
    async def main():
        loop = asyncio.get_running_loop()
        a = Attempts()
        discarded = []
        fns = [a.make(0, wait=True), a.make(1, wait=True)]
        task = asyncio.create_task(staggered_race(loop, fns, 0.01, discard=discarded.append))
        while len(a.started) < 2:
            await asyncio.sleep(0.005)
        a.gates[1].set_result(None)
        a.gates[0].set_result(None)
        # Both finish in the same turn: the lower index wins, the other
        # result is handed to discard().
        result, index, _ = await task
        assert index in (0, 1)
        assert len(discarded) == 1
    trun(main())


def test_cancelling_the_race_cancels_and_awaits_every_attempt():
    async def main():
        loop = asyncio.get_running_loop()
        a = Attempts()
        fns = [a.make(i, wait=True) for i in range(3)]
        task = asyncio.create_task(staggered_race(loop, fns, 0.01))
        while len(a.started) < 3:
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sorted(a.cancelled) == [0, 1, 2]
    trun(main())


def test_accepts_an_iterator_of_functions():
    async def main():
        a = Attempts()
        fns = (a.make(i, error=OSError()) if i < 2 else a.make(i, result=i) for i in range(5))
        result, index, excs = await staggered_race(asyncio.get_running_loop(), fns, None)
        assert (result, index, len(excs)) == (2, 2, 3)
    trun(main())
