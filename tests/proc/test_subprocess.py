"""Subprocesses: subprocess_exec/shell, asyncio.subprocess.Process, child
watching, reaping and flow control.

Behavioural tests run on asyncio's loop and on treadle's; the ones that
pin treadle's own guarantees (a closed loop's children, the fallback
waiter thread, a child reaped behind the loop's back) are treadle-only.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import subprocess
import sys
import threading
import time
import warnings

import pytest

import treadle
from treadle._proc import children as children_mod

PY = sys.executable
PIPE = asyncio.subprocess.PIPE

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Unix only")


def proc_state(pid: int) -> str | None:
    """The state letter of our child *pid* ('Z': zombie), None if gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = data[data.rindex(")") + 2:].split()
    if int(fields[1]) != os.getpid():
        return None          # the pid was recycled by a stranger
    return fields[0]


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while proc_state(pid) is not None:
        assert time.monotonic() < deadline, f"pid {pid} still {proc_state(pid)}"
        time.sleep(0.005)


# ---------------------------------------------------------------------------
# the basics, on both loops
# ---------------------------------------------------------------------------

def test_communicate_roundtrip(run):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "cat", stdin=PIPE, stdout=PIPE)
        out, err = await proc.communicate(b"some data")
        return proc.returncode, out, err, proc.pid
    code, out, err, pid = run(main())
    assert (code, out, err) == (0, b"some data", None)
    assert proc_state(pid) is None


def test_shell_exit_code_and_streams(run):
    async def main():
        proc = await asyncio.create_subprocess_shell(
            "echo out; echo err >&2; exit 7", stdout=PIPE, stderr=PIPE)
        out, err = await proc.communicate()
        merged = await asyncio.create_subprocess_shell(
            "echo out; echo err >&2", stdout=PIPE, stderr=subprocess.STDOUT)
        both, none = await merged.communicate()
        quiet = await asyncio.create_subprocess_shell(
            "echo gone", stdout=subprocess.DEVNULL)
        return proc.returncode, out, err, both, none, await quiet.wait()
    assert run(main()) == (7, b"out\n", b"err\n", b"out\nerr\n", None, 0)


def test_kill_terminate_send_signal(run):
    async def main():
        codes = []
        for action in ("kill", "terminate", "hup"):
            # (SIGHUP back to its default: nohup starts us with it ignored,
            # and an ignored signal stays ignored across exec.)
            proc = await asyncio.create_subprocess_exec(
                "sleep", "30",
                preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
            if action == "kill":
                proc.kill()
            elif action == "terminate":
                proc.terminate()
            else:
                proc.send_signal(signal.SIGHUP)
            codes.append(await proc.wait())
            # Finished: there is no process to signal any more.
            with pytest.raises(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        return codes
    assert run(main()) == [-signal.SIGKILL, -signal.SIGTERM, -signal.SIGHUP]


def test_validation_errors(run):
    async def main():
        loop = asyncio.get_running_loop()
        proto = asyncio.SubprocessProtocol
        for kwargs in ({"universal_newlines": True}, {"bufsize": 4096}, {"shell": True},
                       {"text": True}, {"encoding": "utf-8"}, {"errors": "strict"}):
            with pytest.raises(ValueError):
                await loop.subprocess_exec(proto, "true", **kwargs)
        for kwargs in ({"universal_newlines": True}, {"bufsize": 4096}, {"shell": False},
                       {"text": True}, {"encoding": "utf-8"}, {"errors": "strict"}):
            with pytest.raises(ValueError):
                await loop.subprocess_shell(proto, "true", **kwargs)
        with pytest.raises(ValueError, match="cmd must be a string"):
            await loop.subprocess_shell(proto, ["ls", "-l"])
    run(main())


def test_spawn_failure_leaks_nothing(run):
    async def main():
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(FileNotFoundError):
                await asyncio.create_subprocess_exec(
                    "/nonexistent/program", stdin=PIPE, stdout=PIPE, stderr=PIPE)
            gc.collect()
    run(main())


def test_popen_arguments_pass_through(run, tmp_path):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import os, sys; print(os.getcwd(), os.environ['TREADLE_X'], os.getsid(0) == os.getpid())",
            stdout=PIPE, cwd=tmp_path, env={**os.environ, "TREADLE_X": "42"},
            start_new_session=True)
        out, _ = await proc.communicate()
        return out.decode().split()
    cwd, value, new_session = run(main())
    assert (os.path.realpath(cwd), value, new_session) == (os.path.realpath(tmp_path), "42", "True")


class RecordingProtocol(asyncio.SubprocessProtocol):
    def __init__(self) -> None:
        self.events: list[object] = []
        self.done = asyncio.get_running_loop().create_future()
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def pipe_data_received(self, fd, data):
        self.events.append(("data", fd, data))

    def pipe_connection_lost(self, fd, exc):
        self.events.append(("pipe_lost", fd, exc))

    def process_exited(self):
        self.events.append(("exited", self.transport.get_returncode()))

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.done.set_result(None)


def test_subprocess_protocol_sequence_and_transport_api(run):
    async def main():
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(
            RecordingProtocol, "sh", "-c", "read x; echo got $x; exit 3")
        assert isinstance(transport, asyncio.SubprocessTransport)
        assert proto.events == ["made"]
        popen = transport.get_extra_info("subprocess")
        assert isinstance(popen, subprocess.Popen)
        assert transport.get_pid() == popen.pid
        assert transport.get_returncode() is None
        stdin = transport.get_pipe_transport(0)
        assert isinstance(stdin, asyncio.WriteTransport)
        assert isinstance(transport.get_pipe_transport(1), asyncio.ReadTransport)
        assert transport.get_pipe_transport(3) is None
        stdin.write(b"it\n")
        await proto.done
        assert transport.get_returncode() == 3
        assert proto.events[-1] == ("lost", None)
        assert ("exited", 3) in proto.events
        assert ("data", 1, b"got it\n") in proto.events
        assert ("pipe_lost", 1, None) in proto.events
        assert ("pipe_lost", 2, None) in proto.events
        assert not transport.is_closing()
        with pytest.raises(ProcessLookupError):
            transport.send_signal(signal.SIGTERM)
        with pytest.raises(ProcessLookupError):
            transport.kill()
        transport.close()
        assert transport.is_closing()
        stdin.close()
    run(main())


def test_transport_close_kills_a_running_child(run):
    async def main():
        loop = asyncio.get_running_loop()
        transport, proto = await loop.subprocess_exec(RecordingProtocol, "sleep", "30")
        pid = transport.get_pid()
        transport.close()
        await asyncio.wait_for(proto.done, 10)
        return transport.get_returncode(), pid
    code, pid = run(main())
    assert code == -signal.SIGKILL
    assert proc_state(pid) is None


# ---------------------------------------------------------------------------
# the cases issue 4 names
# ---------------------------------------------------------------------------

def test_communicate_timeout_then_child_is_reaped(run):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            "sh", "-c", "echo started; exec sleep 30", stdout=PIPE, stdin=PIPE)
        assert await proc.stdout.readline() == b"started\n"
        with pytest.raises((asyncio.TimeoutError, TimeoutError)):
            await asyncio.wait_for(proc.communicate(b"ignored"), 0.2)
        assert proc.returncode is None
        assert proc_state(proc.pid) not in (None, "Z")     # still running
        proc.kill()
        assert await proc.wait() == -signal.SIGKILL
        return proc.pid
    pid = run(main())
    assert proc_state(pid) is None


def test_child_killed_mid_write(run):
    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c", "import sys\nwhile True: sys.stdout.buffer.write(b'x' * 65536)",
            stdout=PIPE)
        got = await proc.stdout.readexactly(1 << 20)
        proc.kill()
        rest = await proc.stdout.read()         # to EOF: no hang
        assert proc.stdout.at_eof()
        return len(got), await proc.wait(), proc.pid
    size, code, pid = run(main())
    assert size == 1 << 20 and code == -signal.SIGKILL
    assert proc_state(pid) is None


def test_child_that_never_reads_its_stdin(run):
    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "30", stdin=PIPE)
        payload = b"p" * (4 << 20)
        proc.stdin.write(payload)
        transport = proc.stdin.transport
        held = transport.get_write_buffer_size()
        assert 0 < held <= len(payload)
        with pytest.raises((asyncio.TimeoutError, TimeoutError)):
            await asyncio.wait_for(proc.stdin.drain(), 0.2)
        assert transport.get_write_buffer_size() == held     # nothing moved
        proc.kill()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            await proc.stdin.drain()
        assert await proc.wait() == -signal.SIGKILL
        # communicate() ignores a reader that went away.
        proc2 = await asyncio.create_subprocess_exec("true", stdin=PIPE)
        await proc2.communicate(payload)
        return proc2.returncode
    assert run(main()) == 0


def test_200_short_lived_children_leave_no_zombie(run):
    async def main():
        async def one(i):
            proc = await asyncio.create_subprocess_exec("sh", "-c", f"exit {i % 7}")
            return proc.pid, await proc.wait()
        return await asyncio.gather(*(one(i) for i in range(200)))
    results = run(main())
    assert [code for _, code in results] == [i % 7 for i in range(200)]
    states = {pid: proc_state(pid) for pid, _ in results}
    assert not {pid: s for pid, s in states.items() if s is not None}


def test_loops_in_several_threads_spawn_children(loop_factory):
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    async def work(k):
        procs = [await asyncio.create_subprocess_exec("sh", "-c", f"exit {k + i}")
                 for i in range(8)]
        out = await asyncio.create_subprocess_exec("echo", str(k), stdout=PIPE)
        text, _ = await out.communicate()
        assert text == f"{k}\n".encode()
        return [await p.wait() for p in procs]

    def thread_main(k):
        try:
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                results[k] = runner.run(work(k))
        except BaseException as exc:      # reported below
            errors.append(exc)

    threads = [threading.Thread(target=thread_main, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert results == {k: [k + i for i in range(8)] for k in range(4)}


# ---------------------------------------------------------------------------
# flow control end to end
# ---------------------------------------------------------------------------

def test_100_mib_to_a_slow_reader_is_bounded_and_does_not_block(run):
    total = 100 << 20
    limit = 64 * 1024

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c",
            "import sys\nchunk = b'z' * (1 << 20)\n"
            f"for _ in range({total >> 20}): sys.stdout.buffer.write(chunk)",
            stdout=PIPE, limit=limit)
        ticks = 0
        stop = False

        async def ticker():
            nonlocal ticks
            while not stop:
                ticks += 1
                await asyncio.sleep(0)

        tick_task = asyncio.create_task(ticker())
        received = 0
        peak = 0
        reads = 0
        while True:
            chunk = await proc.stdout.read(limit)
            if not chunk:
                break
            received += len(chunk)
            reads += 1
            # The reader's buffer: what the pipe transport delivered and we
            # have not read yet.  Bounded by the pause threshold (2 * limit)
            # plus one read of the transport.
            peak = max(peak, len(proc.stdout._buffer))
            if reads % 64 == 0:
                await asyncio.sleep(0.001)      # the slow part
        stop = True
        await tick_task
        return received, peak, ticks, await proc.wait()

    received, peak, ticks, code = run(main())
    assert received == total and code == 0
    assert peak <= 2 * limit + 256 * 1024
    assert ticks > 100          # other tasks ran throughout


def test_writer_to_a_slow_child_stays_within_the_water_marks(run):
    total = 32 << 20
    chunk = 1 << 20

    async def main():
        proc = await asyncio.create_subprocess_exec(
            PY, "-c",
            "import sys, time\nn = 0\n"
            "while True:\n"
            "    b = sys.stdin.buffer.read1(65536)\n"
            "    if not b: break\n"
            "    n += len(b)\n"
            "    if n % (4 << 20) < 65536: time.sleep(0.001)\n"
            "print(n)",
            stdin=PIPE, stdout=PIPE)
        transport = proc.stdin.transport
        high = transport.get_write_buffer_limits()[1]
        peak = 0
        for _ in range(total // chunk):
            proc.stdin.write(b"w" * chunk)
            peak = max(peak, transport.get_write_buffer_size())
            await proc.stdin.drain()
            assert transport.get_write_buffer_size() <= high
        proc.stdin.close()
        out = await proc.stdout.read()
        return int(out), peak, await proc.wait()

    n, peak, code = run(main())
    assert n == total and code == 0
    assert peak <= 64 * 1024 + chunk


# ---------------------------------------------------------------------------
# treadle's own guarantees
# ---------------------------------------------------------------------------

def test_closed_loop_children_keep_running_and_are_reaped():
    loop = treadle.new_event_loop()

    async def spawn():
        return await asyncio.create_subprocess_exec("sleep", "30", stdout=PIPE)
    proc = loop.run_until_complete(spawn())
    pid = proc.pid
    loop.close()                                 # returns at once
    assert proc_state(pid) not in (None, "Z")    # asyncio does not kill it either
    assert children_mod.waiter().watching() >= 1
    # Garbage collecting the unclosed transport kills the child (asyncio's
    # rule); the waiter thread reaps it.
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del proc
        gc.collect()
    wait_gone(pid)


def test_closed_loop_with_a_child_that_exits_later():
    loop = treadle.new_event_loop()

    async def spawn():
        return await asyncio.create_subprocess_exec("sleep", "0.2")
    proc = loop.run_until_complete(spawn())
    pid = proc.pid
    loop.close()
    wait_gone(pid)               # reaped although nobody waits for it
    assert proc.returncode is None   # nobody to tell: the loop is closed
    # The reaper thread records the status just after waitpid() made the
    # pid disappear: this thread may look in between.
    popen = proc._transport.get_extra_info("subprocess")
    deadline = time.monotonic() + 10
    while popen.returncode is None and time.monotonic() < deadline:
        time.sleep(0.005)
    assert popen.returncode == 0
    proc._transport.close()


def test_exit_code_survives_someone_else_reaping():
    # asyncio's watchers report 255 here; treadle uses what Popen recorded.
    async def main():
        proc = await asyncio.create_subprocess_exec("sh", "-c", "exit 5")
        popen = proc._transport.get_extra_info("subprocess")
        assert popen.wait() == 5          # reaps behind the loop's back
        return await proc.wait()
    assert treadle.run(main()) == 5


def test_pidfd_used_when_available():
    if not children_mod.pidfd_supported():
        pytest.skip("no pidfd here")

    async def main():
        proc = await asyncio.create_subprocess_exec("sleep", "30")
        child = proc._transport._child
        assert child is not None and child.pidfd >= 0
        assert os.readlink(f"/proc/self/fd/{child.pidfd}") == "anon_inode:[pidfd]"
        proc.kill()
        assert await proc.wait() == -signal.SIGKILL
        assert child.pidfd == -1
        assert children_mod.waiter().watching() == 0
    treadle.run(main())


@pytest.fixture
def no_pidfd(monkeypatch):
    """Force the fallback: the process-wide waiter thread."""
    monkeypatch.setattr(children_mod, "_pidfd_ok", False)


def test_fallback_waiter_thread(no_pidfd):
    async def main():
        proc = await asyncio.create_subprocess_exec("cat", stdin=PIPE, stdout=PIPE)
        assert proc._transport._child.pidfd == -1
        out, _ = await proc.communicate(b"via the waiter")
        sleeper = await asyncio.create_subprocess_exec("sleep", "30")
        sleeper.terminate()
        codes = await asyncio.gather(*[
            (await asyncio.create_subprocess_exec("sh", "-c", f"exit {i}")).wait()
            for i in range(20)])
        return out, proc.returncode, await sleeper.wait(), codes
    out, code, term, codes = treadle.run(main())
    assert (out, code, term) == (b"via the waiter", 0, -signal.SIGTERM)
    assert codes == list(range(20))


def test_fallback_waiter_with_a_foreign_zombie(no_pidfd):
    # Someone else's exited child, not waited for yet: the waiter must not
    # reap it, and must still see ours exit.
    foreign = subprocess.Popen(["true"])
    deadline = time.monotonic() + 10
    while proc_state(foreign.pid) != "Z":
        assert time.monotonic() < deadline
        time.sleep(0.005)

    async def main():
        procs = [await asyncio.create_subprocess_exec("sh", "-c", f"sleep 0.0{i}; exit {i}")
                 for i in range(5)]
        return [await p.wait() for p in procs]
    try:
        assert treadle.run(main()) == list(range(5))
        assert proc_state(foreign.pid) == "Z"     # left for its owner
    finally:
        assert foreign.wait() == 0


def test_fallback_loops_in_threads(no_pidfd):
    results = {}

    def thread_main(k):
        async def work():
            procs = [await asyncio.create_subprocess_exec("sh", "-c", f"exit {k}")
                     for _ in range(5)]
            return [await p.wait() for p in procs]
        results[k] = treadle.run(work())

    threads = [threading.Thread(target=thread_main, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == {k: [k] * 5 for k in range(3)}
