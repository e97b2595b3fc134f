"""``python -m treadle.bench.instructions``: which rows are counted per
task, and one real (tiny) count where valgrind is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from treadle.bench.instructions import DEFAULT_ROWS, is_task_row


def test_task_rows_are_the_task_sized_workloads():
    assert is_task_row("spawn") and is_task_row("timers")
    assert not any(is_task_row(row) for row in DEFAULT_ROWS)


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_spawn_counted_per_task():
    out = subprocess.run(
        [sys.executable, "-m", "treadle.bench.instructions", "--rows", "spawn",
         "--loops", "treadle", "--tasks", "200,1200", "--json"],
        capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    cell = json.loads(out.stdout.strip().splitlines()[-1])
    assert cell["error"] is None and cell["per"] == "task"
    # A task costs thousands of instructions on any loop, not millions.
    assert 1_000 < cell["instr_per_request"] < 1_000_000
