"""Reaching a treadle process from the command line.

Owns: finding the socket of process *pid*, connecting, the request lines,
and turning every way that can fail into one ``ClientError`` whose message
says which: no such process, another user's process, a process that runs
no treadle loop, a process that exited while being read.
Never: raises anything else for those cases (the command prints the
message and exits with status 1, without a traceback).
"""

from __future__ import annotations

import json
import os
import socket
import time
from typing import Any, Iterator

from . import _config

#: How long to wait for a ``ps`` answer (a huge process takes a while).
TIMEOUT = 30.0


class ClientError(Exception):
    """Why a process could not be inspected (the message is the line to
    print)."""


def _process_uid(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except FileNotFoundError:
        raise ClientError(f"no process with PID {pid}") from None
    except OSError:
        pass
    # No /proc: ask the kernel whether it exists and may be signalled.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        raise ClientError(f"no process with PID {pid}") from None
    except PermissionError:
        raise ClientError(f"process {pid} belongs to another user; treadle can "
                          f"only inspect your own processes") from None
    return os.getuid()


def _alive(pid: int) -> bool:
    """True while *pid* runs (a zombie, dead but not yet reaped, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            state = f.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state not in (b"Z", b"X")


def _exited(pid: int, within: float = 1.0) -> bool:
    """Whether *pid* is gone, allowing it *within* seconds to finish dying
    (the connection closes a moment before the process is gone)."""
    deadline = time.monotonic() + within
    while _alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _environ(pid: int) -> dict[str, str]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            raw = f.read()
    except OSError:
        return {}
    env = {}
    for entry in raw.split(b"\0"):
        key, sep, value = entry.partition(b"=")
        if sep:
            env[key.decode(errors="replace")] = value.decode(errors="replace")
    return env


def socket_candidates(pid: int, uid: int) -> list[str]:
    """Where process *pid* may have put its socket: by its environment (as
    it started), by ours, and the default."""
    dirs = [_config.runtime_dir(uid, _environ(pid)), _config.runtime_dir(uid),
            _config.runtime_dir(uid, {})]
    seen: list[str] = []
    for d in dirs:
        path = os.path.join(d, f"{pid}.sock")
        if path not in seen:
            seen.append(path)
    return seen


def check_pid(text: str) -> int:
    try:
        pid = int(text)
    except ValueError:
        raise ClientError(f"{text!r} is not a process id") from None
    if pid <= 0:
        raise ClientError(f"{text!r} is not a process id")
    return pid


def connect(pid: int) -> socket.socket:
    uid = _process_uid(pid)
    if uid != os.getuid():
        raise ClientError(f"process {pid} belongs to another user (uid {uid}); "
                          f"treadle can only inspect your own processes")
    not_treadle = ClientError(f"process {pid} is not running a treadle event loop")
    for path in socket_candidates(pid, uid):
        if not os.path.exists(path):
            continue
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(TIMEOUT)
        try:
            sock.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            sock.close()
            continue
        except PermissionError:
            sock.close()
            raise ClientError(f"process {pid}: permission denied on {path}") from None
        except OSError as exc:
            sock.close()
            raise ClientError(f"process {pid}: cannot connect to {path}: "
                              f"{exc.strerror or exc}") from None
        return sock
    if not _alive(pid):
        raise ClientError(f"no process with PID {pid}")
    raise not_treadle


class Session:
    """A connection to one process: send requests, read JSON documents."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._sock = connect(pid)
        self._reader = self._sock.makefile("rb")

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, request: dict[str, Any]) -> None:
        try:
            self._sock.sendall(json.dumps(request).encode() + b"\n")
        except OSError:
            raise self._lost() from None

    def settimeout(self, seconds: float | None) -> None:
        self._sock.settimeout(seconds)

    def fileno(self) -> int:
        return self._sock.fileno()

    def read(self) -> dict[str, Any]:
        """The next document (ClientError if the process went away or
        refused)."""
        try:
            line = self._reader.readline()
        except socket.timeout:
            raise ClientError(f"process {self.pid} did not answer within "
                              f"{TIMEOUT:.0f} s") from None
        except OSError:
            raise self._lost() from None
        if not line.endswith(b"\n"):
            raise self._lost()
        try:
            doc = json.loads(line)
        except ValueError:
            raise self._lost() from None
        if not isinstance(doc, dict):
            raise self._lost()
        error = doc.get("error")
        if error:
            raise ClientError(f"process {self.pid}: {error}")
        return doc

    def documents(self) -> Iterator[dict[str, Any]]:
        while True:
            yield self.read()

    def _lost(self) -> ClientError:
        if _exited(self.pid):
            return ClientError(f"process {self.pid} exited while it was being read")
        return ClientError(f"process {self.pid} closed the connection (its last "
                           f"treadle loop was closed?)")


def request(pid: int, message: dict[str, Any]) -> dict[str, Any]:
    with Session(pid) as session:
        session.send(message)
        return session.read()
