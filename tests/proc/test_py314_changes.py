"""Subprocess behaviour that changed in Python 3.14's asyncio, on both loops,
and the child watcher's fd hygiene."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
from unittest import mock

import pytest

import treadle

PY314 = sys.version_info >= (3, 14)


@pytest.mark.skipif(not PY314, reason="wait() returns at the child's exit from 3.14 (gh-119710)")
def test_wait_returns_when_a_grandchild_holds_the_pipe(run):
    code = textwrap.dedent("""\
        import subprocess, sys
        subprocess.run([sys.executable, "-c",
            "import sys; sys.stdout.write('ready'); sys.stdout.flush(); sys.stdin.read()"])
    """)

    async def main():
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", code, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        try:
            assert await proc.stdout.readexactly(5) == b"ready"
            proc.kill()
            # The grandchild still holds stdout open: on 3.14 wait() returns anyway.
            return await asyncio.wait_for(proc.wait(), 30)
        finally:
            proc.stdin.close()              # the grandchild exits on EOF
            await proc.stdout.read()
            await proc.wait()

    assert run(main()) == -9


@pytest.mark.skipif(not PY314, reason="asyncio closes the connected pipes from 3.14")
@pytest.mark.parametrize("which", ["connect_read_pipe", "connect_write_pipe"])
def test_cancelled_pipe_connection_leaves_nothing_behind(run, which):
    async def main():
        loop = asyncio.get_running_loop()
        setattr(loop, which, mock.AsyncMock(side_effect=asyncio.CancelledError))
        with pytest.raises(asyncio.CancelledError):
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", "import time; time.sleep(60)",
                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    run(main())         # the suite's leak check finds any fd or child left


def test_pidfd_is_closed_when_waitpid_fails():
    # The watcher's waitpid() failing with an unexpected error is reported,
    # and the child's pidfd is closed all the same.
    reported = []

    def fd_count():
        # (sockets left out: treadle ps's server binds its own from its
        # thread while the loop runs)
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += not os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except OSError:
                pass            # (closed meanwhile)
        return count

    async def main():
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda lp, ctx: reported.append(ctx.get("exception")))
        before = fd_count()
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import sys; sys.stdin.read()", stdin=subprocess.PIPE)
        with mock.patch.object(os, "waitpid", side_effect=OSError("unexpected")) as m:
            proc.stdin.close()
            for _ in range(10_000):
                if m.called:
                    break
                await asyncio.sleep(0.001)
        os.waitpid(proc.pid, 0)
        proc._transport._process_exited(0)
        await proc.wait()
        return before, fd_count()

    before, after = treadle.run(main())
    assert after == before
    assert any(isinstance(exc, OSError) and str(exc) == "unexpected" for exc in reported)
