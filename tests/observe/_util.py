"""Helpers: run a treadle program in a child process and inspect it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import treadle

TREADLE = [sys.executable, "-m", "treadle"]
#: Where the treadle under test lives (the source tree, or the installed,
#: maybe compiled, package): child processes import the same one.
SRC = os.path.dirname(os.path.dirname(os.path.abspath(treadle.__file__)))


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


class Target:
    """A child process running *body* (a script) on treadle; it must print
    ``ready`` once its tasks are in place."""

    def __init__(self, tmp_path: Path, body: str, *, env: dict[str, str] | None = None,
                 prefix: list[str] | None = None) -> None:
        script = tmp_path / "target.py"
        script.write_text(textwrap.dedent(body))
        self.proc = subprocess.Popen(
            [*(prefix or []), sys.executable, "-m", "treadle", "run", str(script)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env or child_env(), cwd=str(tmp_path))
        self.pid = self.proc.pid
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if line.strip() != "ready":
            err = self.stop()
            raise AssertionError(f"target did not start: {line!r} {err}")

    def socket_ready(self, uid: int | None = None, timeout: float = 30.0) -> str:
        from treadle.observe._client import socket_candidates
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for path in socket_candidates(self.pid, os.getuid() if uid is None else uid):
                if os.path.exists(path):
                    return path
            time.sleep(0.02)
        raise AssertionError("the target's socket never appeared")

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            _, err = self.proc.communicate(timeout=10)
        except ValueError:
            err = ""
        return err or ""

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def treadle(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*TREADLE, *args], capture_output=True, text=True,
                          timeout=timeout, env=child_env())
