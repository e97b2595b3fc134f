"""When the socket and the threads exist, and reading a loop from another
thread while it churns."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import treadle
from treadle.observe._config import runtime_dir
from treadle.observe._observer import observer
from treadle.observe._server import Server, private_dir

from ._util import Target, child_env, treadle as treadle_command


def _observe_threads() -> set[str]:
    """The observation threads running (``threading`` does not list them)."""
    threads = {observer._watchdog and observer._watchdog._thread,
               observer._server and observer._server._thread}
    return {t.name for t in threads if t and t.is_alive()}


def test_socket_and_threads_live_from_the_first_loop_to_its_close():
    async def socket_path():
        return observer.socket_path

    assert observer.socket_path is None and not _observe_threads()
    loop = treadle.new_event_loop()
    # (made with the loop, before it runs: see Server.start)
    assert observer.socket_path is not None
    try:
        path = loop.run_until_complete(socket_path())
    except BaseException:
        loop.close()
        raise
    assert path == os.path.join(runtime_dir(os.getuid()), f"{os.getpid()}.sock")
    assert os.path.exists(path)
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
    assert _observe_threads() == {"treadle-watchdog", "treadle-observe-server"}
    # ... which programs that count threads do not see (asyncio runs none).
    assert threading.active_count() == 1
    # Stopped but not closed: still there (run_until_complete runs again).
    assert os.path.exists(path)
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    assert not os.path.exists(path)
    assert observer.socket_path is None and not _observe_threads()


def test_two_loops_in_two_threads_share_one_server():
    started = threading.Barrier(3)
    stop = threading.Event()

    def run_one(name: str) -> None:
        async def main():
            asyncio.current_task().set_name(name)
            started.wait()
            while not stop.is_set():
                await asyncio.sleep(0.01)
        treadle.run(main())

    threads = [threading.Thread(target=run_one, args=(n,)) for n in ("one", "two")]
    for t in threads:
        t.start()
    try:
        started.wait()
        from treadle.observe._report import ps_document
        doc = ps_document(observer.open_loops())
        names = sorted(t["name"] for loop in doc["loops"] for t in loop["tasks"])
        assert names == ["one", "two"]
        assert len({loop["thread_id"] for loop in doc["loops"]}) == 2
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not _observe_threads()


def test_a_crash_leaves_nothing_that_stops_the_next_run(tmp_path):
    body = """
        import asyncio
        async def main():
            print("ready", flush=True)
            await asyncio.sleep(3600)
        asyncio.run(main())
    """
    with Target(tmp_path, body) as target:
        path = target.socket_ready()
        os.kill(target.pid, signal.SIGKILL)
        target.proc.wait()
    assert os.path.exists(path)              # what a crash leaves behind
    # The next program starts, serves, and sweeps the dead socket away.
    with Target(tmp_path, body) as target:
        target.socket_ready()
        out = treadle_command("ps", str(target.pid))
        assert out.returncode == 0, out.stderr
    assert not os.path.exists(path)


def test_a_stale_socket_with_our_pid_is_replaced():
    directory = runtime_dir(os.getuid())
    assert private_dir(directory) is None
    path = os.path.join(directory, f"{os.getpid()}.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()                            # bound, nobody listening
    server = Server(observer)
    try:
        assert server.start()
        assert server.path == path
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(path)
        probe.close()
    finally:
        server.stop()
    assert not os.path.exists(path)


def test_directory_others_can_open_is_refused(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    assert "can be opened by other users" in private_dir(str(loose))
    (tmp_path / "file").write_text("")
    assert "is not a directory" in private_dir(str(tmp_path / "file"))
    assert private_dir(str(tmp_path / "fresh")) is None
    assert (tmp_path / "fresh").stat().st_mode & 0o777 == 0o700


def test_server_not_started_when_the_directory_is_unsafe(tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    loose.chmod(0o777)
    script = textwrap.dedent("""
        import asyncio, treadle
        from treadle.observe._observer import observer
        async def main():
            return observer.socket_path
        print(treadle.run(main()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env=child_env(TREADLE_RUNTIME_DIR=str(loose)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "None"
    assert "not serving" in out.stderr and "other users" in out.stderr


def test_forked_child_serves_on_its_own():
    script = textwrap.dedent("""
        import asyncio, os, time, treadle
        from treadle.observe._observer import observer
        async def path():
            return observer.socket_path
        loop = treadle.new_event_loop()
        parent = loop.run_until_complete(path())
        pid = os.fork()
        if pid == 0:
            child = treadle.run(path())
            # (the parent's server stops for the fork and starts again)
            for _ in range(1000):
                if os.path.exists(parent):
                    break
                time.sleep(0.01)
            os._exit(0 if child and child != parent and os.path.exists(parent) else 3)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), os.path.exists(parent))
        loop.close()
        print(os.path.exists(parent))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env=child_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "True", "False"]


def test_forking_in_a_running_loop_forks_without_our_threads():
    # 3.12+ warns when a process with threads forks (as error here): the
    # threads stop for the fork, and run again in the parent from the loop's
    # next turn (3.13 counts the threads after the fork hooks have run).
    script = textwrap.dedent("""
        import asyncio, os, threading, warnings, treadle
        from treadle.observe._observer import observer
        def ours():
            threads = [observer._watchdog and observer._watchdog._thread,
                       observer._server and observer._server._thread]
            return sorted(t.name for t in threads if t and t.is_alive())
        async def main():
            before = ours()
            statuses = set()
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for _ in range(5):
                    pid = os.fork()
                    if pid == 0:
                        os._exit(0 if not ours() else 3)
                    _, status = os.waitpid(pid, 0)
                    statuses.add(os.waitstatus_to_exitcode(status))
            assert not caught, [str(w.message) for w in caught]
            await asyncio.sleep(0)      # (they start again on the next turn)
            return before, statuses, ours()
        print(treadle.run(main()))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=60, env=child_env())
    assert out.returncode == 0, out.stderr
    threads = ["treadle-observe-server", "treadle-watchdog"]
    assert out.stdout.strip() == repr((threads, {0}, threads))


def test_snapshots_while_the_loop_churns():
    """Reading every task from another thread while the loop creates,
    wakes and finishes tasks as fast as it can: no exception, every row
    readable, and the loop unharmed."""
    from treadle.observe._snapshot import snapshot_loop
    errors: list[BaseException] = []
    rows = []

    async def churn():
        async def short(fut):
            await asyncio.sleep(0)
            fut.set_result(None)
        for _ in range(3000):
            fut = asyncio.get_running_loop().create_future()
            asyncio.create_task(short(fut))
            await fut

    async def main(loop):
        stop = threading.Event()

        def reader():
            while not stop.is_set():
                try:
                    info = snapshot_loop(loop)
                    rows.extend(t.state for t in info.tasks)
                except BaseException as exc:      # pragma: no cover - the failure
                    errors.append(exc)
        thread = threading.Thread(target=reader)
        thread.start()
        try:
            await asyncio.gather(*(churn() for _ in range(4)))
        finally:
            stop.set()
            thread.join()

    loop = treadle.new_event_loop()
    try:
        loop.run_until_complete(main(loop))
    finally:
        loop.close()
    assert not errors
    assert rows and "unreadable" not in rows


def test_ps_document_is_json():
    async def main():
        from treadle.observe._report import ps_document
        return json.dumps(ps_document(observer.open_loops()))

    assert json.loads(treadle.run(main()))["pid"] == os.getpid()


def _reachable_count(root: object) -> int:
    """How many references the objects reachable from *root* hold, not
    following functions, modules, frames and the like: what the memory-leak
    checks of test suites count (aiohttp's walks a stream and its loop)."""
    import gc
    import types
    skip = tuple(getattr(types, name) for name in types.__all__
                 if name.endswith("Type"))
    seen: dict[int, int] = {id(root): 1}
    todo = [root]
    while todo:
        refs = gc.get_referents(*todo)
        todo = []
        for obj in refs:
            if isinstance(obj, skip):
                continue
            seen[id(obj)] = seen.get(id(obj), 0) + 1
            if seen[id(obj)] == 1:
                todo.append(obj)
    return sum(seen.values())


def test_what_a_loop_references_does_not_change_while_nothing_runs(loop_factory):
    # The watchdog ticks every 20 ms while a step holds the loop: it must
    # change nothing the loop references.
    import time
    import types

    async def main():
        holder = types.SimpleNamespace(loop=asyncio.get_running_loop())
        await asyncio.sleep(0)
        before = _reachable_count(holder)
        time.sleep(0.07)                 # a few ticks, below the threshold
        after = _reachable_count(holder)
        return before, after

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        before, after = runner.run(main())
    assert before == after


def test_a_stop_that_lands_between_two_ticks_ends_the_watchdog():
    """stop() sets its flag and wakes the thread.  If that lands after the
    thread last looked at the flag and before it clears its wake-up event,
    the thread must still end: with no loop running it then waits without
    a timeout, and a loop's close() waited for it forever (seen once in CI
    as a hang in loop.close())."""
    from treadle.observe._watchdog import Watchdog

    watchdog: Watchdog

    class StopLandsHere(threading.Event):
        """The wake-up event; stop() runs in full (but for the join) just
        before the thread's first clear()."""
        landed = False

        def clear(self) -> None:
            if not StopLandsHere.landed:
                StopLandsHere.landed = True
                watchdog._stopping = True
                self.set()
            super().clear()

    watchdog = Watchdog(lambda: [])
    watchdog._wake = StopLandsHere()
    watchdog.start()
    # (the thread's own "finished" event: join() has no timeout)
    ended = watchdog._thread._finished.wait(10)
    if not ended:
        watchdog.stop()             # (wakes a stuck thread, so no thread leaks)
    assert ended, "the watchdog thread did not end after stop()"
    assert StopLandsHere.landed


def test_an_item_the_loop_dropped_during_a_tick_is_freed_on_the_loop_thread():
    """A tick reads the item the loop is running.  If the tick loses the GIL
    and the loop moves on and drops that item meanwhile, the tick's
    reference is the last one: letting go of it there would run the item's
    finalizers on the watchdog's thread.  The tick hands it to the loop's
    thread instead."""
    import treadle
    from treadle.observe._state import LoopObservation, WatchState
    from treadle.observe._watchdog import Watchdog

    freed_on: list[int] = []

    class Item:
        def __del__(self) -> None:
            freed_on.append(threading.get_ident())

    loop = treadle.new_event_loop()
    try:
        obs = LoopObservation(loop, 0.1)

        class LoopMovesOn(WatchState):
            """The tick's first look at the item: the loop runs on and drops it."""

            def same_item(self, item: object) -> bool:
                loop._running_item = None
                return super().same_item(item)

        obs.watch = LoopMovesOn()
        loop._running_item = Item()
        loop._thread_id = threading.get_ident()       # "running", for the tick
        try:
            Watchdog(lambda: [])._tick(loop, obs, 0.1, time.monotonic())
        finally:
            loop._thread_id = None
        assert freed_on == []                          # not by the tick
        loop.run_until_complete(asyncio.sleep(0))
        assert freed_on == [threading.get_ident()]     # by the loop, on its thread
    finally:
        loop._running_item = None
        loop.close()
