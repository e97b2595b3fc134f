"""mypy --strict on src/ (pyproject's [tool.mypy]): the compiler needs the
types to be right, and the project promises they are."""

from __future__ import annotations

import os
import re
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


#: Renames that must each fail type-checking: the kernel's side of the
#: contract (_kernel/contract.py) and the networking layer's own part
#: (NetLoop in _net/base.py).  Without the typed contract each would turn a
#: feature off at run time (a transport looking the hook up) and leave
#: mypy green.
_RENAMES = [
    ("src/treadle/_kernel/loop.py", "_call_at_batch_end", "_call_at_turn_end"),
    ("src/treadle/_kernel/loop.py", "def _add_writer(", "def _add_writer_fd("),
    ("src/treadle/_net/sockets.py", "_recv_view", "_read_view"),
]


def test_renaming_a_contract_hook_fails_type_checking(tmp_path):
    if not (ROOT / "src" / "treadle").is_dir():
        pytest.skip("source tree not available")
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.skip("mypy is not installed (it is in the test extra)")
    import shutil
    shutil.copytree(ROOT / "src", tmp_path / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    env = dict(os.environ, MYPY_CACHE_DIR=str(tmp_path / ".mypy_cache"))
    for module, old, new in _RENAMES:
        target = tmp_path / module
        text = target.read_text()
        assert old in text
        target.write_text(text.replace(old, new))
        out = subprocess.run([sys.executable, "-m", "mypy"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        target.write_text(text)
        assert out.returncode == 1, out.stdout + out.stderr
        name = old.removeprefix("def ").rstrip("(")
        assert re.search(rf"\b{name}\b", out.stdout), (name, out.stdout)
