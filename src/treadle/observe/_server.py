"""The ``treadle ps``/``pstree``/``top`` server: a Unix socket served from
a thread of the process itself.

Owns: the socket ``<runtime dir>/<pid>.sock`` (the directory is created
mode 0700, and refused if it is not a directory of ours that only we can
open), its thread, one thread per connected client, and the request
protocol: the client sends one JSON line (``{"cmd": "ps"}`` or
``{"cmd": "top", "interval": 1.0, "sort": "busy", "limit": 200}``), the
server answers with JSON lines (one for ``ps``; one per interval for
``top``, until the client hangs up; a ``top`` client may send new lines to
change the sort).

Never: answers a peer of another user (``SO_PEERCRED`` is checked on every
connection, beside the directory's mode), leaves the socket behind on a
clean exit, or lets a socket left by a crash stop the next run (a socket
with our pid in its name is ours to replace).  Nothing here runs on the
loop's thread: the answers are read from the loops as they are
(``_snapshot.py``), which is what makes them work while a loop is stuck.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import select
import socket
import stat
import struct
import threading
import time
from typing import Any

from ._threads import HiddenThread
from . import _config

logger = logging.getLogger("treadle.observe")

#: The longest request line accepted.
MAX_REQUEST = 64 * 1024


def private_dir(path: str) -> str | None:
    """Make sure *path* is a directory only we can open; None if it is, or
    the reason it cannot be used."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError:
        pass
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot create {path}: {exc.strerror}"
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot use {path}: {exc.strerror}"
    if not stat.S_ISDIR(st.st_mode):
        return f"{path} is not a directory"
    if st.st_uid != os.getuid():
        return f"{path} belongs to uid {st.st_uid}, not to us"
    if st.st_mode & 0o077:
        return f"{path} can be opened by other users (mode {st.st_mode & 0o777:o})"
    return None


def peer_uid(conn: socket.socket) -> int | None:
    """The uid of the process at the other end of a Unix socket (None when
    the platform cannot say)."""
    so_peercred = getattr(socket, "SO_PEERCRED", None)
    if so_peercred is not None:
        raw = conn.getsockopt(socket.SOL_SOCKET, so_peercred, struct.calcsize("3i"))
        _pid, uid, _gid = struct.unpack("3i", raw)
        return int(uid)
    local_peercred = getattr(socket, "LOCAL_PEERCRED", None)
    if local_peercred is not None:           # BSDs, macOS: struct xucred
        raw = conn.getsockopt(0, local_peercred, struct.calcsize("IIh16I"))
        return int(struct.unpack_from("II", raw)[1])
    return None


def refusal(peer: int | None, own: int) -> str | None:
    """Why a peer with uid *peer* may not talk to a process of uid *own*
    (None: it may).  Only the same user may; root is no exception: it can
    read the process by other means, and this socket is no debugger."""
    if peer is None:
        return None          # no credentials here: the 0700 directory decides
    if peer != own:
        return f"refused: uid {peer} is not the owner of this process (uid {own})"
    return None


class Server:
    def __init__(self, observer: Any) -> None:
        self._observer = observer
        self._path: str | None = None
        #: Set once the thread has bound the socket, or given up.
        self._ready = threading.Event()
        self._inode: int | None = None
        self._listener: socket.socket | None = None
        self._wake_r = self._wake_w = -1
        self._thread: HiddenThread | None = None
        self._clients: dict[int, tuple[socket.socket, HiddenThread]] = {}
        self._lock = threading.Lock()
        self._stopping = False

    def start(self) -> bool:
        """Bind the socket, then start the thread that serves it.  The
        observer calls this when the first loop is made, on the thread that
        makes it: no loop runs there yet, so tools that flag blocking calls
        on a running loop's thread (blockbuster) have nothing to flag, and
        the socket exists before any of the loop's code runs (programs and
        tests count descriptors around what they do)."""
        bound = self._bind()
        self._ready.set()
        if not bound:
            return False
        self._wake_r, self._wake_w = os.pipe()
        self._thread = HiddenThread(self._main, "treadle-observe-server")
        self._thread.start()
        return True

    @property
    def path(self) -> str | None:
        """The socket's path once the thread has bound it (None if it could
        not); waits a little for the thread to get there."""
        self._ready.wait(5.0)
        return self._path

    def _bind(self) -> bool:
        directory = _config.runtime_dir(os.getuid())
        problem = private_dir(directory)
        if problem is not None:
            logger.warning("treadle ps/top: not serving: %s", problem)
            return False
        path = os.path.join(directory, f"{os.getpid()}.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            try:
                listener.bind(path)
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE:
                    raise
                # Left by a process that had our pid and died: ours now.
                os.unlink(path)
                listener.bind(path)
            os.chmod(path, 0o600)
            listener.listen(16)
            self._inode = os.stat(path).st_ino
        except OSError as exc:
            listener.close()
            logger.warning("treadle ps/top: not serving on %s: %s", path, exc)
            return False
        if directory not in _swept:
            # Once per process and directory: a loop per test must not
            # list the directory per test.
            _swept.add(directory)
            _sweep(directory, path)
        self._path = path
        self._listener = listener
        return True

    def _main(self) -> None:
        try:
            self._serve()
        finally:
            self._remove_socket()

    def stop(self) -> None:
        self._stopping = True
        if self._wake_w >= 0:
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
        thread = self._thread
        if thread is not None and not thread.is_current():
            thread.join()
            self._thread = None
        with self._lock:
            clients = list(self._clients.values())
        for conn, _ in clients:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, client in clients:
            if not client.is_current():
                client.join()
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def forget(self) -> None:
        """After fork(), in the child: let go of the parent's socket without
        removing it."""
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._wake_r = self._wake_w = -1
        for conn, _ in list(self._clients.values()):
            try:
                conn.close()
            except OSError:
                pass
        self._clients.clear()

    def _remove_socket(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        path = self._path
        if path is not None:
            try:
                if os.stat(path).st_ino == self._inode:
                    os.unlink(path)
            except OSError:
                pass

    # -- the thread ------------------------------------------------------------------

    def _serve(self) -> None:
        listener = self._listener
        assert listener is not None
        poller = select.poll()
        poller.register(listener.fileno(), select.POLLIN)
        poller.register(self._wake_r, select.POLLIN)
        while not self._stopping:
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            if any(fd == self._wake_r for fd, _ in events):
                return
            try:
                conn, _ = listener.accept()
            except OSError:
                continue
            client = HiddenThread(functools.partial(self._client, conn),
                                  "treadle-observe-client")
            with self._lock:
                self._clients[id(conn)] = (conn, client)
            client.start()

    def _client(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(10.0)
            problem = refusal(peer_uid(conn), os.getuid())
            if problem is not None:
                _send(conn, {"error": problem})
                return
            reader = conn.makefile("rb")
            try:
                line = reader.readline(MAX_REQUEST)
                request = json.loads(line) if line.strip() else {}
                if not isinstance(request, dict):
                    raise ValueError("a request is a JSON object")
                cmd = request.get("cmd")
                # (imported here: a process that is never inspected never
                # pays for the reporting code)
                from ._report import ps_document
                if cmd == "ps":
                    _send(conn, ps_document(self._observer.open_loops()))
                elif cmd == "top":
                    self._top(conn, reader, request)
                else:
                    _send(conn, {"error": f"unknown request {cmd!r}"})
            finally:
                reader.close()
        except (OSError, ValueError):
            pass
        except Exception:
            logger.exception("treadle ps/top: a request failed")
        finally:
            with self._lock:
                self._clients.pop(id(conn), None)
            try:
                conn.close()
            except OSError:
                pass

    def _top(self, conn: socket.socket, reader: Any, request: dict[str, Any]) -> None:
        from ._report import top_document
        self._observer.viewer_attached()
        try:
            settings = _TopSettings(request)
            poller = select.poll()
            poller.register(conn.fileno(), select.POLLIN)
            while not self._stopping:
                _send(conn, top_document(self._observer.open_loops(), settings.sort,
                                         settings.reverse, settings.limit))
                deadline = time.monotonic() + settings.interval
                while not self._stopping:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    if not poller.poll(int(left * 1000) + 1):
                        continue
                    line = reader.readline(MAX_REQUEST)
                    if not line:
                        return                      # the viewer left
                    try:
                        update = json.loads(line)
                    except ValueError:
                        continue
                    if isinstance(update, dict):
                        settings.update(update)
                        break                       # answer the new sort now
        finally:
            self._observer.viewer_detached()


class _TopSettings:
    def __init__(self, request: dict[str, Any]) -> None:
        self.interval = 1.0
        self.sort = "busy"
        self.reverse = False
        self.limit = 200
        self.update(request)

    def update(self, request: dict[str, Any]) -> None:
        interval = request.get("interval")
        if isinstance(interval, (int, float)) and not isinstance(interval, bool):
            self.interval = min(60.0, max(0.1, float(interval)))
        sort = request.get("sort")
        if isinstance(sort, str):
            self.sort = sort
        reverse = request.get("reverse")
        if isinstance(reverse, bool):
            self.reverse = reverse
        limit = request.get("limit")
        if isinstance(limit, int) and not isinstance(limit, bool):
            self.limit = min(100_000, max(1, limit))


def _send(conn: socket.socket, document: dict[str, Any]) -> None:
    conn.sendall(json.dumps(document, separators=(",", ":")).encode() + b"\n")


#: The directories this process has swept (``_sweep``).
_swept: set[str] = set()


def _sweep(directory: str, ours: str) -> None:
    """Remove sockets left in our directory by processes that died without
    cleaning up: nobody accepts connections on them any more."""
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(".sock") or path == ours:
            continue
        try:
            os.kill(int(name[:-5]), 0)
            continue                      # alive (or not ours to judge)
        except ProcessLookupError:
            pass
        except (ValueError, OSError):
            continue
        # No such pid here; it may live in another pid namespace sharing
        # this directory, so only a socket nobody listens on is removed.
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.setblocking(False)
        try:
            probe.connect(path)
        except (ConnectionRefusedError, FileNotFoundError):
            try:
                os.unlink(path)
            except OSError:
                pass
        except OSError:
            pass
        finally:
            probe.close()


__all__ = ["Server", "peer_uid", "private_dir", "refusal"]
