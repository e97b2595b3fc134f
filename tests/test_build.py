"""The build: compiled or pure, and the TREADLE_PURE switch."""

from __future__ import annotations

import ast
import json
import os
import pathlib
import subprocess
import sys

import pytest

import treadle


def test_expected_build():
    """CI says which build it installed; a compiled build that silently fell
    back to pure Python must fail here."""
    expected = os.environ.get("TREADLE_EXPECT_COMPILED")
    if expected is None:
        pytest.skip("TREADLE_EXPECT_COMPILED not set")
    want = expected == "1" and os.environ.get("TREADLE_PURE", "") in ("", "0")
    assert treadle.__compiled__ is want


def test_pure_switch_imports_source():
    code = ("import treadle, treadle._kernel.loop as l, treadle._kernel.task as t; "
            "print(treadle.__compiled__, l.__file__.endswith('.py'), t.__file__.endswith('.py'))")
    env = dict(os.environ, TREADLE_PURE="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "True", "True"]


def test_version_reports_build():
    out = subprocess.run([sys.executable, "-m", "treadle", "--version"],
                         capture_output=True, text=True, timeout=60)
    assert ("(compiled)" in out.stdout) is treadle.__compiled__
    assert ("(pure Python)" in out.stdout) is (not treadle.__compiled__)


# -- what the compiled modules' functions read at module level ---------------

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _compiled_sources() -> list[pathlib.Path]:
    """setup.py's list of the modules mypyc compiles."""
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if (isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name)
                and node.targets[0].id == "COMPILED"):
            return [ROOT / s for s in ast.literal_eval(node.value)]
    raise AssertionError("no COMPILED list in setup.py")


def _is_final(annotation: ast.expr) -> bool:
    if isinstance(annotation, ast.Subscript):
        annotation = annotation.value
    return isinstance(annotation, ast.Name) and annotation.id == "Final"


def _plain_globals_read_by_functions(source: str) -> set[str]:
    """Names assigned at module level without ``Final`` that a function
    body reads (annotations aside: they are never evaluated)."""
    tree = ast.parse(source)
    plain: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign):
            plain.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
              and node.value is not None and not _is_final(node.annotation)):
            plain.add(node.target.id)
    in_annotations: set[int] = set()
    for node in ast.walk(tree):
        annotations: list[ast.expr | None] = []
        if isinstance(node, ast.arg):
            annotations.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for annotation in annotations:
            if annotation is not None:
                in_annotations.update(id(n) for n in ast.walk(annotation))
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            read.update(n.id for n in ast.walk(node)
                        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
                        and n.id in plain and id(n) not in in_annotations)
    return read


def test_compiled_functions_read_only_final_module_names():
    """mypyc looks a plain module-level name up in the module's dict at every
    use, and keeps a Final one in a C static (or inlines the constant): on
    a hot path the difference is measurable (callgrind).  So every name a
    compiled module assigns at module level and reads in a function is
    Final."""
    sources = _compiled_sources()
    assert len(sources) >= 5, sources
    wrong = {p.name: sorted(_plain_globals_read_by_functions(p.read_text()))
             for p in sources}
    assert not {k: v for k, v in wrong.items() if v}


def test_the_scan_sees_a_plain_module_name():
    source = ("from typing import Final\n"
              "LIMIT = 64\nSTEP: Final = 1\nAlias = int\n"
              "def f(x: Alias) -> Alias:\n    return x + LIMIT + STEP\n")
    assert _plain_globals_read_by_functions(source) == {"LIMIT"}


def _slots_against_annotations(source: str) -> dict[str, tuple[list[str], list[str]]]:
    """For each class with ``__slots__``: (slots without an attribute
    annotation, annotated attributes without a slot), where they differ."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.ClassDef):
            continue
        slots: set[str] | None = None
        annotated: set[str] = set()
        for stmt in node.body:
            if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name)
                    and stmt.targets[0].id == "__slots__"):
                slots = set(ast.literal_eval(stmt.value)) - {"__weakref__"}
            elif (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)
                  and stmt.value is None):
                annotated.add(stmt.target.id)
        if slots is not None and slots != annotated:
            out[node.name] = (sorted(slots - annotated), sorted(annotated - slots))
    return out


def test_compiled_classes_slots_match_their_attribute_annotations():
    """A compiled class's attributes are written twice: as annotations (what
    mypyc lays out in the C struct) and as ``__slots__`` (what gives the
    interpreted build the same shape, ``test_compiled_classes_take_...``
    below).  A slot left out fails the pure suite; an extra one, or an
    annotation without a slot, would fail nothing: this does."""
    wrong = {p.name: _slots_against_annotations(p.read_text())
             for p in _compiled_sources()}
    assert not {k: v for k, v in wrong.items() if v}


def test_the_slot_scan_sees_both_directions():
    source = ("class A:\n    __slots__ = ('a', 'b', '__weakref__')\n    a: int\n"
              "    c: int\n    K: int = 1\n"
              "class B:\n    __slots__ = ('x',)\n    x: int\n")
    assert _slots_against_annotations(source) == {"A": (["b"], ["c"])}


# -- the two builds make objects of the same shape ----------------------------

_SHAPE = """
import importlib, inspect, json, sys
shapes = {}
for name in sys.argv[1:]:
    module = importlib.import_module(name)
    for attr, cls in vars(module).items():
        if inspect.isclass(cls) and cls.__module__ == name:
            shapes[f"{name}.{attr}"] = [cls.__weakrefoffset__ != 0,
                                         cls.__dictoffset__ != 0]
print(json.dumps(shapes))
"""


def _compiled_module_names() -> list[str]:
    return [".".join(p.relative_to(ROOT / "src").with_suffix("").parts)
            for p in _compiled_sources()]


def _shapes(pure: bool) -> dict[str, list[bool]]:
    env = dict(os.environ, TREADLE_PURE="1" if pure else "")
    out = subprocess.run([sys.executable, "-c", _SHAPE, *_compiled_module_names()],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_compiled_classes_take_weak_references_and_attributes_as_interpreted():
    """A class of the compiled modules takes weak references (and arbitrary
    attributes) in the compiled build exactly when it does interpreted: a
    program cannot tell the builds apart that way.  (mypyc ignores
    ``__weakref__`` in ``__slots__``; setup.py adds the slot.  Classes
    without ``__slots__`` would have both only interpreted.)"""
    if not treadle.__compiled__:
        pytest.skip("the compiled build is not installed")
    compiled, pure = _shapes(False), _shapes(True)
    assert set(compiled) == set(pure)
    assert {k: v for k, v in compiled.items() if pure[k] != v} == {}
    assert compiled["treadle._kernel.handles.Handle"] == [True, False]
