"""Build script: compiles treadle's typed Python source with mypyc.

The same source runs uncompiled.  Set TREADLE_PURE=1 to install the
pure-Python build; it is also what you get, with a warning, when mypyc or a
C compiler is not available or compiling fails.  At run time, TREADLE_PURE=1
makes an installed compiled build import its Python source instead.
"""

import os
import re
import shutil
import sys

from setuptools import setup
from setuptools.command.build_ext import build_ext

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


def _pure_requested():
    return os.environ.get("TREADLE_PURE", "") not in ("", "0")


class OptionalBuildExt(build_ext):
    """Compile if we can; otherwise fall back to the pure-Python build."""

    def run(self):
        try:
            super().run()
        except Exception as exc:  # compiler missing or failing
            self._fall_back(exc)

    def build_extension(self, ext):
        try:
            super().build_extension(ext)
        except Exception as exc:
            self._fall_back(exc)
            raise _FellBack from exc

    def _fall_back(self, exc):
        if isinstance(exc, _FellBack):
            return
        print(f"treadle: compiling failed ({exc}); installing the pure-Python "
              f"build", file=sys.stderr)
        # Remove whatever was built, so no half-compiled package is installed.
        for ext in self.extensions:
            path = self.get_ext_fullpath(ext.name)
            if os.path.exists(path):
                os.remove(path)
        self.extensions = []
        if os.path.isdir(self.build_temp):
            shutil.rmtree(self.build_temp, ignore_errors=True)


class _FellBack(Exception):
    pass


def ext_modules():
    if _pure_requested():
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        print("treadle: mypyc is not available; installing the pure-Python build",
              file=sys.stderr)
        return []
    try:
        # Type errors anywhere in the import graph stop mypyc; an unused
        # "type: ignore" (an error under the project's strict settings,
        # which the test suite enforces) need not.
        extensions = mypycify(["--no-warn-unused-ignores", *COMPILED],
                              only_compile_paths=COMPILED,
                              opt_level="3", debug_level="0")
    except (Exception, SystemExit) as exc:  # mypyc refused the source
        print(f"treadle: mypyc failed ({exc}); installing the pure-Python build",
              file=sys.stderr)
        return []
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


setup(ext_modules=ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
