"""Spawning a child off the loop thread (issue 13, part 1).

On both loops: the errors ``Popen`` raises come out of the await with their
own types, the protocol hears about a child that writes and exits at once
in asyncio's order, and the child inherits the signal mask of the thread
that runs the loop.  treadle only (asyncio forks on the loop thread, so
none of these can happen there): the loop goes on running while a child
spawns, and a spawn that is cancelled, or whose loop is closed, leaves no
child, fd or thread behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading

import pytest

import treadle

from .test_subprocess import RecordingProtocol, proc_state, wait_gone

PIPE = asyncio.subprocess.PIPE

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix only")


def test_popen_errors_are_raised_from_the_await(run, tmp_path):
    not_executable = tmp_path / "script"
    not_executable.write_text("#!/bin/sh\n")
    a_file = tmp_path / "file"
    a_file.write_text("")

    async def main():
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_exec(str(tmp_path / "missing"),
                                                 stdout=PIPE, stderr=PIPE)
        with pytest.raises(PermissionError):
            await asyncio.create_subprocess_exec(str(not_executable), stdin=PIPE)
        with pytest.raises(NotADirectoryError):
            await asyncio.create_subprocess_exec("true", cwd=str(a_file))
        with pytest.raises(FileNotFoundError):
            await asyncio.create_subprocess_shell("true", cwd=str(tmp_path / "missing"))
        with pytest.raises(TypeError, match="no_such_argument"):
            await asyncio.create_subprocess_exec("true", no_such_argument=1)
    run(main())


def test_a_child_that_writes_and_exits_at_once(run):
    """Everything the child does happens before the pipes are connected;
    the protocol still hears it in asyncio's order."""
    async def main():
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(
            RecordingProtocol, "sh", "-c", "echo out; echo err >&2; exit 4")
        await proto.done
        transport.close()
        return proto.events

    events = run(main())
    assert events[0] == "made" and events[-1] == ("lost", None)
    assert ("exited", 4) in events
    for fd, data in ((1, b"out\n"), (2, b"err\n")):
        assert events.index(("data", fd, data)) < events.index(("pipe_lost", fd, None))


def test_the_child_inherits_the_loop_threads_signal_mask(loop_factory):
    """A child forked by the loop thread inherits its blocked signals; one
    forked by a thread the loop thread started inherits the same."""
    result = {}

    def loop_thread():
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})

        async def main():
            proc = await asyncio.create_subprocess_exec(
                "grep", "SigBlk", "/proc/self/status", stdout=PIPE)
            out, _ = await proc.communicate()
            return int(out.split()[1], 16)

        with asyncio.Runner(loop_factory=loop_factory) as runner:
            result["blocked"] = runner.run(main())

    thread = threading.Thread(target=loop_thread)
    thread.start()
    thread.join(60)
    assert result["blocked"] & (1 << (signal.SIGUSR1 - 1))


# ---------------------------------------------------------------------------
# treadle only
# ---------------------------------------------------------------------------

@pytest.fixture
def held_popen(monkeypatch):
    """Make ``subprocess.Popen`` wait for ``release`` (a threading.Event)
    before it spawns; ``entered`` is set once a spawn is waiting.  Returns
    (release, entered, made): *made* lists (thread ident, Popen) of each
    spawn."""
    release = threading.Event()
    entered = threading.Event()
    made = []
    real_popen = subprocess.Popen

    def popen(*args, **kwargs):
        entered.set()
        if not release.wait(30):
            raise AssertionError("never released")
        child = real_popen(*args, **kwargs)
        made.append((threading.get_ident(), child))
        return child

    monkeypatch.setattr(subprocess, "Popen", popen)
    return release, entered, made


async def _until(event):
    while not event.is_set():
        await asyncio.sleep(0.001)


def test_the_loop_runs_while_a_child_spawns(held_popen):
    release, entered, made = held_popen

    async def main():
        loop = asyncio.get_running_loop()
        spawn = asyncio.create_task(asyncio.create_subprocess_exec(
            "sh", "-c", "echo spawned", stdout=PIPE))
        # Only the loop can release the spawn: on a loop that spawned on
        # its own thread this would never run (Popen would fail after 30 s).
        await _until(entered)
        loop.call_soon(release.set)
        proc = await spawn
        out, _ = await proc.communicate()
        return out, threading.get_ident()

    out, loop_thread = treadle.run(main())
    assert out == b"spawned\n"
    assert [thread for thread, _ in made] != [loop_thread]


class _MustNotConnect(asyncio.SubprocessProtocol):
    def connection_made(self, transport):
        raise AssertionError("a cancelled spawn reached its protocol")


def test_a_spawn_cancelled_midway_kills_and_reaps_its_child(held_popen):
    release, entered, made = held_popen

    async def main():
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(loop.subprocess_exec(
            _MustNotConnect, "sleep", "30", stdin=PIPE, stdout=PIPE))
        await _until(entered)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        release.set()
        # The child exists once Popen returns; the loop kills and reaps it.
        while not made or made[0][1].returncode is None:
            await asyncio.sleep(0.001)
        return made[0][1]

    child = treadle.run(main())
    assert child.returncode == -signal.SIGKILL
    assert proc_state(child.pid) is None
    assert child.stdin.closed and child.stdout.closed


def test_closing_the_loop_midway_through_a_spawn_leaves_nothing(held_popen):
    """What asyncio.run() does on Ctrl-C while a child spawns: cancel the
    task, then close the loop; close() waits for the spawn and discards
    the child (the process-wide waiter reaps it)."""
    release, entered, made = held_popen
    loop = treadle.new_event_loop()
    try:
        task = loop.create_task(loop.subprocess_exec(
            _MustNotConnect, "sleep", "30", stdout=PIPE, stderr=PIPE))
        loop.run_until_complete(_until(entered))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            loop.run_until_complete(task)
        release.set()
    finally:
        loop.close()
    (_, child), = made
    assert child.stdout.closed and child.stderr.closed
    wait_gone(child.pid)


def test_a_burst_of_spawns_uses_one_thread_and_skips_the_cancelled(held_popen):
    """Starting a thread waits for it to run: a burst of spawns is queued to
    one thread, which starts no child for a spawn cancelled while queued."""
    release, entered, made = held_popen

    async def main():
        tasks = [asyncio.create_task(asyncio.create_subprocess_exec("true"))
                 for _ in range(10)]
        await _until(entered)                   # the first one is spawning
        spawners = [t for t in threading.enumerate() if t.name == "treadle-spawn"]
        tasks[-1].cancel()                      # still queued: never spawned
        release.set()
        done = await asyncio.gather(*tasks, return_exceptions=True)
        codes = [await proc.wait() for proc in done[:-1]]
        return len(spawners), codes, done[-1]

    threads, codes, last = treadle.run(main())
    assert threads == 1
    assert codes == [0] * 9 and isinstance(last, asyncio.CancelledError)
    assert len(made) == 9 and len({thread for thread, _ in made}) == 1
