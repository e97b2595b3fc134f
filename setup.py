"""Build script: compiles treadle's typed Python source with mypyc.

The same source runs uncompiled.  Set TREADLE_PURE=1 to install the
pure-Python build.  Without it, a failure to compile fails the install,
loudly: a pure build installed in its place would run slower without
saying so.  The one exception is a machine with no C compiler at all, which
gets the pure build with a warning.  At run time, TREADLE_PURE=1 makes an
installed compiled build import its Python source instead.
"""

import os
import re
import shlex
import shutil
import sys
import sysconfig

from setuptools import setup
from setuptools.command.build_ext import build_ext

def _pure_requested():
    return os.environ.get("TREADLE_PURE", "") not in ("", "0")


# Modules compiled to native code: the hot paths.  Everything else stays
# Python (slow paths, the CLI, the pytest plugin, ...).
COMPILED = [
    "src/treadle/_kernel/handles.py",
    "src/treadle/_kernel/timers.py",
    "src/treadle/_kernel/task.py",
    "src/treadle/_kernel/loop.py",
    "src/treadle/_io/epoll.py",
    "src/treadle/_net/_tlsstate.py",
    "src/treadle/_proc/flow.py",
]
# Not compiled: the transports.  They subclass asyncio's transport classes,
# and a native class with a Python base gets no weak-reference slot from
# mypyc on Python 3.12+ (servers keep their clients in a WeakSet, as
# asyncio's do).  Measured, compiling them gained 5-10% on the echo
# benchmarks; correctness on every version comes first.


class CompileFailed(SystemExit):
    """Compiling failed: stop the install with a message that says why
    and how to install the pure-Python build on purpose."""

    def __init__(self, what):
        super().__init__(
            f"\ntreadle: {what}\n"
            f"treadle: the compiled build could not be made, so nothing was "
            f"installed.\n"
            f"treadle: to install the (slower) pure-Python build instead, set "
            f"TREADLE_PURE=1.\n")


def _have_c_compiler():
    cc = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    words = shlex.split(cc)
    return bool(words) and shutil.which(words[0]) is not None


class CheckedBuildExt(build_ext):
    """build_ext that turns any compile error into CompileFailed."""

    def run(self):
        try:
            super().run()
        except CompileFailed:
            raise
        except Exception as exc:
            raise CompileFailed(f"compiling the C extension failed: {exc}") from exc


def ext_modules():
    if _pure_requested():
        return []
    if not _have_c_compiler():
        print("treadle: WARNING: no C compiler found; installing the pure-Python "
              "build (slower).  Install a C compiler and reinstall to get the "
              "compiled build.", file=sys.stderr)
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        raise CompileFailed(f"mypyc is not available ({exc}); it comes with the "
                            f"mypy version pinned in pyproject.toml") from exc
    try:
        # Type errors anywhere in the import graph stop mypyc; an unused
        # "type: ignore" (an error under the project's strict settings,
        # which the test suite enforces) need not.
        extensions = mypycify(["--no-warn-unused-ignores", *COMPILED],
                              only_compile_paths=COMPILED,
                              opt_level="3", debug_level="0")
    except (Exception, SystemExit) as exc:  # mypyc refused the source
        raise CompileFailed(f"mypyc failed on this Python "
                            f"({sys.version.split()[0]}): {exc!r}") from exc
    for ext in extensions:
        for source in ext.sources:
            _no_traceback_entries(source)
    return extensions


# mypyc records a traceback entry (a new code object and frame) for every
# exception that passes through compiled code, even one caught a line later.
# The kernel catches exceptions as control flow on its hottest paths
# (StopIteration each time a task finishes, BlockingIOError on every drained
# socket), where that bookkeeping cost more than the rest of the step.
# Compiled treadle frames therefore leave no traceback entries, as C
# extensions leave none; exceptions keep every frame of the code that
# raised them.
_NO_TB = ("\n/* treadle (setup.py): no traceback entries for compiled frames */\n"
          "#undef CPy_AddTraceback\n"
          "#define CPy_AddTraceback(filename, funcname, line, globals) ((void)0)\n")


_CLEAR_WEAKREFS = re.compile(
    r"PyObject_GC_UnTrack\(self\);(\s*)CPy_TRASHCAN_BEGIN\(self, (\w+)_dealloc\)")


def _clear_weakrefs_on_dealloc(text):
    """mypyc's dealloc never clears weak references, so a compiled object
    with a weakref slot (any native class with a Python base, such as a
    transport subclassing asyncio.Transport) would leave them dangling when
    freed.  Clear them where CPython's own dealloc does, for the types that
    have a weak reference slot (the call is an error on the others)."""
    return _CLEAR_WEAKREFS.sub(
        lambda m: ("PyObject_GC_UnTrack(self);" + m.group(1)
                   + "if (Py_TYPE(self)->tp_weaklistoffset != 0) "
                   "PyObject_ClearWeakRefs((PyObject *)self);" + m.group(1)
                   + f"CPy_TRASHCAN_BEGIN(self, {m.group(2)}_dealloc)"),
        text)


def _no_traceback_entries(path):
    name = os.path.basename(path)
    if not (name.startswith("__native") and name.endswith(".c")):
        return
    with open(path) as f:
        text = f.read()
    if "treadle (setup.py)" in text:
        return
    marker = '#include "__native_internal'
    at = text.find(marker)
    if at < 0:
        return
    end = text.index("\n", at) + 1
    with open(path, "w") as f:
        f.write(_clear_weakrefs_on_dealloc(text[:end] + _NO_TB + text[end:]))


setup(ext_modules=ext_modules(), cmdclass={"build_ext": CheckedBuildExt})
