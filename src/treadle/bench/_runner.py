"""Running the plan: one child process per run, one record per run.

Owns: the child's command line and environment, its time limit, and
turning whatever happened to it (result, "n/a", error, crash, hang) into a
record.
Never: raises because a run failed.  A loop that cannot run a workload yet
(treadle before its networking lands) fails that cell of the table and the
suite carries on; only Ctrl-C stops it, after killing the running child
and everything it started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ._child import RESULT_MARK
from ._plan import LoopSpec, Run
from ._workloads import BY_NAME, Workload

SCHEMA = "treadle-bench/1"

#: Variables that change how a loop behaves and must not leak into a run.
SCRUBBED_ENV = ("PYTHONASYNCIODEBUG", "PYTHONDEVMODE", "PYTHONTRACEMALLOC",
                "PYTHONMALLOC")


@dataclass(slots=True)
class Options:
    rounds: int = 3
    quick: bool = False
    scale: float = 1.0
    duration: float | None = None
    warmup: float | None = None
    timeout: float | None = None
    python: str = sys.executable


def params_for(w: Workload, opts: Options) -> dict[str, Any]:
    return w.resolve(quick=opts.quick, scale=opts.scale, duration=opts.duration,
                     warmup=opts.warmup)


def time_limit(w: Workload, params: dict[str, Any], opts: Options) -> float:
    """Seconds after which a run is killed: generous, since a slow loop
    must not be cut off, but bounded, since a hung one must not hang the
    suite."""
    if opts.timeout is not None:
        return opts.timeout
    if w.timed:
        return float(params["duration"]) + float(params["warmup"]) + 60.0
    if w.name == "mem_conns":
        return 120.0 + int(params["conns"]) / 100
    return (60.0 if opts.quick else 300.0) * max(1.0, opts.scale)


def child_env(loop: LoopSpec) -> dict[str, str]:
    env = dict(os.environ)
    for key in SCRUBBED_ENV:
        env.pop(key, None)
    for key, value in loop.env.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def _signal_name(rc: int) -> str:
    try:
        return signal.Signals(-rc).name
    except ValueError:
        return f"signal {-rc}"


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """Kill the child and whatever it started (its load generator): the
    child leads its own process group.  Only called while the child is not
    yet reaped, so its pid (= the group id) cannot have been reused."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def parse_child_output(out: str, err: str, rc: int | None) -> dict[str, Any]:
    """The child's record, or a failure record that says what went wrong."""
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_MARK):
            try:
                rec: dict[str, Any] = json.loads(line[len(RESULT_MARK):])
                return rec
            except ValueError:
                break
    tail = [l for l in err.strip().splitlines() if l.strip()][-1:]
    if rc is not None and rc < 0:
        why = f"the child was killed by {_signal_name(rc)}"
    else:
        why = f"the child exited with status {rc} without a result"
    return {"status": "failed", "error": why + (f": {tail[0].strip()}" if tail else "")}


def run_one(run: Run, loop: LoopSpec, opts: Options) -> dict[str, Any]:
    """Run *run* in a fresh child process and return its record."""
    w = BY_NAME[run.workload]
    params = params_for(w, opts)
    spec = {"workload": w.name, "factory": loop.factory, "params": params}
    limit = time_limit(w, params, opts)
    t0 = time.perf_counter()
    python = loop.python or opts.python
    proc = subprocess.Popen([python, "-m", "treadle.bench._child", json.dumps(spec)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=child_env(loop),
                            start_new_session=True)
    timed_out = False
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        out, err = proc.communicate()
    except BaseException:
        _kill_group(proc)
        proc.communicate()
        raise
    # After a normal exit the group is not killed: the child reaps its load
    # generator itself, and an orphan (the child crashed) exits on its own
    # deadline or when its stdin closes; the pid may already be reused.
    elapsed = time.perf_counter() - t0
    if timed_out:
        child: dict[str, Any] = {"status": "timeout",
                                 "error": f"no result after {limit:.0f} s (killed)"}
    else:
        child = parse_child_output(out.decode(errors="replace"),
                                   err.decode(errors="replace"), proc.returncode)
    rec: dict[str, Any] = {
        "schema": SCHEMA, "workload": w.name, "group": w.group, "loop": loop.name,
        "factory": loop.factory,
        "env": {k: v for k, v in loop.env.items() if v is not None},
        "round": run.round, "position": run.position, "params": params,
        "unit": w.unit, "higher_is_better": w.higher_is_better,
        "process_s": round(elapsed, 3),
    }
    rec.update(child)
    rec.setdefault("status", "failed")
    return rec


def run_all(runs: Sequence[Run], loops: dict[str, LoopSpec], opts: Options,
            on_start: Callable[[Run], None] | None = None,
            on_done: Callable[[Run, dict[str, Any]], None] | None = None,
            runner: Callable[[Run, LoopSpec, Options], dict[str, Any]] = run_one,
            ) -> tuple[list[dict[str, Any]], bool]:
    """Every run in order.  Returns the records and whether Ctrl-C cut the
    suite short (the records so far are still returned)."""
    records: list[dict[str, Any]] = []
    for run in runs:
        if on_start is not None:
            on_start(run)
        try:
            rec = runner(run, loops[run.loop], opts)
        except KeyboardInterrupt:
            return records, True
        records.append(rec)
        if on_done is not None:
            on_done(run, rec)
    return records, False
