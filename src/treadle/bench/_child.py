"""One benchmark run in a fresh process: ``python -m treadle.bench._child SPEC``.

Owns: resolving the loop factory, running one workload once, and reporting
the outcome as one ``RESULT_MARK`` line of JSON on stdout (success, "n/a",
or failure with a one-line description of the error).
Never: lets an error escape as a bare traceback only.  The parent must be
able to tell "this loop cannot do this yet" from a crash, and carry on.

A fresh process per run means no run inherits another's heap, JIT-less
warm caches or leftover tasks, and a loop that crashes or hangs costs only
its own run.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import sys
import traceback
from typing import Any, Callable

from ._measure import peak_rss, steady_allocator

RESULT_MARK = "TREADLE-BENCH-RESULT "

def resolve(factory: str) -> Callable[[], Any]:
    """``"module:attr.attr"`` -> the object it names."""
    mod, _, attr = factory.partition(":")
    obj: Any = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{factory} is not callable")
    result: Callable[[], Any] = obj
    return result


def describe_error(exc: BaseException) -> str:
    """One line: the exception and where it was raised (innermost frame),
    so that an empty ``NotImplementedError()`` still says what is missing."""
    text = str(exc).strip().splitlines()
    head = f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        f = frames[-1]
        where = f"{os.path.basename(os.path.dirname(f.filename))}/{os.path.basename(f.filename)}"
        head += f" (in {f.name}() at {where}:{f.lineno})"
    return head


def _treadle_info() -> dict[str, Any]:
    try:
        import treadle
    except Exception as exc:  # a broken treadle must not hide other loops' results
        return {"treadle_compiled": None, "treadle_version": None,
                "treadle_import_error": describe_error(exc)}
    return {"treadle_compiled": bool(treadle.__compiled__),
            "treadle_version": treadle.__version__}


def run(spec: dict[str, Any]) -> dict[str, Any]:
    from ._workloads import BY_NAME, NotApplicable, entry_point

    rec: dict[str, Any] = {"python": platform.python_version(),
                           "implementation": sys.implementation.name,
                           **_treadle_info()}
    classes: list[str] = []
    steady_allocator()
    try:
        factory = resolve(str(spec["factory"]))

        def tracked() -> Any:
            loop = factory()
            classes.append(f"{type(loop).__module__}.{type(loop).__qualname__}")
            return loop

        workload = BY_NAME[str(spec["workload"])]
        out = entry_point(workload)(tracked, dict(spec["params"]))
        rec.update(out)
        rec["status"] = "ok" if out.get("value") is not None else "failed"
        if out.get("value") is None:
            rec["error"] = "the workload measured nothing (zero time)"
    except NotApplicable as exc:
        rec["status"] = "n/a"
        rec["error"] = str(exc)
    except BaseException as exc:  # reported, never raised: see the header
        traceback.print_exc()
        rec["status"] = "failed"
        rec["error"] = describe_error(exc)
    rec["loop_class"] = classes[0] if classes else None
    rec["process_peak_rss_mib"] = round(peak_rss() / 2**20, 1)
    return rec


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m treadle.bench._child SPEC_JSON", file=sys.stderr)
        return 2
    rec = run(json.loads(argv[0]))
    sys.stdout.write(RESULT_MARK + json.dumps(rec) + "\n")
    sys.stdout.flush()
    return 0 if rec["status"] != "failed" else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
