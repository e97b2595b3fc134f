"""mypy --strict on src/ (pyproject's [tool.mypy]): the compiler needs the
types to be right, and the project promises they are."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_strict_on_src():
    if not (ROOT / "src" / "treadle").is_dir():
        pytest.skip("source tree not available")
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.skip("mypy is not installed (it is in the test extra)")
    env = dict(os.environ, MYPY_CACHE_DIR=str(ROOT / ".mypy_cache"))
    out = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
