"""The build: compiled or pure, and the TREADLE_PURE switch."""

from __future__ import annotations

import os
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
