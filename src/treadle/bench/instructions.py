"""Instructions per request of a server, or per task, counted by valgrind
(callgrind).

    python -m treadle.bench.instructions [--rows echo_protocol_1k,http,spawn,...]
        [--loops asyncio,uvloop,treadle,treadle-pure] [--requests 1000,4000]
        [--tasks 2000,12000]

The rows whose size is a number of tasks (``spawn``, ``timers``, the eager
spawns) are counted per task instead: the workload runs whole inside
valgrind with N1 and N2 tasks, no load generator, and the difference of the
two totals divided by N2 - N1 is the figure (so the cyclic GC's passes over
the young tasks are in it, as they are in the wall-clock row).

Owns: the noise-free figure of the echo and HTTP workloads.  Wall-clock
and even CPU-time numbers move with the machine's load; the number of
instructions the server process executes per request does not.
Never: measures the load generator (it runs outside valgrind), or
anything but user-space instructions: time spent inside syscalls is not
counted, so a loop that saves a syscall shows only the instructions of
its wrapper.  ``treadle bench --metric cpu`` counts both.

How: the server of the workload (the same code ``treadle bench`` runs,
``_netloads.server_of``) runs alone under ``valgrind --tool=callgrind`` on
the loop under test; ``_loadgen.py --requests N`` (outside valgrind) drives
exactly N round trips over the workload's connections, then the server is
told to stop.  Two runs, N1 and N2 requests, and the difference of their
totals divided by N2 - N1 cancel start-up, imports and shutdown.  Under
valgrind the server is the slow side, so every poll finds all the
connections ready: the figure is that of a saturated server.

Counted: the loop's thread (the server's main thread), which does all of
every server's work here.  treadle's observation threads (the blocking
detector's watchdog, the ``treadle ps`` listener) are left out: the
watchdog ticks on *wall-clock* time (every 50 ms by default), and valgrind
runs the server some fifty times slower, so under valgrind it would tick
fifty times more often per request than it does natively (natively its
ticks cost under a million instructions a second, whatever the load:
README, "What it costs").  asyncio's and uvloop's servers run no other
thread.

Each run leaves its callgrind file in ``--keep DIR`` when asked
(``callgrind_annotate FILE`` shows where the instructions went).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from typing import Any

from ._netloads import loadgen_command, server_of
from ._plan import parse_loops
from ._runner import child_env
from ._workloads import BY_NAME, entry_point

DEFAULT_ROWS = ("echo_sockets_1k", "echo_streams_1k", "echo_protocol_1k",
                "echo_protocol_64k", "http", "http_split", "http_aiohttp",
                "http_uvicorn", "http_starlette")

_TOTALS = re.compile(rb"^(?:summary|totals):\s*(\d+)", re.M)


def serve_main(argv: list[str]) -> int:
    """``python -m treadle.bench.instructions --serve ROW FACTORY``: the
    process valgrind runs."""
    from ._child import resolve
    from ._measure import steady_allocator
    from ._netloads import serve_until_eof
    from ._workloads import run_on

    steady_allocator()      # as every benchmark child does (see _measure)
    row, factory = argv
    start, _ = server_of(dict(BY_NAME[row].params))
    run_on(resolve(factory), serve_until_eof(start))
    return 0


def is_task_row(row: str) -> bool:
    """A row counted per task (``spawn``, ``timers``, ...): a workload whose
    size is its number of tasks.  It runs whole inside valgrind, no load
    generator; the difference of two sizes cancels start-up and shutdown."""
    return BY_NAME[row].scaled == ("tasks",)


def run_tasks_main(argv: list[str]) -> int:
    """``python -m treadle.bench.instructions --run-tasks ROW FACTORY N``:
    the process valgrind runs for a task row."""
    from ._child import resolve
    from ._measure import steady_allocator

    steady_allocator()
    row, factory, n = argv
    w = BY_NAME[row]
    params = dict(w.params)
    params["tasks"] = int(n)
    entry_point(w)(resolve(factory), params)
    return 0


def _loop_thread_total(out: str, keep: str | None, name: str) -> int:
    # Thread 1 is the loop's (the main thread): see the module docstring.
    loop_thread = out + "-01"
    with open(loop_thread, "rb") as f:
        text = f.read()
    if keep:
        os.makedirs(keep, exist_ok=True)
        shutil.copy(loop_thread, os.path.join(keep, name))
    m = _TOTALS.search(text)
    if m is None:
        raise RuntimeError("no totals in the callgrind output")
    return int(m.group(1))


def count_tasks(row: str, spec: Any, tasks: int, keep: str | None, python: str) -> int:
    """Instructions the loop's thread executed running task row *row* with
    *tasks* tasks."""
    with tempfile.TemporaryDirectory(prefix="treadle-cg-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        run = subprocess.run(
            ["valgrind", "--tool=callgrind", "--separate-threads=yes",
             f"--callgrind-out-file={out}",
             python, "-m", "treadle.bench.instructions", "--run-tasks", row,
             spec.factory, str(tasks)],
            capture_output=True, env=child_env(spec), timeout=3600)
        if run.returncode != 0:
            raise RuntimeError(f"{row} on {spec.name}: exited with {run.returncode}: "
                               + run.stderr.decode(errors="replace")[-2000:])
        return _loop_thread_total(out, keep, f"{row}.{spec.name}.{tasks}.out")


def count(row: str, spec: Any, requests: int, keep: str | None,
          python: str, conns: int | None = None) -> int:
    """Instructions the server of *row* executed serving *requests* (over
    *conns* connections, or the workload's number)."""
    params = dict(BY_NAME[row].params)
    if conns is not None:
        params["conns"] = conns
    _, client_args = server_of(params)
    with tempfile.TemporaryDirectory(prefix="treadle-cg-") as tmp:
        out = os.path.join(tmp, "callgrind.out")
        env = child_env(spec)
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--separate-threads=yes",
             f"--callgrind-out-file={out}",
             python, "-m", "treadle.bench.instructions", "--serve", row, spec.factory],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            assert server.stdout is not None and server.stdin is not None
            line = server.stdout.readline()
            if not line.strip():
                raise RuntimeError(f"{row} on {spec.name}: the server did not start: "
                                   + server.stderr.read().decode(errors="replace")[-2000:]
                                   if server.stderr else "")
            port = int(line)
            client = subprocess.run(
                loadgen_command(*client_args, "--port", str(port),
                                "--requests", str(requests)),
                capture_output=True, timeout=3600)
            rep = json.loads(client.stdout.decode().strip().splitlines()[-1])
            if "error" in rep:
                raise RuntimeError(f"load generator: {rep['error']}")
            server.stdin.close()
            server.wait(timeout=600)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        if server.returncode != 0:
            raise RuntimeError(f"{row} on {spec.name}: server exited with "
                               f"{server.returncode}")
        return _loop_thread_total(out, keep, f"{row}.{spec.name}.{requests}.out")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        return serve_main(argv[1:])
    if argv[:1] == ["--run-tasks"]:
        return run_tasks_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m treadle.bench.instructions",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", default=",".join(DEFAULT_ROWS))
    p.add_argument("--loops", default="asyncio,uvloop,treadle,treadle-pure")
    p.add_argument("--requests", default="1000,4000",
                   help="N1,N2: the two runs whose difference is counted")
    p.add_argument("--tasks", default="2000,12000",
                   help="N1,N2 for the rows counted per task (spawn, timers, ...)")
    p.add_argument("--conns", type=int, metavar="N",
                   help="connections (default: the workload's own).  With 1, every "
                        "request is one poll, one read and one write on every loop: "
                        "the figure no longer depends on how requests happen to "
                        "batch up, which varies with the server's speed")
    p.add_argument("--keep", metavar="DIR", help="keep the callgrind files here")
    p.add_argument("--json", action="store_true", help="one JSON line per cell")
    a = p.parse_args(argv)
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    n1, n2 = (int(x) for x in a.requests.split(","))
    t1, t2 = (int(x) for x in a.tasks.split(","))
    loops, _ = parse_loops(a.loops)
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    table: dict[tuple[str, str], float | str] = {}
    for row in rows:
        for spec in loops:
            python = spec.python or sys.executable
            try:
                if is_task_row(row):
                    i1 = count_tasks(row, spec, t1, a.keep, python)
                    i2 = count_tasks(row, spec, t2, a.keep, python)
                    per = (i2 - i1) / (t2 - t1)
                else:
                    i1 = count(row, spec, n1, a.keep, python, a.conns)
                    i2 = count(row, spec, n2, a.keep, python, a.conns)
                    per = (i2 - i1) / (n2 - n1)
                table[(row, spec.name)] = per
            except Exception as exc:  # one cell's failure is reported, not raised
                table[(row, spec.name)] = f"failed: {exc}"
                per = None
            if a.json:
                print(json.dumps({"row": row, "loop": spec.name, "instr_per_request": per,
                                  "per": "task" if is_task_row(row) else "request",
                                  "error": None if per is not None else table[(row, spec.name)]}),
                      flush=True)
            else:
                print(f"{row:18} {spec.name:14} "
                      f"{'failed' if per is None else round(per):>10}", file=sys.stderr, flush=True)
    if not a.json:
        names = [s.name for s in loops]
        print("| row | " + " | ".join(names) + " |")
        print("|---|" + "---:|" * len(names))
        for row in rows:
            cells = []
            for n in names:
                v = table[(row, n)]
                cells.append(f"{v:,.0f}" if isinstance(v, float) else str(v))
            print(f"| {row} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
