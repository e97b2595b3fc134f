"""``treadle bench`` end to end: every workload once in quick mode on
asyncio's loop and treadle's, the report shapes, the interleaving of real
runs, and how failures, hangs and bad options are reported."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from treadle.bench._child import RESULT_MARK
from treadle.bench._runner import parse_child_output
from treadle.bench._workloads import BY_NAME, WORKLOADS

BENCH = [sys.executable, "-m", "treadle", "bench"]
#: Workloads that need packages treadle does not depend on (n/a without them).
FRAMEWORK_ROWS = ("http_aiohttp", "http_uvicorn", "http_starlette")
RECORD_KEYS = {"schema", "workload", "group", "loop", "factory", "round", "position",
               "params", "unit", "higher_is_better", "status", "python", "suite",
               "loop_class", "treadle_compiled"}


def _bench(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("TREADLE_PURE", None)
    return subprocess.run([*BENCH, *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.fixture(scope="module")
def quick_suite(tmp_path_factory):
    """The whole suite, once, in quick mode, on asyncio and treadle."""
    out = tmp_path_factory.mktemp("bench") / "quick.jsonl"
    proc = _bench("--quick", "--loops", "asyncio,treadle", "--json", "--out", str(out),
                  timeout=300)
    return proc, out


# The quick suite is about 50 short processes and a minute of wrk runs (wrk
# runs whole seconds), more on a loaded 2-core machine; its module fixture is
# set up by the first test.
@pytest.mark.timeout(360)
def test_quick_suite_runs_every_workload_on_both_loops(quick_suite):
    proc, saved = quick_suite
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(l) for l in proc.stdout.splitlines()]
    assert saved.read_text() == proc.stdout           # --out saves the same records
    assert [(r["workload"], r["loop"]) for r in records] == [
        (w.name, loop) for w in WORKLOADS for loop in ("asyncio", "treadle")]
    for r in records:
        assert RECORD_KEYS <= set(r), r
        assert r["schema"] == "treadle-bench/1"
        assert r["status"] in ("ok", "failed", "timeout", "n/a"), r
        assert r["params"] == BY_NAME[r["workload"]].resolve(quick=True)
        if r["status"] == "ok":
            assert isinstance(r["value"], (int, float)) and r["value"] > 0, r
        else:
            assert isinstance(r["error"], str) and r["error"], r
    for r in records:
        if r["workload"] in FRAMEWORK_ROWS and r["status"] == "n/a":
            # (aiohttp, uvicorn, Starlette not installed: no server ran)
            assert "pip install" in r["error"], r     # names what to install
            continue
        if r["loop"] == "asyncio":
            assert r["loop_class"].startswith("asyncio."), r
            eager_needs_312 = r["workload"].startswith("spawn_eager") and sys.version_info < (3, 12)
            treadle_only = r["workload"] == "simnet"
            assert r["status"] == ("n/a" if eager_needs_312 or treadle_only else "ok"), r
        else:
            assert r["loop_class"] == "treadle._loop.EventLoop", r
            # treadle's own eager factory works on every Python
            if r["workload"] in ("call_soon", "switch", "spawn", "spawn_eager_own", "timers",
                                 "timer_cancel", "queue", "future", "mem_tasks", "simnet"):
                assert r["status"] == "ok", r
    # The progress lines went to stderr, one per run (stderr is not a TTY).
    progress = [l for l in proc.stderr.splitlines() if l.startswith("[")]
    assert len(progress) == len(records)
    assert progress[-1].startswith(f"[{len(records)}/{len(records)}] round 1/1  mem_conns")


@pytest.mark.timeout(360)
def test_quick_suite_rendered_as_markdown_and_text(quick_suite):
    _, saved = quick_suite
    md = _bench("--from", str(saved), "--markdown")
    assert md.returncode == 0, md.stderr
    lines = md.stdout.splitlines()
    head = next(i for i, l in enumerate(lines) if l.startswith("| workload | unit |"))
    assert lines[head].startswith("| workload | unit | asyncio | treadle (")
    assert lines[head + 1] == "|---|---|---:|---:|"
    rows = lines[head + 2:head + 2 + len(WORKLOADS)]
    assert [r.split(" | ")[0][2:] for r in rows] == [w.name for w in WORKLOADS]
    records = [json.loads(l) for l in saved.read_text().splitlines()]
    for row, w in zip(rows, WORKLOADS):
        cells = row.strip("| ").split(" | ")
        assert cells[1] == w.unit
        statuses = [r["status"] for r in records if r["workload"] == w.name]
        for cell, status in zip(cells[2:], statuses):
            if status == "ok":
                assert cell[0].isdigit(), row
            else:
                assert cell == status, row
    text = _bench("--from", str(saved), "--only", "cpu")
    assert text.returncode == 0
    assert text.stdout.startswith("treadle bench: Python ")
    body = text.stdout.splitlines()
    assert sum(1 for l in body if l.split()[:1] and l.split()[0] in BY_NAME) >= 9
    cpu = _bench("--from", str(saved), "--only", "switch", "--metric", "cpu")
    assert cpu.returncode == 0
    assert "throughput per CPU-second" in cpu.stdout
    assert next(l for l in cpu.stdout.splitlines()
                if l.startswith("switch ")).split()[1] == "switches/CPU-s"


def test_rounds_are_interleaved_in_real_runs():
    proc = _bench("--quick", "--only", "call_soon", "--rounds", "3", "--json", "-q",
                  "--loops", "asyncio,treadle,again=asyncio:new_event_loop")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""                            # -q: no progress
    records = [json.loads(l) for l in proc.stdout.splitlines()]
    assert [(r["round"], r["loop"], r["position"]) for r in records] == [
        (0, "asyncio", 0), (0, "treadle", 1), (0, "again", 2),
        (1, "treadle", 0), (1, "again", 1), (1, "asyncio", 2),
        (2, "again", 0), (2, "asyncio", 1), (2, "treadle", 2)]
    assert all(r["status"] == "ok" for r in records)


def test_a_broken_loop_fails_its_cells_and_the_suite_carries_on():
    proc = _bench("--quick", "--only", "call_soon,mem_tasks", "--loops",
                  "asyncio,broken=json:loads,missing=no_such_module_xyz:new_event_loop")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    row = next(l for l in lines if l.startswith("call_soon"))
    assert row.split()[-2:] == ["failed", "failed"]
    assert row.split()[2][0].isdigit()                  # asyncio's cell has a number
    notes = proc.stdout[proc.stdout.index("notes:"):]
    assert "FAILED TypeError: loads() missing 1 required positional argument" in notes
    assert "broken: call_soon, mem_tasks" in notes
    assert "FAILED ModuleNotFoundError: No module named 'no_such_module_xyz'" in notes
    assert "call_soon on broken: failed: TypeError" in proc.stderr


def test_a_hung_run_is_killed_and_reported():
    proc = _bench("--only", "switch", "--scale", "1000", "--timeout", "1", "--loops",
                  "asyncio", "--rounds", "1", "--json", "-q", timeout=60)
    assert proc.returncode == 0, proc.stderr
    (rec,) = [json.loads(l) for l in proc.stdout.splitlines()]
    assert rec["status"] == "timeout"
    assert rec["error"] == "no result after 1 s (killed)"


@pytest.mark.parametrize("args, message", [
    (["--loops", "asyncio,nope"], "unknown loop 'nope'"),
    (["--only", "nope"], "no workload matches 'nope'"),
    (["--only", "cpu", "--skip", "cpu"], "leave no workload"),
    (["--rounds", "0"], "--rounds must be at least 1"),
    (["--duration", "0"], "--duration must be positive"),
    (["--baseline", "uvloop", "--loops", "asyncio"], "--baseline 'uvloop' is not one"),
    (["--from", "/nonexistent/file.jsonl"], "--from /nonexistent/file.jsonl"),
])
def test_bad_options(args, message):
    proc = _bench(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert proc.stdout == ""


def test_help_and_list():
    proc = _bench("--help")
    assert proc.returncode == 0
    assert "usage: treadle bench" in proc.stdout and "--markdown" in proc.stdout
    listing = _bench("--list")
    assert listing.returncode == 0
    for w in WORKLOADS:
        assert f"  {w.name} " in listing.stdout
    assert "treadle-pure" in listing.stdout
    module = subprocess.run([sys.executable, "-m", "treadle.bench", "--list"],
                            capture_output=True, text=True, timeout=60)
    assert module.returncode == 0 and module.stdout == listing.stdout
    top = subprocess.run([sys.executable, "-m", "treadle", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert "bench" in top.stdout


MALLINFO = """
import ctypes, importlib.util, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[2] == "warm":
    # _measure.py imports only the stdlib: loaded by path, it leaves the
    # allocator as a bare interpreter has it (importing treadle may not).
    spec = importlib.util.spec_from_file_location("measure", sys.argv[1])
    measure = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(measure)
    measure.steady_allocator()
before = libc.mallinfo2().hblks
buf = bytearray(262144)                 # the size of asyncio's read buffer
print(libc.mallinfo2().hblks - before)
"""


def test_children_run_with_a_warmed_allocator():
    """Every child frees one large block before its run, so that glibc
    serves asyncio's 256 KiB read buffers from the heap rather than with an
    mmap per read (which cost asyncio's echo server 4x the CPU)."""
    import ctypes

    from treadle.bench import _measure
    try:
        ctypes.CDLL(None).mallinfo2
    except (AttributeError, OSError):
        pytest.skip("not glibc 2.33+: no mallinfo2 to observe the allocator")
    out = {}
    for state in ("cold", "warm"):
        # -I -S: a bare interpreter, whose allocator starts cold.
        source = os.path.join(os.path.dirname(_measure.__file__), "_measure.py")
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", MALLINFO, source, state],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        out[state] = int(proc.stdout)
    assert out == {"cold": 1, "warm": 0}     # mmapped blocks the buffer added


def test_child_output_without_a_result_is_a_failure():
    assert parse_child_output("noise\n" + RESULT_MARK + '{"status": "ok", "value": 1}\n',
                              "", 0) == {"status": "ok", "value": 1}
    rec = parse_child_output("", "Traceback...\nSystemError: bad\n", 1)
    assert rec == {"status": "failed",
                   "error": "the child exited with status 1 without a result: SystemError: bad"}
    rec = parse_child_output("", "", -11)
    assert rec["error"] == "the child was killed by SIGSEGV"


def test_idle_connections_are_lowered_to_the_fd_limit():
    """With a hard fd limit below 10,000 connections, mem_conns measures
    fewer and says so."""
    spec = {"workload": "mem_conns", "factory": "asyncio:new_event_loop",
            "params": {"conns": 10_000}}

    def limit_fds() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (400, 428))

    proc = subprocess.run([sys.executable, "-m", "treadle.bench._child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=60, preexec_fn=limit_fds)
    rec = parse_child_output(proc.stdout, proc.stderr, proc.returncode)
    assert rec["status"] == "ok", rec
    assert rec["extra"]["conns"] == 300 == rec["ops"]
    assert rec["extra"]["note"] == ("lowered from 10,000 to 300 connections: the fd limit "
                                    "is 428 and cannot be raised (ulimit -n)")
