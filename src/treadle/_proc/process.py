"""The subprocess transport: what ``subprocess_exec``/``subprocess_shell``
return and what ``asyncio.subprocess.Process`` drives.

Owns: one child process (the ``subprocess.Popen`` that ``spawn.py``
started off the loop thread), the pipe transports of
its stdin/stdout/stderr, and the order in which the ``SubprocessProtocol``
hears about them: ``connection_made`` once every pipe is connected, then
``pipe_data_received``/``pipe_connection_lost``/``process_exited`` as they
happen (events that happen earlier are queued until then), and
``connection_lost`` once the child has exited *and* every pipe is closed;
that is also when ``_wait()`` (``Process.wait()``) returns, as on asyncio.
Never: reaps the child itself (``children.py`` does, and calls
``_process_exited``); never blocks the loop.

The API is asyncio's ``SubprocessTransport`` plus the one private method
``asyncio.subprocess.Process`` calls, ``_wait()``.  ``send_signal``,
``terminate`` and ``kill`` raise ``ProcessLookupError`` once the transport
has finished, and otherwise do nothing to a child that is already reaped
(asyncio 3.13's behaviour, without its pid-reuse race).
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sys
import subprocess
import warnings
from typing import Any, Callable

from .._kernel import _compat
from .children import Child


#: 3.14+: wait() returns when the child exits, not when its pipes close.
_WAKE_WAIT_ON_EXIT = sys.version_info >= (3, 14)


class _PipeEnd(asyncio.Protocol):
    """The protocol of one of the child's pipes: forwards to the transport."""

    def __init__(self, owner: SubprocessTransport, fd: int) -> None:
        self.proc: SubprocessTransport | None = owner
        self.fd = fd
        self.pipe: Any = None
        self.disconnected = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self.fd} pipe={self.pipe!r}>"

    def connection_made(self, transport: Any) -> None:
        self.pipe = transport

    def connection_lost(self, exc: BaseException | None) -> None:
        self.disconnected = True
        owner = self.proc
        self.proc = None
        if owner is not None:
            owner._pipe_connection_lost(self.fd, exc)

    def data_received(self, data: bytes) -> None:
        if self.proc is not None:
            self.proc._pipe_data_received(self.fd, data)

    def pause_writing(self) -> None:
        if self.proc is not None and self.proc._protocol is not None:
            self.proc._protocol.pause_writing()

    def resume_writing(self) -> None:
        if self.proc is not None and self.proc._protocol is not None:
            self.proc._protocol.resume_writing()


class SubprocessTransport(asyncio.SubprocessTransport):
    """A child process and its pipes, seen through asyncio's transport API."""

    _extra: dict[str, Any]    # asyncio.BaseTransport's (typeshed omits it)

    def __init__(self, loop: Any, protocol: Any, popen: Any, args: Any,
                 stdin: Any, stdout: Any, stderr: Any,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(extra)
        self._closed = False
        self._protocol: Any = protocol
        self._loop: Any = loop
        self._proc: Any = popen
        self._pid: int = popen.pid
        self._returncode: int | None = None
        self._exit_waiters: list[asyncio.Future[Any]] | None = []
        self._pending_calls: collections.deque[tuple[Callable[..., object], tuple[Any, ...]]] | None = (
            collections.deque())
        self._pipes: dict[int, _PipeEnd | None] = {}
        self._finished = False
        self._child: Child | None = None
        if stdin == subprocess.PIPE:
            self._pipes[0] = None
        if stdout == subprocess.PIPE:
            self._pipes[1] = None
        if stderr == subprocess.PIPE:
            self._pipes[2] = None
        self._extra["subprocess"] = popen
        if loop.get_debug():
            program = args if isinstance(args, (bytes, str)) else args[0]
            _compat.asyncio_logger().debug("process %r created: pid %s",
                                           program, self._pid)

    def _start(self, waiter: asyncio.Future[Any] | None) -> None:
        """Connect the pipes (through the loop's public ``connect_*_pipe``,
        which programs and tests may wrap), then tell the protocol."""
        self._loop.create_task(self._connect_pipes(waiter))

    def __repr__(self) -> str:
        info = [type(self).__name__]
        if self._closed:
            info.append("closed")
        info.append(f"pid={self._pid}")
        if self._returncode is not None:
            info.append(f"returncode={self._returncode}")
        else:
            info.append("running")
        stdin = self._pipes.get(0)
        if stdin is not None:
            info.append(f"stdin={stdin.pipe}")
        stdout = self._pipes.get(1)
        stderr = self._pipes.get(2)
        if stdout is not None and stderr is stdout:
            info.append(f"stdout=stderr={stdout.pipe}")
        else:
            if stdout is not None:
                info.append(f"stdout={stdout.pipe}")
            if stderr is not None:
                info.append(f"stderr={stderr.pipe}")
        return f"<{' '.join(info)}>"

    def __del__(self, _warn: Callable[..., None] = warnings.warn) -> None:
        if not getattr(self, "_closed", True):
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self.close()

    # -- asyncio's SubprocessTransport API -----------------------------------

    def set_protocol(self, protocol: Any) -> None:
        self._protocol = protocol

    def get_protocol(self) -> Any:
        return self._protocol

    def is_closing(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Close the pipes; kill the child if it is still running."""
        if self._closed:
            return
        self._closed = True
        for end in self._pipes.values():
            if end is not None and end.pipe is not None:
                end.pipe.close()
        proc = self._proc
        if (proc is not None and self._returncode is None
                # poll(): it may have exited without us being told yet
                and proc.poll() is None):
            if self._loop is not None and self._loop.get_debug():
                _compat.asyncio_logger().warning(
                    "Close running child process: kill %r", self)
            try:
                proc.kill()
            except (ProcessLookupError, PermissionError):
                # Gone already, or setuid: nothing more we can do.
                pass

    def get_pid(self) -> int:
        return self._pid

    def get_returncode(self) -> int | None:
        return self._returncode

    def get_pipe_transport(self, fd: int) -> Any:
        end = self._pipes.get(fd)
        return end.pipe if end is not None else None

    def _check_proc(self) -> None:
        if self._proc is None:
            raise ProcessLookupError()

    def send_signal(self, signal: int) -> None:
        self._check_proc()
        child = self._child
        if child is not None:
            child.send_signal(signal)
            return
        # Watched by an asyncio child watcher: asyncio's own way.
        if self._returncode is not None or self._proc.returncode is not None:
            return
        try:
            os.kill(self._proc.pid, signal)
        except ProcessLookupError:
            pass

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def _wait(self) -> int:
        """Wait until the child has exited (up to 3.13: and every pipe is
        closed); its return code.  (Private, but asyncio.subprocess.Process
        calls it.)"""
        if self._returncode is not None:
            return self._returncode
        waiter = self._loop.create_future()
        assert self._exit_waiters is not None
        self._exit_waiters.append(waiter)
        try:
            result: int = await waiter
        finally:
            if self._exit_waiters is not None and waiter in self._exit_waiters:
                self._exit_waiters.remove(waiter)
        return result

    # -- the pipes ---------------------------------------------------------

    async def _connect_pipes(self, waiter: asyncio.Future[Any] | None) -> None:
        try:
            proc = self._proc
            loop = self._loop
            for fd, stream in ((0, proc.stdin), (1, proc.stdout), (2, proc.stderr)):
                if stream is None:
                    continue
                if fd == 0:
                    _, end = await loop.connect_write_pipe(
                        lambda: _PipeEnd(self, 0), stream)
                else:
                    _, end = await loop.connect_read_pipe(
                        lambda fd=fd: _PipeEnd(self, fd), stream)
                self._pipes[fd] = end
                if self._closed and end.pipe is not None:
                    # close() ran while we were connecting: it could not
                    # close this one.
                    end.pipe.close()
            assert self._pending_calls is not None
            loop.call_soon(self._protocol.connection_made, self)
            for callback, data in self._pending_calls:
                loop.call_soon(callback, *data)
            self._pending_calls = None
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            # Close the pipes connected before the failure too, or their
            # transports (and fds) would outlive the failed spawn.
            for end in self._pipes.values():
                if end is not None and end.pipe is not None:
                    end.pipe.close()
            self._abandon_unconnected_pipes()
            if waiter is not None and not waiter.cancelled():
                waiter.set_exception(exc)
        else:
            if waiter is not None and not waiter.cancelled():
                waiter.set_result(None)

    def _abandon_unconnected_pipes(self) -> None:
        # A pipe that never got its transport: close its file, and stop
        # waiting for it, or _wait() would never return.
        proc = self._proc
        for fd in [fd for fd, end in self._pipes.items() if end is None]:
            del self._pipes[fd]
            stream = None
            if proc is not None:
                stream = (proc.stdin, proc.stdout, proc.stderr)[fd]
            if stream is not None:
                try:
                    stream.close()
                except OSError:
                    pass
        if self._returncode is not None and not self._finished:
            self._try_finish()

    def _call(self, callback: Callable[..., object], *data: Any) -> None:
        if self._pending_calls is not None:
            self._pending_calls.append((callback, data))
        else:
            self._loop.call_soon(callback, *data)

    def _pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        self._call(self._protocol.pipe_connection_lost, fd, exc)
        self._try_finish()

    def _pipe_data_received(self, fd: int, data: bytes) -> None:
        self._call(self._protocol.pipe_data_received, fd, data)

    # -- the child -----------------------------------------------------------

    def _process_exited(self, returncode: int) -> None:
        if self._returncode is not None or self._loop is None:
            return
        if self._loop.get_debug():
            _compat.asyncio_logger().info(
                "%r exited with return code %r", self, returncode)
        self._returncode = returncode
        if self._proc.returncode is None:
            self._proc.returncode = returncode
        self._call(self._protocol.process_exited)
        self._try_finish()
        if _WAKE_WAIT_ON_EXIT:
            # 3.14+ (gh-119710): wait() returns once the child has exited,
            # even if a grandchild keeps one of its pipes open.  After
            # _try_finish, as asyncio: when every pipe is already closed,
            # connection_lost runs before the waiter wakes, so the transport
            # is finished (send_signal raises ProcessLookupError) by then.
            waiters = self._exit_waiters or []
            self._exit_waiters = None
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(returncode)

    def _try_finish(self) -> None:
        if self._finished or self._returncode is None:
            return
        if all(end is not None and end.disconnected for end in self._pipes.values()):
            self._finished = True
            self._call(self._call_connection_lost, None)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            waiters = self._exit_waiters or []
            self._exit_waiters = None
            for waiter in waiters:
                if not waiter.cancelled():
                    waiter.set_result(self._returncode)
            self._loop = None
            self._proc = None
            self._protocol = None
            self._child = None
