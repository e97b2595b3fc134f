"""``treadle top``: one frame as text, and the live screen in a real
terminal (tmux), read back from the terminal."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import uuid

import pytest

from ._util import SRC, Target, treadle

BUSY = """
    import asyncio, time

    async def spinner():
        while True:                      # wakes itself: sleep(0)
            await asyncio.sleep(0)
            time.sleep(0.0002)

    async def ticker():
        while True:
            await asyncio.sleep(0.01)

    async def hog():
        while True:
            await asyncio.sleep(0.3)
            time.sleep(0.15)             # blocks the loop past 100 ms

    async def lost():
        await asyncio.get_running_loop().create_future()

    async def main():
        tasks = [asyncio.create_task(spinner(), name="spinner"),
                 asyncio.create_task(ticker(), name="ticker"),
                 asyncio.create_task(hog(), name="hog"),
                 asyncio.create_task(lost(), name="lost")]
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main())
"""


def _rows(text: str) -> dict[str, str]:
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) > 2 and parts[0].startswith("0x"):
            rows[parts[1]] = line
    return rows


@pytest.mark.timeout(180)
def test_top_once(tmp_path):
    with Target(tmp_path, BUSY) as target:
        target.socket_ready()
        out = treadle("top", str(target.pid), "--once", "--interval", "1")
        assert out.returncode == 0, out.stderr
        text = out.stdout
        assert text.startswith(f"treadle top — pid {target.pid}")
        assert "turns/s" in text and "callbacks/turn" in text and "I/O wait" in text
        assert "timer lateness p50" in text and "per-task timing on" in text
        header = next(l for l in text.splitlines() if l.startswith("ID"))
        for column in ("STEPS", "BUSY", "SCHED", "IDLE", "WAKES", "SELF", "SPAWNED AT",
                       "WARNINGS"):
            assert column in header
        rows = _rows(text)
        assert {"spinner", "ticker", "hog", "lost"} <= set(rows)
        assert "self-wakes over 50%" in rows["spinner"]
        assert "self-wakes over 50%" not in rows["ticker"]
        assert "it can never wake" in rows["lost"]
        # (the hog's 150 ms step may fall in or out of the one-second window)
        again = treadle("top", str(target.pid), "--once", "--sort", "name")
        assert "NAME▼" in again.stdout


@pytest.mark.timeout(180)
def test_viewer_leaving_switches_tracking_off(tmp_path):
    import json
    with Target(tmp_path, BUSY) as target:
        target.socket_ready()
        treadle("top", str(target.pid), "--once", "--interval", "0.2")
        deadline = time.monotonic() + 30
        while True:
            doc = json.loads(treadle("ps", str(target.pid), "--json").stdout)
            if not doc["loops"][0]["stats"]["tracking"]:
                break
            assert time.monotonic() < deadline, "tracking stayed on"
            time.sleep(0.05)


def _tmux(*args: str, socket_name: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tmux", "-L", socket_name, *args], capture_output=True,
                          text=True, timeout=30)


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
@pytest.mark.timeout(180)          # (bounded waits for a loaded machine)
def test_top_in_a_real_terminal(tmp_path):
    """Start a program, run ``treadle top`` in a tmux pane, read the screen."""
    name = f"treadle-top-{uuid.uuid4().hex[:8]}"
    with Target(tmp_path, BUSY) as target:
        target.socket_ready()
        # (COLUMNS/LINES from the test's own environment would override
        # the pane's size for curses)
        command = (f"env -u COLUMNS -u LINES PYTHONPATH={SRC} {sys.executable} -m treadle "
                   f"top {target.pid}; "
                   f"echo TOP-EXITED $?; sleep 30")
        started = _tmux("new-session", "-d", "-x", "200", "-y", "40", "-s", "top",
                        command, socket_name=name)
        assert started.returncode == 0, started.stderr
        try:
            screen = ""
            deadline = time.monotonic() + 45
            while time.monotonic() < deadline:
                screen = _tmux("capture-pane", "-p", "-t", "top", socket_name=name).stdout
                rows = _rows(screen)
                if ("turns/s" in screen and "spinner" in rows
                        and "self-wakes over 50%" in rows["spinner"]
                        and "ms" in rows["spinner"]):
                    break
                time.sleep(0.2)
            assert f"treadle top — pid {target.pid}" in screen, screen
            assert "BUSY▼" in screen and "q quit" in screen, screen
            assert "self-wakes over 50%" in _rows(screen)["spinner"], screen
            # Change the sort column with the keyboard: busy -> scheduled.
            _tmux("send-keys", "-t", "top", "Right", socket_name=name)
            deadline = time.monotonic() + 30
            while "SCHED▼" not in screen and time.monotonic() < deadline:
                time.sleep(0.1)
                screen = _tmux("capture-pane", "-p", "-t", "top", socket_name=name).stdout
            assert "SCHED▼" in screen, screen
            _tmux("send-keys", "-t", "top", "q", socket_name=name)
            deadline = time.monotonic() + 30
            while "TOP-EXITED" not in screen and time.monotonic() < deadline:
                time.sleep(0.1)
                screen = _tmux("capture-pane", "-p", "-t", "top", socket_name=name).stdout
            assert "TOP-EXITED 0" in screen, screen
        finally:
            _tmux("kill-server", socket_name=name)
