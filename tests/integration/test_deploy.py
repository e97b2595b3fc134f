"""Deploying on treadle: each common way of serving an asyncio app, started
as users start it, on asyncio's loop and on treadle's (the README's
"Deploying" section, command for command).

For each: the app answers from the loop we asked for; a request in flight
when the server gets SIGTERM (what process managers send), or SIGINT on its
whole process group (Ctrl-C), completes; the server exits with status 0,
or dies of that very signal after finishing (uvicorn re-raises the signal
it caught, on either loop); and it says nothing about pending tasks
destroyed, unclosed resources (ResourceWarning is on) or tracebacks.

Needs the ``integration`` extra; each server's tests skip without it.
"""

from __future__ import annotations

import http.client
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
APPS = "tests.integration.deploy_apps"
LOOPS = ["asyncio", "treadle"]
SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"),
           pytest.param(signal.SIGINT, id="SIGINT")]

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="Linux servers")


def need(*modules: str) -> None:
    for name in modules:
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"{name} is not installed (the integration extra)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str = "/", timeout: float = 30.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Server:
    """A server process started in a session of its own (so that SIGINT to
    its process group is a terminal's Ctrl-C), its output in a file."""

    def __init__(self, cmd: list[str], port: int, tmp_path: Path, tag: str = "") -> None:
        self.port = port
        self.mark = tmp_path / f"slow{tag}"
        self.log_path = tmp_path / f"server{tag}.log"
        env = dict(os.environ, PYTHONPATH=str(ROOT), TREADLE_DEPLOY_MARK=str(self.mark),
                   PYTHONWARNINGS="always::ResourceWarning", PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=self._log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited {self.proc.returncode}:\n{self.output()}")
            try:
                get(self.port, timeout=5)
                return
            except OSError:
                assert time.monotonic() < deadline, self.output()
                time.sleep(0.05)

    def wait_for_output(self, text: str, count: int) -> None:
        """Until *text* is in the output *count* times (every worker of a
        server that starts several has said it is up: a signal sent while
        one is still importing interrupts its import, on any loop)."""
        deadline = time.monotonic() + 60
        while self.output().count(text) < count:
            assert time.monotonic() < deadline and self.proc.poll() is None, self.output()
            time.sleep(0.05)

    def loop_and_pid(self) -> tuple[str, int]:
        status, body = get(self.port)
        assert status == 200, body
        loop, pid = body.decode().split()
        return loop, int(pid)

    def in_flight_marks(self) -> list[Path]:
        return list(self.mark.parent.glob(self.mark.name + ".*"))

    def output(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._log.close()


@pytest.fixture
def servers(tmp_path):
    started: list[Server] = []

    def start(cmd: list[str], port: int, tag: str = "") -> Server:
        server = Server(cmd, port, tmp_path, tag)
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        server.stop()


def clean(out: str, allowed: tuple[str, ...] = ()) -> None:
    """Nothing in the server's output that says a task, transport, socket or
    loop was left behind, or that anything failed (lines that contain one
    of *allowed* excepted)."""
    lines = [line for line in out.splitlines()
             if not any(a in line for a in allowed)
             and "Enable tracemalloc" not in line]
    text = "\n".join(lines)
    for bad in ("Task was destroyed", "ResourceWarning", "unclosed", "Traceback"):
        assert bad not in text, out


def check_graceful(server: Server, sig: int, expect_loop: str,
                   allowed: tuple[str, ...] = ()) -> None:
    """A slow request in flight, then *sig*; the request completes and the
    server exits cleanly."""
    loop, _ = server.loop_and_pid()
    assert loop == expect_loop
    result: dict[str, object] = {}

    def slow() -> None:
        try:
            result["response"] = get(server.port, "/slow")
        except Exception as exc:  # reported below
            result["error"] = exc

    client = threading.Thread(target=slow)
    client.start()
    deadline = time.monotonic() + 30
    while not server.in_flight_marks():
        assert time.monotonic() < deadline and client.is_alive(), server.output()
        time.sleep(0.01)
    if sig == signal.SIGINT:
        os.killpg(server.proc.pid, sig)          # Ctrl-C: the whole group
    else:
        server.proc.send_signal(sig)             # a process manager: the main pid
    client.join(60)
    code = server.proc.wait(60)
    out = server.output()
    assert "error" not in result, (result, out)
    status, body = result["response"]            # type: ignore[misc]
    assert status == 200 and body.split()[0] == expect_loop.encode(), out
    assert code in (0, -sig), out
    clean(out, allowed)


# ---------------------------------------------------------------------------
# uvicorn
# ---------------------------------------------------------------------------

UVICORN_LOOP = {"asyncio": "asyncio", "treadle": "treadle:new_event_loop"}


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("workers", [1, 2], ids=["single", "workers2"])
def test_uvicorn(servers, loop, sig, workers):
    need("uvicorn")
    port = free_port()
    cmd = [PY, "-m", "uvicorn", f"{APPS}:asgi_app", "--host", "127.0.0.1",
           "--port", str(port), "--loop", UVICORN_LOOP[loop], "--http", "h11"]
    allowed: tuple[str, ...] = ()
    if workers > 1:
        cmd += ["--workers", str(workers)]
        # uvicorn's supervisor never closes the listening socket it shares
        # with its workers, and each worker reopens stdin and never closes
        # it (on either loop: neither is a loop's).
        allowed = (f"laddr=('127.0.0.1', {port})", "name=0 mode='r'")
    server = servers(cmd, port)
    server.wait_for_output("Application startup complete.", workers)
    check_graceful(server, sig, loop, allowed)


@pytest.mark.parametrize("sig", SIGNALS)
def test_uvicorn_loop_asyncio_under_treadle_run(servers, sig):
    """``treadle run -m uvicorn --loop asyncio``: uvicorn (0.36 on) builds
    ``asyncio.SelectorEventLoop`` itself, which ``treadle run`` makes a
    treadle loop."""
    need("uvicorn")
    port = free_port()
    cmd = [PY, "-m", "treadle", "run", "-m", "uvicorn", f"{APPS}:asgi_app",
           "--host", "127.0.0.1", "--port", str(port), "--loop", "asyncio",
           "--http", "h11"]
    server = servers(cmd, port)
    server.wait_for_output("Application startup complete.", 1)
    check_graceful(server, sig, "treadle")


# ---------------------------------------------------------------------------
# gunicorn with uvicorn's worker
# ---------------------------------------------------------------------------

def _asyncio_gunicorn_worker() -> str:
    if importlib.util.find_spec("uvicorn_worker") is not None:
        return "uvicorn_worker.UvicornH11Worker"
    return "uvicorn.workers.UvicornH11Worker"


@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("loop", LOOPS)
def test_gunicorn_uvicorn_worker(servers, loop, sig):
    need("gunicorn", "uvicorn")
    port = free_port()
    worker = (_asyncio_gunicorn_worker() if loop == "asyncio"
              else "treadle.deploy.gunicorn.UvicornH11Worker")
    cmd = [PY, "-m", "gunicorn", "-k", worker, "-w", "2", "-b", f"127.0.0.1:{port}",
           "--graceful-timeout", "20", f"{APPS}:asgi_app"]
    check_graceful(servers(cmd, port), sig, loop)


def test_gunicorn_worker_module_imports_nothing_until_used():
    """``import treadle`` does not import gunicorn or uvicorn."""
    code = ("import sys, treadle, treadle.deploy; "
            "print(sorted(m for m in ('gunicorn', 'uvicorn', 'hypercorn', 'aiohttp') "
            "if m in sys.modules))")
    out = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out


# ---------------------------------------------------------------------------
# hypercorn: in one process (its worker processes are fresh interpreters
# that run hypercorn's own asyncio loop; see the README)
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("loop", LOOPS)
def test_hypercorn(servers, loop, sig):
    need("hypercorn")
    port = free_port()
    prefix = [PY, "-m"] if loop == "asyncio" else [PY, "-m", "treadle", "run", "-m"]
    cmd = [*prefix, "hypercorn", "--workers", "0", "-b", f"127.0.0.1:{port}",
           f"{APPS}:asgi_app"]
    check_graceful(servers(cmd, port), sig, loop)


# ---------------------------------------------------------------------------
# aiohttp: web.run_app(loop=...), and python -m aiohttp.web under treadle run
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("loop", LOOPS)
def test_aiohttp_run_app(servers, loop, sig):
    need("aiohttp")
    port = free_port()
    cmd = [PY, "-m", APPS, str(port), loop]
    check_graceful(servers(cmd, port), sig, loop)


@pytest.mark.parametrize("sig", SIGNALS)
def test_treadle_run_module(servers, sig):
    """``treadle run -m <server> ARGS``: any server, unchanged, on treadle."""
    need("aiohttp")
    port = free_port()
    cmd = [PY, "-m", "treadle", "run", "-m", "aiohttp.web", "-H", "127.0.0.1",
           "-P", str(port), f"{APPS}:aiohttp_app"]
    check_graceful(servers(cmd, port), sig, "treadle")


# ---------------------------------------------------------------------------
# several processes on one port (SO_REUSEPORT), one loop each
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("sig", SIGNALS)
@pytest.mark.parametrize("loop", LOOPS)
def test_two_processes_share_a_port(servers, loop, sig):
    need("aiohttp")
    port = free_port()
    cmd = [PY, "-m", APPS, str(port), loop]
    first = servers(cmd, port, "a")
    second = servers(cmd, port, "b")
    pids = {first.proc.pid, second.proc.pid}
    # The kernel spreads new connections over both listeners (by a hash of
    # their addresses) once the second has bound the port.
    seen: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 60
    while {pid for _, pid in seen} != pids:
        assert time.monotonic() < deadline, (seen, first.output(), second.output())
        seen.add(first.loop_and_pid())
    assert {name for name, _ in seen} == {loop}
    for server in (first, second):
        check_graceful_single(server, sig, loop)


def check_graceful_single(server: Server, sig: int, loop: str) -> None:
    """Stop one of several servers sharing a port: only its own requests
    are in flight when it stops, so signal it directly."""
    if server.proc.poll() is not None:
        pytest.fail(server.output())
    server.proc.send_signal(sig)
    code = server.proc.wait(60)
    out = server.output()
    assert code in (0, -sig), out
    clean(out)
