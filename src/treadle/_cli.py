"""The ``treadle`` command.  Thin: parses arguments and calls the library.

    treadle run SCRIPT.py [ARGS...]     run an asyncio script on treadle
    treadle run -m MODULE [ARGS...]     the same for a module
    treadle bench [OPTIONS]             benchmarks side by side (treadle.bench)
    treadle ps PID / pstree PID         the tasks of a running treadle program
    treadle top PID                     live per-task and per-loop timing
    treadle --version
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import runpy
import signal
import sys
import traceback
from typing import Callable
from types import TracebackType
from typing import Any, Sequence

from ._version import __version__


def _version_line() -> str:
    import treadle
    build = "compiled" if treadle.__compiled__ else "pure Python"
    return (f"treadle {__version__} ({build}) on Python "
            f"{sys.version.split()[0]} [{sys.implementation.name}]")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="treadle",
        description="treadle: a fast asyncio event loop with structured "
                    "concurrency and deterministic testing.")
    p.add_argument("--version", action="version", version=_version_line())
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser(
        "run", help="run an unmodified asyncio program on treadle",
        description="Run SCRIPT (or -m MODULE) as `python SCRIPT` would, with "
                    "every asyncio.run(), asyncio.Runner() and "
                    "asyncio.new_event_loop() in it using treadle's loop.")
    run.add_argument("-m", dest="module", metavar="MODULE",
                     help="run a module as a script (like python -m)")
    run.add_argument("--debug", action="store_true",
                     help="asyncio debug mode (like PYTHONASYNCIODEBUG=1)")
    run.add_argument("--virtual-time", action="store_true",
                     help="run on a virtual clock that jumps to the next timer "
                          "whenever every task is blocked (sleeps and timeouts "
                          "take no real time; time.monotonic(), perf_counter() "
                          "and time() follow the virtual clock)")
    run.add_argument("--seed", type=int, default=None, metavar="N",
                     help="seeded scheduling: tasks ready in the same loop turn "
                          "run in an order drawn from N (reproducible)")
    run.add_argument("script", nargs="?", metavar="SCRIPT",
                     help="path of the Python script to run")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS",
                     help="arguments passed to the script as sys.argv[1:]")
    from .bench.cli import DESCRIPTION, EPILOG, add_arguments
    bench = sub.add_parser(
        "bench", help="compare treadle with asyncio and uvloop side by side",
        description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(bench)
    _add_observe_commands(sub)
    return p


def _split_module_args(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``treadle run [OPTIONS] -m MODULE ARGS``: as with ``python -m``,
    everything after MODULE is the module's, options included
    (``treadle run -m uvicorn --workers 2 app:app``); argparse would take
    ``--workers`` as an option of ours.  Returns (our arguments, the
    module's, or None when not running a module)."""
    if argv[:1] != ["run"]:
        return argv, None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "-m":
            return argv[:i + 2], argv[i + 2:]
        if arg.startswith("-m"):                 # -mMODULE
            return argv[:i + 1], argv[i + 1:]
        if not arg.startswith("-"):
            break                                # SCRIPT: the rest is its own
        i += 2 if arg == "--seed" else 1
    return argv, None


def _add_observe_commands(sub: Any) -> None:
    ps = sub.add_parser(
        "ps", help="list the tasks of a running treadle program",
        description="Every task of every treadle loop in process PID: id, name, "
                    "state, what it waits on and for how long, who started it, its "
                    "coroutine stack and who awaits it (the columns of `python -m "
                    "asyncio ps`, with treadle's in between).  Works while the loop "
                    "is blocked.  Only your own processes.")
    ps.add_argument("pid", metavar="PID")
    ps.add_argument("--json", action="store_true", help="print the raw document as JSON")
    tree = sub.add_parser(
        "pstree", help="the tasks of a running treadle program as a tree",
        description="The tasks of process PID as a tree through awaits and task "
                    "groups (as `python -m asyncio pstree`); cycles of awaits are "
                    "drawn once and listed.")
    tree.add_argument("pid", metavar="PID")
    tree.add_argument("--json", action="store_true", help="print the tree as JSON")
    top = sub.add_parser(
        "top", help="live per-task and per-loop timing of a running treadle program",
        description="A live view of process PID refreshed every INTERVAL: per task "
                    "its steps, busy / scheduled / idle time, wakes and self-wakes, "
                    "where it was spawned and warnings; per loop turns/s, callbacks "
                    "per turn, I/O wait vs running, timer lateness and the ready "
                    "queue.  Per-task timing is on in the process while you watch.  "
                    "Keys: left/right choose the sort column, r reverses, q quits.")
    top.add_argument("pid", metavar="PID")
    top.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                     help="refresh every SECONDS (default 1)")
    top.add_argument("--sort", default="busy",
                     choices=["id", "name", "state", "steps", "busy", "scheduled", "idle",
                              "wakes", "self_wakes", "longest_step", "spawned_at"],
                     help="initial sort column (default busy)")
    top.add_argument("--once", action="store_true",
                     help="print one screen as text and exit (also when not on a terminal)")


def _observe(args: argparse.Namespace) -> int:
    """ps / pstree / top: one line and status 1 for any process that cannot
    be inspected."""
    import json
    from .observe._client import ClientError, check_pid, request
    try:
        pid = check_pid(args.pid)
        if args.command == "top":
            from .observe._top import run_top
            return run_top(pid, interval=args.interval, sort=args.sort, once=args.once)
        doc = request(pid, {"cmd": "ps"})
    except ClientError as exc:
        print(f"treadle {args.command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    from .observe import _render
    if args.command == "ps":
        text = json.dumps(doc, indent=2) if args.json else _render.render_ps(doc)
    else:
        text = (json.dumps(_render.tree_json(doc), indent=2) if args.json
                else _render.render_pstree(doc))
    try:
        print(text)
    except BrokenPipeError:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    ours, module_args = _split_module_args(
        list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(ours)
    if module_args is not None:
        args.args = module_args
    if args.command == "run":
        if args.module is None and args.script is None:
            parser.error("run: give a SCRIPT or -m MODULE")
        if args.module is not None and args.script is not None:
            args.args.insert(0, args.script)
        return _run_program(args.script, args.module, args.args, debug=args.debug,
                            virtual_time=args.virtual_time, seed=args.seed)
    if args.command == "bench":
        from .bench.cli import run as run_bench
        return run_bench(args)
    if args.command in ("ps", "pstree", "top"):
        return _observe(args)
    parser.print_help()
    return 0


def install(*, clock: Any = None, seed: int | None = None) -> None:
    """Make asyncio build treadle loops wherever it builds one itself, and
    wherever a program builds asyncio's loop class by name (each with
    *clock* and *seed*, see ``treadle.new_event_loop``)."""
    from . import _loop
    from asyncio import unix_events
    loop_class = _loop.selector_event_loop_class(clock=clock, seed=seed)
    # The names programs build asyncio's own loop with.  Every loop of the
    # program is then an instance of this one class, as under asyncio.
    names = ["SelectorEventLoop"]
    if hasattr(unix_events, "EventLoop"):     # 3.13+
        names.append("EventLoop")
    for module in (asyncio, unix_events):
        for name in names:
            setattr(module, name, loop_class)
    # Every loop asyncio makes by itself - asyncio.run() and Runner()
    # without a factory, new_event_loop(), get_event_loop() - comes from its
    # default policy's _loop_factory, a class attribute bound when asyncio
    # was imported (3.14-3.15 too: events.new_event_loop() asks the policy
    # privately, without the deprecation warning).  Patching the class, not
    # installing a policy of ours, also covers a program (a test suite, per
    # test) that installs a fresh default policy - set_event_loop_policy(None)
    # or (asyncio.DefaultEventLoopPolicy()) - and policy instances made
    # before this ran.
    unix_events._UnixDefaultEventLoopPolicy._loop_factory = loop_class  # type: ignore[attr-defined]


def _run_program(script: str | None, module: str | None, argv: list[str],
                 *, debug: bool, virtual_time: bool = False,
                 seed: int | None = None) -> int:
    if debug:
        os.environ["PYTHONASYNCIODEBUG"] = "1"
    clock: Any = None
    program_clocks: Any = contextlib.nullcontext()
    if virtual_time:
        # One virtual timeline for the whole program; its own time.monotonic()
        # etc. follow it, so what it prints about durations is what it would
        # print in real time (see treadle.testing.clock).
        from .testing.clock import VirtualClock, virtual_time_functions
        clock = VirtualClock()
        program_clocks = virtual_time_functions(clock)
    install(clock=clock, seed=seed)
    if module is not None:
        sys.argv = [module, *argv]
        _set_path_entry(os.getcwd())
        target: Any = module
        runner: Callable[..., Any] = runpy.run_module
        kwargs: dict[str, Any] = {"run_name": "__main__", "alter_sys": True}
        origin = None
    else:
        assert script is not None
        if not os.path.exists(script):
            print(f"treadle: can't open file {script!r}: "
                  f"[Errno 2] No such file or directory", file=sys.stderr)
            return 2
        sys.argv = [script, *argv]
        _set_path_entry(os.path.dirname(os.path.realpath(script)))
        origin = os.path.abspath(script)
        kwargs = {}
        if os.path.isfile(script) and script.endswith(".py"):
            target = origin
            runner = _run_source_file
        else:
            # A directory or zip file with a __main__.py, or a .pyc.
            target = script
            runner = runpy.run_path
            kwargs = {"run_name": "__main__"}
    try:
        with program_clocks:
            runner(target, **kwargs)
    except SystemExit:
        raise
    except KeyboardInterrupt as exc:
        _print_user_traceback(exc, origin)
        # Die of SIGINT, as python does, so the shell sees the right status.
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except (OSError, ValueError):
            pass
        return 130
    except BaseException as exc:
        _print_user_traceback(exc, origin)
        if seed is not None:
            print(f"treadle: this run used --seed {seed}", file=sys.stderr)
        return 1
    return 0


def _set_path_entry(directory: str) -> None:
    """``sys.path[0]`` as ``python SCRIPT`` / ``python -m MODULE`` sets it:
    the script's directory (symlinks resolved) or the working directory,
    in place of this command's own (the ``treadle`` script's directory);
    nothing under ``-P`` (``safe_path``)."""
    if getattr(sys.flags, "safe_path", False):
        return
    if sys.path:
        sys.path[0] = directory
    else:
        sys.path.insert(0, directory)


def _run_source_file(path: str) -> None:
    """Run the Python file at (absolute) *path* as ``__main__``, with the
    module attributes ``python path`` gives it: an absolute ``__file__``
    (3.9+), a ``SourceFileLoader`` as ``__loader__``, no ``__spec__``; the
    module stays ``sys.modules["__main__"]``, as the interpreter's own
    does (pickling and multiprocessing's spawn find it there)."""
    import builtins
    import types
    from importlib.machinery import SourceFileLoader

    loader = SourceFileLoader("__main__", path)
    code = compile(loader.get_data(path), path, "exec", dont_inherit=True)
    main = types.ModuleType("__main__")
    main.__dict__.update(__file__=path, __loader__=loader, __spec__=None,
                         __package__=None, __builtins__=builtins)
    sys.modules["__main__"] = main
    exec(code, main.__dict__)


def _print_user_traceback(exc: BaseException, origin: str | None) -> None:
    """Print *exc* as ``python SCRIPT`` would: the frames of runpy and of this
    module are dropped from the top of the traceback."""
    tb: TracebackType | None = exc.__traceback__
    here = os.path.abspath(__file__)
    skip_files = {here, os.path.abspath(runpy.__file__)}
    while tb is not None:
        raw = tb.tb_frame.f_code.co_filename
        filename = os.path.abspath(raw)
        if origin is not None and filename == origin:
            break
        if filename not in skip_files and not raw.startswith("<frozen"):
            break
        tb = tb.tb_next
    exc.__traceback__ = tb
    traceback.print_exception(type(exc), exc, tb)
    sys.stderr.flush()
