"""add_signal_handler / remove_signal_handler.

Behavioural tests run on asyncio's loop and on treadle's.  treadle differs
on purpose in two places, tested at the end: removing a handler restores
the Python handler that was there before (asyncio: SIG_DFL), and a
non-callable handler is refused at once.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading

import pytest

import treadle

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="Unix only")

USR1, USR2, WINCH = signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH


@pytest.fixture(autouse=True)
def restore_signal_state():
    saved = {sig: signal.getsignal(sig) for sig in (USR1, USR2, WINCH, signal.SIGINT)}
    wakeup = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(wakeup)
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)
    signal.set_wakeup_fd(wakeup)


def test_validation(loop):
    def handler():
        pass

    async def coro_fn():
        pass

    with pytest.raises(TypeError):
        loop.add_signal_handler("boom", handler)
    with pytest.raises(TypeError):
        loop.remove_signal_handler("boom")
    with pytest.raises(TypeError, match="coroutines cannot be used"):
        loop.add_signal_handler(USR1, coro_fn)
    coro = coro_fn()
    with pytest.raises(TypeError, match="coroutines cannot be used"):
        loop.add_signal_handler(USR1, coro)
    coro.close()
    for bad in (0, -1, signal.NSIG + 1):
        with pytest.raises(ValueError, match="invalid signal number"):
            loop.add_signal_handler(bad, handler)
        with pytest.raises(ValueError, match="invalid signal number"):
            loop.remove_signal_handler(bad)
    for uncatchable in (signal.SIGKILL, signal.SIGSTOP):
        with pytest.raises(RuntimeError, match="cannot be caught"):
            loop.add_signal_handler(uncatchable, handler)
        assert loop.remove_signal_handler(uncatchable) is False
    assert loop.remove_signal_handler(USR1) is False
    # Nothing was left installed by the failures.
    assert signal.getsignal(signal.SIGKILL) == signal.SIG_DFL
    assert signal.getsignal(USR1) == signal.SIG_DFL


def test_closed_loop(loop_factory):
    loop = loop_factory()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.add_signal_handler(USR1, lambda: None)
    with pytest.raises(ValueError):               # the signal is checked first
        loop.add_signal_handler(0, lambda: None)
    assert loop.remove_signal_handler(USR1) is False


def test_only_the_main_thread(loop_factory):
    errors: list[BaseException] = []

    def in_thread():
        loop = loop_factory()
        try:
            loop.add_signal_handler(USR1, lambda: None)
        except BaseException as exc:
            errors.append(exc)
        finally:
            loop.close()

    t = threading.Thread(target=in_thread)
    t.start()
    t.join()
    assert len(errors) == 1 and isinstance(errors[0], RuntimeError)
    assert signal.getsignal(USR1) == signal.SIG_DFL


def test_handler_runs_in_the_loop_with_its_args(loop):
    calls = []
    loop.add_signal_handler(USR1, lambda *a: calls.append(a), 1, "two")

    async def main():
        os.kill(os.getpid(), USR1)
        # The signal arrived during this callback, but its handler waits
        # for the loop: it never runs inside the code it interrupted.
        assert calls == []
        while not calls:
            await asyncio.sleep(0.001)
        assert threading.current_thread() is threading.main_thread()
    loop.run_until_complete(asyncio.wait_for(main(), 10))
    assert calls == [(1, "two")]
    assert loop.remove_signal_handler(USR1) is True
    assert loop.remove_signal_handler(USR1) is False
    assert signal.getsignal(USR1) == signal.SIG_DFL


def test_a_busy_loop_runs_the_handler_while_it_spins(loop):
    """A loop that watches no fd of its users and never waits (one task
    spinning on ``sleep(0)``) still runs the handler within a few turns: the
    signal's number waits in the loop's pipe, which such a loop need not
    poll for anything else."""
    calls = []
    loop.add_signal_handler(USR1, calls.append, "usr1")

    async def main():
        os.kill(os.getpid(), USR1)
        for turns in range(100_000):
            if calls:
                return turns
            await asyncio.sleep(0)
        return None

    turns = loop.run_until_complete(main())
    assert calls == ["usr1"]
    assert turns is not None and turns < 10, turns
    assert loop.remove_signal_handler(USR1)


def test_burst_of_signals_all_delivered(loop):
    counts = {USR1: 0, USR2: 0, WINCH: 0}

    def on(sig):
        counts[sig] += 1

    for sig in counts:
        loop.add_signal_handler(sig, on, sig)
    # Sent by this thread to itself, each kill() is delivered before it
    # returns, so none coalesces with another: every one must run.
    plan = [USR1] * 5 + [USR2] * 3 + [WINCH] * 4 + [USR1, USR2]
    expected = {sig: plan.count(sig) for sig in counts}

    def distinct_burst():
        # From another thread while the loop waits: a standard signal that
        # is still pending absorbs a repeat (POSIX), distinct ones do not.
        for sig in counts:
            os.kill(os.getpid(), sig)

    async def main():
        for sig in plan:
            os.kill(os.getpid(), sig)
        while counts != expected:
            await asyncio.sleep(0.001)
        await loop.run_in_executor(None, distinct_burst)
        while counts != {sig: n + 1 for sig, n in expected.items()}:
            await asyncio.sleep(0.001)
    loop.run_until_complete(asyncio.wait_for(main(), 10))
    for sig in counts:
        assert loop.remove_signal_handler(sig)


def test_signal_wakes_a_waiting_loop(loop):
    caught = []

    def handler():
        caught.append(1)
        loop.stop()

    loop.add_signal_handler(USR1, handler)
    timer = threading.Timer(0.05, os.kill, (os.getpid(), USR1))
    timer.start()
    guard = loop.call_later(30, loop.stop)
    loop.run_forever()
    guard.cancel()
    timer.join()
    assert caught == [1]
    loop.remove_signal_handler(USR1)


def test_replacing_a_handler(loop):
    calls = []
    loop.add_signal_handler(USR1, calls.append, "first")
    loop.add_signal_handler(USR1, calls.append, "second")

    async def main():
        os.kill(os.getpid(), USR1)
        while not calls:
            await asyncio.sleep(0.001)
    loop.run_until_complete(asyncio.wait_for(main(), 10))
    assert calls == ["second"]
    assert loop.remove_signal_handler(USR1)
    assert signal.getsignal(USR1) == signal.SIG_DFL


def test_close_removes_handlers(loop_factory):
    # Python's own SIGINT handler first (a background job starts with it
    # ignored; the fixture puts back whatever was there).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    loop = loop_factory()
    loop.add_signal_handler(USR1, lambda: None)
    loop.add_signal_handler(signal.SIGINT, lambda: None)
    loop.close()
    assert signal.getsignal(USR1) == signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.set_wakeup_fd(-1) == -1


# ---------------------------------------------------------------------------
# treadle's own behaviour
# ---------------------------------------------------------------------------

def test_removal_restores_the_previous_python_handler():
    def mine(signum, frame):
        pass

    signal.signal(USR1, mine)
    loop = treadle.new_event_loop()
    try:
        loop.add_signal_handler(USR1, lambda: None)
        assert signal.getsignal(USR1) is not mine
        loop.add_signal_handler(USR1, lambda: None)      # a second add
        assert loop.remove_signal_handler(USR1)
        assert signal.getsignal(USR1) is mine            # asyncio: SIG_DFL
        loop.add_signal_handler(USR1, lambda: None)
    finally:
        loop.close()
    assert signal.getsignal(USR1) is mine                # close() too


def test_close_restores_the_previous_wakeup_fd():
    a, b = socket.socketpair()
    a.setblocking(False)
    try:
        signal.set_wakeup_fd(a.fileno())
        loop = treadle.new_event_loop()
        loop.add_signal_handler(USR1, lambda: None)
        assert signal.set_wakeup_fd(a.fileno()) != a.fileno()   # the loop's
        signal.set_wakeup_fd(loop._wake_w)
        loop.close()
        assert signal.set_wakeup_fd(-1) == a.fileno()
    finally:
        a.close()
        b.close()


def test_a_later_loops_wakeup_fd_is_left_alone():
    first = treadle.new_event_loop()
    second = treadle.new_event_loop()
    try:
        first.add_signal_handler(USR1, lambda: None)
        second.add_signal_handler(USR2, lambda: None)    # takes the wakeup fd
        first.close()
        # second still hears its signals.
        got = []
        second.add_signal_handler(USR2, got.append, 1)

        async def main():
            os.kill(os.getpid(), USR2)
            while not got:
                await asyncio.sleep(0.001)
        second.run_until_complete(asyncio.wait_for(main(), 10))
    finally:
        first.close()
        second.close()


def test_non_callable_is_refused_at_once():
    loop = treadle.new_event_loop()
    try:
        with pytest.raises(TypeError, match="callable"):
            loop.add_signal_handler(USR1, "not a function")
        assert signal.getsignal(USR1) == signal.SIG_DFL
    finally:
        loop.close()


def _signal_from_another_thread(sig, delay=0.05):
    """Deliver ``sig`` to a thread other than the loop's, after ``delay``:
    Python's C handler then trips the flag there, and the loop thread, blocked
    in its poller, gets no EINTR.  This is, made certain, the race of a signal
    that lands just before the loop blocks."""
    def send():
        threading.Event().wait(delay)
        signal.pthread_kill(threading.get_ident(), sig)
    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_python_handler_runs_while_the_loop_is_blocked():
    # treadle only (asyncio's loop would sleep on until its timer): while a
    # loop runs in the main thread, a signal ends its wait (signals.py, rule 4).
    loop = treadle.new_event_loop()
    got = []

    def handler(signum, frame):
        got.append(signum)
        done.set_result(None)

    signal.signal(USR1, handler)
    try:
        done = loop.create_future()
        thread = _signal_from_another_thread(USR1)
        t0 = loop.time()
        loop.run_until_complete(asyncio.wait_for(done, 20))
        thread.join()
        assert got == [USR1]
        assert loop.time() - t0 < 10        # not when the wait timed out
    finally:
        loop.close()
    assert signal.set_wakeup_fd(-1) == -1               # given back at the end


def test_ctrl_c_cancels_asyncio_run_whenever_it_lands():
    # asyncio.Runner's SIGINT handler is a Python-level handler: it must run
    # even when the signal reaches the process just as the loop blocks.
    state = []

    async def main():
        t0 = asyncio.get_running_loop().time()
        try:
            _signal_from_another_thread(signal.SIGINT)
            await asyncio.sleep(20)
        except asyncio.CancelledError:
            state.append("cancelled")
            assert asyncio.get_running_loop().time() - t0 < 10
            raise

    signal.signal(signal.SIGINT, signal.default_int_handler)   # (as above)
    with pytest.raises(KeyboardInterrupt):
        with asyncio.Runner(loop_factory=treadle.new_event_loop) as runner:
            runner.run(main())
    assert state == ["cancelled"]


def test_the_wakeup_fd_of_another_owner_stays_theirs():
    a, b = socket.socketpair()
    a.setblocking(False)
    loop = treadle.new_event_loop()
    try:
        signal.set_wakeup_fd(a.fileno())

        async def main():
            return signal.set_wakeup_fd(a.fileno())
        assert loop.run_until_complete(main()) == a.fileno()
        assert signal.set_wakeup_fd(-1) == a.fileno()
    finally:
        loop.close()
        a.close()
        b.close()


def test_removing_the_last_handler_keeps_the_run_awake():
    loop = treadle.new_event_loop()
    got = []

    def handler(signum, frame):
        got.append(signum)
        done.set_result(None)

    try:
        done = loop.create_future()

        async def main():
            loop.add_signal_handler(USR2, lambda: None)
            assert loop.remove_signal_handler(USR2)
            signal.signal(USR1, handler)
            _signal_from_another_thread(USR1)
            await asyncio.wait_for(done, 20)
        t0 = loop.time()
        loop.run_until_complete(main())
        assert got == [USR1]
        assert loop.time() - t0 < 10
    finally:
        loop.close()
    assert signal.set_wakeup_fd(-1) == -1
