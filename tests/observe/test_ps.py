"""``treadle ps`` / ``pstree`` against real processes, and every way the
command refuses."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from ._util import Target, child_env, treadle

STUCK = """
    import asyncio, time

    async def stuck_forever():
        await asyncio.sleep(0.05)
        while True:              # holds the loop: never yields again
            time.sleep(0.01)

    async def sleeper():
        await asyncio.sleep(3600)

    async def consumer(queue):
        await queue.get()

    async def holder(lock):
        async with lock:
            pass

    async def lost():
        await asyncio.get_running_loop().create_future()

    async def main():
        lock = asyncio.Lock()
        await lock.acquire()
        queue = asyncio.Queue()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(sleeper(), name="sleeper")
            tg.create_task(consumer(queue), name="consumer")
            tg.create_task(holder(lock), name="holder")
            tg.create_task(lost(), name="lost")
            await asyncio.sleep(0.02)
            print("ready", flush=True)
            tg.create_task(stuck_forever(), name="stuck")

    asyncio.run(main())
"""


def _wait_stuck(pid: int) -> dict:
    """ps --json until the loop is seen running the stuck task and the
    blocking detector has reported it (its watchdog thread may be late to
    look on a loaded machine)."""
    deadline = time.monotonic() + 30
    while True:
        out = treadle("ps", str(pid), "--json")
        assert out.returncode == 0, out.stderr
        doc = json.loads(out.stdout)
        loop = doc["loops"][0] if doc["loops"] else {"activity": "", "blocks": []}
        reported = any("stuck" in b["label"] for b in loop["blocks"])
        if ("stuck" in loop["activity"] and reported) or time.monotonic() > deadline:
            return doc
        time.sleep(0.05)


@pytest.mark.timeout(180)          # (bounded waits for a loaded machine)
def test_ps_finds_a_stuck_loop_while_it_is_stuck(tmp_path):
    with Target(tmp_path, STUCK) as target:
        target.socket_ready()
        doc = _wait_stuck(target.pid)
        assert doc["pid"] == target.pid
        (loop,) = doc["loops"]
        assert loop["running"] and "running Task 'stuck'" in loop["activity"]
        tasks = {t["name"]: t for t in loop["tasks"]}
        assert set(tasks) >= {"stuck", "sleeper", "consumer", "holder", "lost"}
        assert tasks["stuck"]["state"] == "running"
        # The running task's stack is where it is right now.
        assert tasks["stuck"]["stack"][0]["name"] == "stuck_forever"
        waits = {name: t["waits_on"] for name, t in tasks.items() if t["waits_on"]}
        assert waits["sleeper"]["kind"] == "sleep" and waits["sleeper"]["until"]
        assert waits["consumer"]["kind"] == "queue get"
        assert waits["holder"]["kind"] == "lock"
        assert "held" in waits["holder"]["detail"]
        assert waits["lost"]["kind"] == "future" and waits["lost"]["orphaned"]
        assert not waits["sleeper"]["orphaned"]
        main = next(t for t in loop["tasks"] if t["name"] not in tasks or
                    t["name"].startswith("Task-"))
        for name in ("sleeper", "consumer", "holder", "lost", "stuck"):
            assert tasks[name]["group"] == f"TaskGroup of {main['name']!r}"
            assert [a["task_id"] for a in tasks[name]["awaited_by"]] == [main["id"]]
        assert tasks["sleeper"]["waiting_for"] is not None
        # The detector said so too, in the process's own log.
        assert any("stuck" in b["label"] for b in loop["blocks"])

        table = treadle("ps", str(target.pid))
        assert table.returncode == 0, table.stderr
        lines = table.stdout.splitlines()
        header = next(l for l in lines if l.startswith("tid "))
        for column in ("task id", "task name", "coroutine stack", "awaiter chain",
                       "awaiter name", "awaiter id", "state", "waiting on"):
            assert column in header
        stuck_row = next(l for l in lines if " stuck " in l)
        assert "running" in stuck_row and "stuck_forever" in stuck_row
        assert "nothing else holds it" in next(l for l in lines if " lost " in l)

        tree = treadle("pstree", str(target.pid))
        assert tree.returncode == 0, tree.stderr
        assert f"└── (T) {main['name']}" in tree.stdout
        assert "(T) stuck [running]" in tree.stdout
        assert "(T) consumer [waiting on queue get" in tree.stdout
        tree_json = json.loads(treadle("pstree", str(target.pid), "--json").stdout)
        assert tree_json["loops"][0]["tree"][0]["task"]["name"] == main["name"]


CYCLE = """
    import asyncio

    async def main():
        loop = asyncio.get_running_loop()
        first = loop.create_future()
        second = loop.create_future()

        async def wait_on(fut):
            return await fut

        a = asyncio.create_task(wait_on(first), name="alpha")
        b = asyncio.create_task(wait_on(second), name="beta")
        await asyncio.sleep(0)
        # Each one's future is completed by the other: alpha awaits beta,
        # beta awaits alpha.
        b.add_done_callback(lambda t: first.set_result(None))
        a.add_done_callback(lambda t: second.set_result(None))
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
"""


def test_pstree_reports_a_cycle(tmp_path):
    with Target(tmp_path, CYCLE) as target:
        target.socket_ready()
        out = treadle("pstree", str(target.pid))
        assert out.returncode == 0, out.stderr
        assert "[cycle: awaited above]" in out.stdout
        cycle_lines = [l for l in out.stdout.splitlines() if l.startswith("cycle: ")]
        assert len(cycle_lines) == 1
        assert "alpha" in cycle_lines[0] and "beta" in cycle_lines[0]
        doc = json.loads(treadle("pstree", str(target.pid), "--json").stdout)
        assert len(doc["loops"][0]["cycles"]) == 1


# ----------------------------------------------------------------------
# refusals: one line, status 1, no traceback
# ----------------------------------------------------------------------


def _refused(out: subprocess.CompletedProcess[str], expect: str) -> None:
    assert out.returncode == 1, (out.stdout, out.stderr)
    assert out.stdout == ""
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert expect in lines[0], lines[0]
    assert "Traceback" not in out.stderr


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("command", ["ps", "pstree", "top"])
def test_no_such_process(command):
    pid = _dead_pid()
    _refused(treadle(command, str(pid)), f"no process with PID {pid}")


def test_not_a_pid():
    _refused(treadle("ps", "abc"), "'abc' is not a process id")
    _refused(treadle("ps", "-5"), "is not a process id")


def test_process_not_running_treadle():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        _refused(treadle("ps", str(proc.pid)),
                 f"process {proc.pid} is not running a treadle event loop")
        _refused(treadle("top", str(proc.pid), "--once"),
                 f"process {proc.pid} is not running a treadle event loop")
    finally:
        proc.kill()
        proc.wait()


def test_exited_while_being_read(tmp_path):
    """A process that dies with half an answer sent (here a stand-in that
    speaks the protocol that far)."""
    from treadle.observe._config import runtime_dir
    from treadle.observe._server import private_dir
    directory = runtime_dir(os.getuid())
    assert private_dir(directory) is None
    script = textwrap.dedent(f"""
        import os, socket, sys
        path = os.path.join({directory!r}, f"{{os.getpid()}}.sock")
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.listen(1)
        print("ready", flush=True)
        conn, _ = s.accept()
        conn.recv(1000)
        conn.sendall(b'{{"pid": 1, "loops": [')
        os.unlink(path)
        os._exit(0)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        _refused(treadle("ps", str(proc.pid)), f"process {proc.pid} exited while it was being read")
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout:
            proc.stdout.close()


def _nobody() -> pwd.struct_passwd | None:
    try:
        return pwd.getpwnam("nobody")
    except KeyError:
        return None


@pytest.mark.skipif(os.getuid() != 0 or shutil.which("setpriv") is None
                    or _nobody() is None,
                    reason="needs root and setpriv to run a process as another user")
def test_another_users_process_is_refused(tmp_path):
    """The target runs as 'nobody'.  The command refuses before connecting;
    and the target's server refuses the connection itself (we are root: the
    0700 directory does not stop us, SO_PEERCRED does)."""
    nobody = _nobody()
    assert nobody is not None
    # (pytest's tmp_path is in a directory only root may enter)
    workdir = tempfile.mkdtemp(prefix="treadle-observe-test-")
    os.chmod(workdir, 0o755)
    run = os.path.join(workdir, "run")          # like /run/user/UID
    os.mkdir(run, 0o700)
    os.chown(run, nobody.pw_uid, nobody.pw_gid)
    env = child_env(TREADLE_RUNTIME_DIR=os.path.join(run, "treadle"), HOME="/")
    try:
        probe = subprocess.run([*_become(nobody), sys.executable, "-c", "import treadle"],
                               env=env, capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:       # (a Python under /root, say)
            pytest.skip(f"this Python cannot run as {nobody.pw_name}: "
                        f"{probe.stderr.strip()[-200:]}")
        _as_nobody(Path(workdir), nobody, env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _become(user: pwd.struct_passwd) -> list[str]:
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]


def _as_nobody(workdir: Path, nobody: pwd.struct_passwd, env: dict[str, str]) -> None:
    with Target(workdir, STUCK.replace("while True:", "while False:"), env=env,
                prefix=_become(nobody)) as target:
        path = target.socket_ready(uid=nobody.pw_uid)
        assert os.stat(path).st_uid == nobody.pw_uid
        assert os.stat(os.path.dirname(path)).st_mode & 0o777 == 0o700
        _refused(treadle("ps", str(target.pid)),
                 f"process {target.pid} belongs to another user (uid {nobody.pw_uid})")
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(10)
        try:
            sock.connect(path)
            try:
                sock.sendall(b'{"cmd": "ps"}\n')
            except BrokenPipeError:
                pass                  # it may have answered and hung up already
            answer = sock.makefile("rb").readline()
        finally:
            sock.close()
        assert json.loads(answer) == {
            "error": f"refused: uid 0 is not the owner of this process (uid {nobody.pw_uid})"}


def test_peer_credentials_logic():
    from treadle.observe._server import refusal
    assert refusal(1000, 1000) is None
    assert refusal(0, 1000) == "refused: uid 0 is not the owner of this process (uid 1000)"
    assert refusal(1001, 1000) is not None
    assert refusal(None, 1000) is None          # no credentials: the 0700 directory


def test_peer_uid_of_a_real_connection():
    from treadle.observe._server import peer_uid
    a, b = socket.socketpair(socket.AF_UNIX)
    try:
        assert peer_uid(a) == os.getuid()
    finally:
        a.close()
        b.close()


@pytest.mark.skipif(sys.version_info < (3, 14), reason="asyncio records awaited-by edges from 3.14")
def test_awaited_by_edges_are_asyncios_own_on_314():
    """An edge only asyncio's own record knows about (added with
    future_add_to_awaited_by, no await behind it) is in the tree."""
    import asyncio
    import treadle
    from treadle.observe._render import build_tree
    from treadle.observe._report import ps_document
    from treadle.observe._observer import observer

    async def idle():
        await asyncio.sleep(3600)

    async def main():
        me = asyncio.current_task()
        child = asyncio.create_task(idle(), name="child")
        await asyncio.sleep(0)
        asyncio.future_add_to_awaited_by(child, me)
        doc = ps_document(observer.open_loops())
        asyncio.future_discard_from_awaited_by(child, me)
        child.cancel()
        return doc, id(me)

    doc, main_id = treadle.run(main())
    (loop,) = doc["loops"]
    child = next(t for t in loop["tasks"] if t["name"] == "child")
    assert [a["task_id"] for a in child["awaited_by"]] == [main_id]
    roots, cycles, _ = build_tree(loop)
    assert not cycles and len(roots) == 1 and roots[0]["task"]["id"] == main_id


SNAPSHOT_OF_A_RUNNING_TASK = """
    import asyncio, sys, treadle
    from treadle.observe import _snapshot

    async def inner(me):
        # Read the chain of the coroutine that is running, many times: on
        # 3.11 and 3.12 reading its cr_await crashed the interpreter within
        # a few thousand reads (the watchdog and `treadle ps` read it from
        # their threads).
        for _ in range(200_000):
            frames, tail = _snapshot.coroutine_chain(me)
            assert frames == [me.cr_frame] and tail is None, (frames, tail)
        # A snapshot taken on the loop's own thread shows the running
        # task's live stack, down to the code that asked for it.
        loop = asyncio.get_running_loop()
        info = _snapshot.snapshot_loop(loop)
        [row] = [t for t in info.tasks if t.state == "running"]
        print([entry.name for entry in row.stack])

    async def outer():
        await inner(asyncio.current_task().get_coro())

    treadle.run(outer())
"""


def test_the_chain_of_a_running_coroutine_is_never_read_through_it():
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(SNAPSHOT_OF_A_RUNNING_TASK)],
                         capture_output=True, text=True, timeout=120, env=child_env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "['inner', 'outer']", out.stdout
