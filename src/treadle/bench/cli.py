"""``treadle bench``: its options, and the command itself.

Owns: the command-line surface of the benchmark (``add_arguments`` for the
``treadle`` command's ``bench`` subcommand, ``main`` for
``python -m treadle.bench``) and the sequence plan -> runs -> report.
Never: measures anything in its own process: every run happens in a child
(see ``_runner.py``), so the command's own imports and state cannot tilt a
result.  Importing this module is cheap (argparse only) because
``treadle --help`` imports it.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Sequence, TextIO

DESCRIPTION = ("Run the benchmark suite side by side on asyncio, uvloop and treadle, "
               "each run in a fresh process, and print medians and ratios to asyncio.")

EPILOG = """\
workloads: cpu (call_soon, switch, spawn, spawn_eager, spawn_eager_own, timers,
timer_cancel, queue, future), echo (echo_{sockets,streams,protocol}_{1k,64k}),
http (http, http_split), scopes (scope_cancel, scope_enter_exit),
memory (mem_tasks, mem_conns); io = echo + http.
--only/--skip take names, groups or patterns (echo_*_64k, http*); a name wins
over the group of the same name (http is one workload); see --list.

loops: asyncio, uvloop (when installed), treadle (as installed), treadle-pure
(TREADLE_PURE=1), or LABEL=MODULE:FACTORY for any other asyncio loop factory
(LABEL=MODULE:FACTORY@PYTHON: run that column under another interpreter,
such as a venv with another build of treadle).

examples:
  treadle bench                       the whole suite, 3 rounds (about 10 minutes)
  treadle bench --quick               every workload once, small sizes (a smoke test)
  treadle bench --only cpu --rounds 5
  treadle bench --only echo_protocol_1k --loops asyncio,treadle --duration 5
  treadle bench --markdown --out run.jsonl    then: treadle bench --from run.jsonl
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--loops", metavar="LIST",
                   help="comma-separated loops to compare (default: asyncio,uvloop,"
                        "treadle,treadle-pure; uvloop only when installed)")
    p.add_argument("--only", action="append", metavar="WORKLOADS",
                   help="run only these workloads (names, groups or patterns, "
                        "comma-separated; repeatable)")
    p.add_argument("--skip", action="append", metavar="WORKLOADS",
                   help="leave these workloads out (same forms as --only)")
    p.add_argument("--rounds", type=int, metavar="N",
                   help="interleaved rounds; the table shows medians (default 3, "
                        "1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="small sizes and short durations: checks that everything runs")
    p.add_argument("--scale", type=float, default=1.0, metavar="F",
                   help="multiply the counts of the count-based workloads by F")
    p.add_argument("--duration", type=float, metavar="SECONDS",
                   help="measured seconds of each echo/http run (default 2)")
    p.add_argument("--warmup", type=float, metavar="SECONDS",
                   help="unmeasured seconds before each echo/http window (default 0.5)")
    p.add_argument("--timeout", type=float, metavar="SECONDS",
                   help="kill a run after this long (default: generous, per workload)")
    p.add_argument("--baseline", metavar="LOOP",
                   help="the loop ratios are relative to (default asyncio)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true",
                     help="print the raw results, one JSON record per run, "
                          "instead of the table")
    fmt.add_argument("--markdown", action="store_true",
                     help="print the table as Markdown")
    p.add_argument("--metric", choices=["wall", "cpu"], default="wall",
                   help="throughput per wall-clock second (default), or per CPU-second "
                        "of the process under test: steadier on a busy machine")
    p.add_argument("--out", metavar="FILE",
                   help="also save the raw records (JSON lines) to FILE")
    p.add_argument("--from", dest="from_file", metavar="FILE",
                   help="run nothing: show the results saved in FILE by --out or --json")
    p.add_argument("--list", action="store_true",
                   help="list the workloads and loops, and exit")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress output on stderr")


def parser(prog: str = "treadle bench") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return p


def _versions() -> dict[str, str]:
    import platform
    from importlib import metadata
    out = {"python": platform.python_version()}
    for dist in ("treadle", "uvloop"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def _meta(args: argparse.Namespace, rounds: int, notes: list[str]) -> dict[str, Any]:
    import datetime
    import os
    import platform
    return {"started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "platform": f"{platform.system()} {platform.machine()}",
            "cpus": os.cpu_count(),
            "loadavg": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
            "versions": _versions(), "rounds": rounds, "quick": bool(args.quick),
            "notes": notes}


def _outcome(rec: dict[str, Any]) -> str:
    from ._report import human
    if rec.get("status") == "ok" and isinstance(rec.get("value"), (int, float)):
        return f"{human(float(rec['value']), str(rec.get('unit', '')))} {rec.get('unit', '')}"
    return f"{rec.get('status')}: {rec.get('error', '')}"


def _list(out: TextIO) -> None:
    from ._plan import BUILTIN_LOOPS
    from ._workloads import WORKLOADS, GROUPS
    out.write("workloads:\n")
    for w in WORKLOADS:
        out.write(f"  {w.name:18s} {w.group:7s} {w.summary}\n")
    out.write("groups: " + ", ".join(f"{g} ({len(ws)})" for g, ws in GROUPS.items()) + "\n")
    out.write("loops:\n")
    for spec in BUILTIN_LOOPS.values():
        out.write(f"  {spec.name:18s} {spec.factory:26s} {spec.description}\n")


def run(args: argparse.Namespace, out: TextIO | None = None,
        err: TextIO | None = None) -> int:
    """The command, from parsed arguments.  Returns the exit status: 0 when
    the suite ran (failed cells are part of the result, not an error), 2 on
    bad options, 130 when interrupted."""
    from . import _plan, _progress, _report, _runner, _workloads

    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr

    def fail(msg: str) -> int:
        err.write(f"treadle bench: error: {msg}\n")
        return 2

    if args.list:
        _list(out)
        return 0
    try:
        workloads = _workloads.select(args.only, args.skip)
    except ValueError as exc:
        return fail(str(exc))
    if not workloads:
        return fail("--only/--skip leave no workload to run")
    units = {w.name: w.unit for w in _workloads.WORKLOADS}
    better = {w.name: w.higher_is_better for w in _workloads.WORKLOADS}
    groups = {w.name: w.group for w in _workloads.WORKLOADS}

    if args.from_file:
        try:
            with open(args.from_file, encoding="utf-8") as f:
                records = _report.load_json(f.read())
        except (OSError, ValueError) as exc:
            return fail(f"--from {args.from_file}: {exc}")
        loops = list(dict.fromkeys(str(r["loop"]) for r in records))
        if args.loops:
            wanted = [l.strip().partition("=")[0] for l in args.loops.split(",")]
            loops = [l for l in wanted if l in loops]
        present = set(str(r["workload"]) for r in records)
        workloads = [w for w in workloads if w in present]
        meta = dict(records[0].get("suite", {})) if records else {}
        interrupted = False
    else:
        try:
            specs, notes = _plan.parse_loops(args.loops)
        except _plan.PlanError as exc:
            return fail(str(exc))
        rounds = args.rounds if args.rounds is not None else (1 if args.quick else 3)
        if rounds < 1:
            return fail("--rounds must be at least 1")
        if args.scale <= 0:
            return fail("--scale must be positive")
        for name in ("duration", "warmup", "timeout"):
            v = getattr(args, name)
            if v is not None and (v < 0 or (name != "warmup" and v == 0)):
                return fail(f"--{name} must be positive")
        loops = [s.name for s in specs]
        if args.baseline is not None and args.baseline not in loops:
            return fail(f"--baseline {args.baseline!r} is not one of the loops "
                        f"({', '.join(loops)})")
        by_name = {s.name: s for s in specs}
        opts = _runner.Options(rounds=rounds, quick=args.quick, scale=args.scale,
                               duration=args.duration, warmup=args.warmup,
                               timeout=args.timeout)
        runs = _plan.schedule(workloads, loops, rounds)
        meta = _meta(args, rounds, notes)
        progress = _progress.Progress(len(runs), err, enabled=not args.quiet)
        for n in notes:
            progress.message(f"note: {n}")
        saved = None
        if args.out:
            try:
                saved = open(args.out, "w", encoding="utf-8")
            except OSError as exc:
                return fail(f"--out {args.out}: {exc}")

        def label(r: _plan.Run) -> str:
            return f"round {r.round + 1}/{rounds}  {r.workload} on {r.loop}"

        def done(r: _plan.Run, rec: dict[str, Any]) -> None:
            rec["suite"] = meta
            progress.finish(label(r), _outcome(rec))
            if saved is not None:
                saved.write(_report.render_json([rec]))
                saved.flush()
            if args.json:
                out.write(_report.render_json([rec]))
                out.flush()

        try:
            records, interrupted = _runner.run_all(
                runs, by_name, opts, on_start=lambda r: progress.start(label(r)),
                on_done=done)
        finally:
            progress.close()
            if saved is not None:
                saved.close()
    if args.json:
        if args.from_file:
            out.write(_report.render_json(records))
        return 130 if interrupted else 0
    baseline = args.baseline or ("asyncio" if "asyncio" in loops else
                                 (loops[0] if loops else None))
    if baseline is not None and baseline not in loops:
        return fail(f"--baseline {baseline!r} is not one of the loops ({', '.join(loops)})")
    rep = _report.build(records, workloads, loops, baseline=baseline, units=units,
                        higher_is_better=better, groups=groups, meta=meta,
                        interrupted=interrupted, cpu_time=args.metric == "cpu")
    out.write(_report.render_markdown(rep) if args.markdown else _report.render_text(rep))
    out.flush()
    return 130 if interrupted else 0


def main(argv: Sequence[str] | None = None, prog: str = "treadle bench") -> int:
    return run(parser(prog).parse_args(argv))
