"""Build script: compiles treadle's typed Python source with mypyc.

The same source runs uncompiled.  Set TREADLE_PURE=1 to install the
pure-Python build.  Without it, a failure to compile fails the install,
loudly: a pure build installed in its place would run slower without
saying so.  The one exception is a machine with no C compiler at all, which
gets the pure build with a warning.  At run time, TREADLE_PURE=1 makes an
installed compiled build import its Python source instead.
"""

import ast
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
    "src/treadle/_writeflow.py",
    "src/treadle/_net/core.py",
    "src/treadle/_net/sockio.py",
    "src/treadle/_net/_tlsstate.py",
]
# The transports users hold (_net/stream.py, datagram.py) stay interpreted:
# they subclass asyncio's transport classes, which a native class cannot
# do, and need weak references (servers keep their clients in a WeakSet),
# which mypyc gives no native class on 3.12+.  They forward to the compiled
# core in _net/core.py, as treadle.Task forwards to the compiled TaskCore.


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
    patched = 0
    weakref_types = _weakref_types()
    given = set()
    for ext in extensions:
        for source in ext.sources:
            patched += _patch_generated_c(source, weakref_types, given)
    if not patched:
        raise PatchError("no generated C file to patch was found")
    if given != set(weakref_types):
        raise PatchError(f"no type template found for "
                         f"{sorted(set(weakref_types) - given)}")
    return extensions


# The generated C is patched in two places (below).  Both depend on the
# shape of mypyc's output, so each checks that it applied, and the install
# fails (PatchError) when a new mypyc changes that shape, instead of
# silently producing a build without the patch.


class PatchError(CompileFailed):
    """mypyc's generated C no longer has the shape setup.py patches."""

    def __init__(self, what):
        super().__init__(f"setup.py cannot patch mypyc's output: {what}")


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
_NATIVE_INCLUDE = '#include "__native_internal'

# mypyc's dealloc never clears weak references, so a compiled object with a
# weak reference slot (a native class with a Python base: KernelLoop, whose
# base is asyncio.AbstractEventLoop, gets one on 3.11) would leave them
# dangling when freed.  They are cleared where CPython's own dealloc does,
# for the types that have the slot (the call is an error on the others).
_TRASHCAN = re.compile(r"(\n[ \t]*)CPy_TRASHCAN_BEGIN\(self, (\w+)_dealloc\)")
#: The dealloc the patch exists for; it must be among the patched ones.
_NEEDS_WEAKREF_CLEARING = "loop___KernelLoop_dealloc"


def _clear_weakrefs_on_dealloc(text, path):
    patched = []

    def patch(m):
        patched.append(m.group(2) + "_dealloc")
        return (m.group(1) + "if (Py_TYPE(self)->tp_weaklistoffset != 0) "
                "PyObject_ClearWeakRefs((PyObject *)self);" + m.group(0))

    text = _TRASHCAN.sub(patch, text)
    if (f"{_NEEDS_WEAKREF_CLEARING}(" in text
            and _NEEDS_WEAKREF_CLEARING not in patched):
        raise PatchError(f"{path}: the weak-reference patch did not reach "
                         f"{_NEEDS_WEAKREF_CLEARING} ({len(patched)} deallocs patched)")
    return text


# mypyc gives a native class no weak reference slot (it ignores
# ``__weakref__`` in ``__slots__``), while asyncio's objects of the same
# role take weak references (``weakref.ref(loop.call_soon(f))``) and the
# pure build's do.  Each compiled class that declares the slot, and each
# compiled subclass of one, gets it: one pointer after the type's own
# struct (zeroed by tp_alloc, cleared by the dealloc patch above).  Every
# class in the line gets its own, at its own struct's end: an inherited
# offset would point into the subclass's fields.


def _weakref_types():
    """mypyc's names (``<module>___<Class>``) of the compiled classes that
    declare ``__weakref__`` in ``__slots__``, and of their compiled
    subclasses."""
    classes = {}
    for path in COMPILED:
        module = os.path.splitext(os.path.basename(path))[0]
        with open(path) as f:
            tree = ast.parse(f.read())
        for node in tree.body:
            if not isinstance(node, ast.ClassDef):
                continue
            declares = False
            for stmt in node.body:
                if (isinstance(stmt, ast.Assign)
                        and any(isinstance(t, ast.Name) and t.id == "__slots__"
                                for t in stmt.targets)):
                    declares = "__weakref__" in ast.literal_eval(stmt.value)
            bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", None)
                     for b in node.bases}
            classes[node.name] = (module, bases, declares)
    wanted = {name for name, (_, _, declares) in classes.items() if declares}
    grew = True
    while grew:
        grew = False
        for name, (_, bases, _) in classes.items():
            if name not in wanted and bases & wanted:
                wanted.add(name)
                grew = True
    return sorted(f"{classes[name][0]}___{name}" for name in wanted)


def _give_weakref_slots(text, path, weakref_types, given):
    for name in weakref_types:
        template = f"CPyType_{name}_template_ = {{"
        if template not in text:
            continue
        pattern = re.compile(re.escape(template)
                             + r"([^}]*?\.tp_basicsize = )sizeof\((\w+)\),")
        m = pattern.search(text)
        if m is None or "tp_weaklistoffset" in m.group(1):
            raise PatchError(f"{path}: the template of {name} has no plain "
                             f"tp_basicsize to extend by a weak reference slot")
        struct = m.group(2)
        text = (text[:m.start()] + template + m.group(1)
                + f"sizeof({struct}) + sizeof(PyObject *),"
                + f" .tp_weaklistoffset = sizeof({struct}),"
                + text[m.end():])
        given.add(name)
    return text


def _patch_generated_c(path, weakref_types, given):
    """Patch one generated C file; 1 if it was mypyc's module code, else 0."""
    name = os.path.basename(path)
    if not (name.startswith("__native") and name.endswith(".c")):
        return 0
    with open(path) as f:
        text = f.read()
    if "treadle (setup.py)" in text:            # (a build directory reused)
        given.update(name for name in weakref_types
                     if f"CPyType_{name}_template_" in text)
        return 1
    at = text.find(_NATIVE_INCLUDE)
    if at < 0:
        raise PatchError(f"{path}: no {_NATIVE_INCLUDE!r} line to put the "
                         "traceback patch after")
    end = text.index("\n", at) + 1
    text = _clear_weakrefs_on_dealloc(text[:end] + _NO_TB + text[end:], path)
    text = _give_weakref_slots(text, path, weakref_types, given)
    with open(path, "w") as f:
        f.write(text)
    return 1


setup(ext_modules=ext_modules(), cmdclass={"build_ext": CheckedBuildExt})
