"""The determinism check: run a scenario twice, compare the event logs.

Owns: ``check_determinism`` (madsim's check: the same seed must give the
same run, event for event) and ``NondeterminismError``, which names the
first event where two runs differ and shows both.
Never: decides what a run is; a run is ``SimNetwork(seed, ...).run(scenario)``.

Within one process the two runs share everything but their own objects, so
a difference means the scenario reached a source of nondeterminism the
simulation does not close (real I/O, a thread whose result depends on
timing, iteration over a set of objects, ...).  ``processes=True`` runs the
scenario in two child processes with different ``PYTHONHASHSEED``s as well:
the same seed must give the same log there too (a difference there is
usually iteration over a set of strings).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any, Callable

from ._events import first_difference, format_event


class NondeterminismError(AssertionError):
    """Two runs of the same scenario with the same seed differed."""


def _run_once(scenario: Callable[..., Any], seed: int,
              options: dict[str, Any]) -> list[tuple[int, float, str, str]]:
    from ._network import SimNetwork
    net = SimNetwork(seed, keep_events=True, log_steps=True, **options)
    try:
        net.run(scenario)
    except BaseException as exc:    # a failing scenario must fail the same way
        net.log_event("", f"scenario raised {type(exc).__name__}: {exc}")
    return net.log.events()


def check_determinism(scenario: Callable[..., Any], seed: int = 0, *, runs: int = 2,
                      processes: bool = False, **options: Any) -> int:
    """Run ``async def scenario(net)`` *runs* times under *seed* (with
    *options* for ``SimNetwork``) and compare the event logs (task steps
    included).  Returns the number of events of a run; raises
    ``NondeterminismError`` naming the first event that differed.

    *processes*: also run it in two fresh interpreters with different hash
    seeds (the scenario must be a module-level function)."""
    if runs < 2:
        raise ValueError("a determinism check needs at least 2 runs")
    first = _run_once(scenario, seed, options)
    for i in range(1, runs):
        other = _run_once(scenario, seed, options)
        _compare(first, other, "run 1", f"run {i + 1}")
    if processes:
        logs = [_run_in_process(scenario, seed, options, hash_seed)
                for hash_seed in ("1", "2")]
        _compare(logs[0], logs[1], "process with PYTHONHASHSEED=1",
                 "process with PYTHONHASHSEED=2")
        _compare(first, logs[0], "this process", "process with PYTHONHASHSEED=1")
    return len(first)


def _compare(a: list[tuple[int, float, str, str]], b: list[tuple[int, float, str, str]],
             name_a: str, name_b: str) -> None:
    at = first_difference(a, b)
    if at is None:
        return
    before = a[max(0, at - 5):at]
    lines = [f"the same seed gave two different runs: {name_a} and {name_b} differ "
             f"at event #{at}", "events before it (identical):"]
    lines += ["  " + format_event(e) for e in before] or ["  (none)"]
    lines.append(f"{name_a}:")
    lines.append("  " + (format_event(a[at]) if at < len(a) else "(the run ended)"))
    lines.append(f"{name_b}:")
    lines.append("  " + (format_event(b[at]) if at < len(b) else "(the run ended)"))
    raise NondeterminismError("\n".join(lines))


def _run_in_process(scenario: Callable[..., Any], seed: int, options: dict[str, Any],
                    hash_seed: str) -> list[tuple[int, float, str, str]]:
    module = getattr(scenario, "__module__", None)
    qualname = getattr(scenario, "__qualname__", "")
    if not module or "<" in qualname:
        raise ValueError("check_determinism(processes=True) needs a module-level "
                         "scenario function (it is imported in a fresh interpreter)")
    if module == "__main__":
        path = getattr(sys.modules["__main__"], "__file__", None)
        if path is None:
            raise ValueError("a scenario defined in an interactive session cannot be "
                             "run in another process")
        module = os.path.splitext(os.path.basename(path))[0]
        extra_path = os.path.dirname(os.path.abspath(path))
    else:
        extra_path = None
    code = (
        "import importlib, json, sys\n"
        "from treadle.testing.simnet._check import _run_once\n"
        f"mod = importlib.import_module({module!r})\n"
        "obj = mod\n"
        f"for part in {qualname!r}.split('.'):\n"
        "    obj = getattr(obj, part)\n"
        f"events = _run_once(obj, {seed!r}, json.loads(sys.argv[1]))\n"
        "json.dump(events, sys.stdout)\n")
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    paths = [p for p in sys.path if p]
    if extra_path:
        paths.insert(0, extra_path)
    env["PYTHONPATH"] = os.pathsep.join(paths)
    try:
        encoded = json.dumps(options)
    except TypeError:
        raise ValueError("check_determinism(processes=True) needs options that "
                         "JSON can carry") from None
    done = subprocess.run([sys.executable, "-c", code, encoded], env=env,
                          capture_output=True, text=True, timeout=600)
    if done.returncode:
        raise RuntimeError(f"the scenario failed to run in a child process:\n{done.stderr}")
    return [(int(e[0]), float(e[1]), str(e[2]), str(e[3])) for e in json.loads(done.stdout)]
