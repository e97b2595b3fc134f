"""The process layer of the loop: subprocesses and pipes.

Owns: the loop methods ``subprocess_exec``, ``subprocess_shell``,
``connect_read_pipe`` and ``connect_write_pipe`` (with asyncio's argument
checks), the per-loop child watcher, and what closing the loop does to the
children still running (``children.py``, rule 3: they keep running and are
reaped in the background).  Signals live in ``signals.py``; the transports
in ``pipes.py`` and ``process.py``; starting a child off the loop thread in
``spawn.py``.
Never: imported by the kernel; never touches the kernel's internals beyond
``_add_reader``/``_remove_reader``/``_add_writer``/``_remove_writer``,
``call_soon`` and ``create_future``.

asyncio's deprecated child watchers (Python 3.11-3.13).  A watcher on the
event-loop policy that may reap children by itself (``SafeChildWatcher``,
``FastChildWatcher``, ``MultiLoopChildWatcher``, a program's own class) is
used exactly as asyncio's loop uses it; ignoring it would let it steal the
exit statuses of treadle's children.  asyncio's ``ThreadedChildWatcher``
and ``PidfdChildWatcher`` (the ones asyncio creates by itself when anyone
calls ``get_child_watcher()``) only wait for the pids handed to them, which
is what treadle's own watcher does without a thread per child: treadle
watches its children itself then, and always from 3.14 (``children.py``).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import warnings
from typing import Any, Callable

from .._kernel import _compat
from .._kernel.layers import Layer
from .._writeflow import require_protocol
from .children import ChildWatcher
from .pipes import ReadPipeTransport, WritePipeTransport
from .process import SubprocessTransport
from .spawn import Spawner


def _format_pipe(fd: Any) -> str:
    if fd == subprocess.PIPE:
        return "<pipe>"
    if fd == subprocess.STDOUT:
        return "<stdout>"
    return repr(fd)


def _policy_child_watcher() -> Any:
    """The child watcher asyncio's loop would hand a new child to, if it is
    one treadle must use (see the module docstring); None: treadle's own."""
    if not hasattr(asyncio, "AbstractChildWatcher"):
        return None                      # 3.14+: watchers are gone
    policy = asyncio.get_event_loop_policy()
    default = getattr(asyncio, "DefaultEventLoopPolicy", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        if default is not None and isinstance(policy, default) and (
                type(policy).get_child_watcher is default.get_child_watcher):
            # Only a watcher that exists counts: asking asyncio's policy
            # would make one.
            watcher = getattr(policy, "_watcher", None)
        else:
            try:
                watcher = getattr(policy, "get_child_watcher")()
            except (NotImplementedError, AttributeError):
                return None
    if watcher is None or type(watcher) in _HARMLESS_WATCHERS:
        return None
    return watcher


#: asyncio's watchers that reap only the pids they are given.
_HARMLESS_WATCHERS: tuple[type, ...] = tuple(
    cls for cls in (getattr(asyncio, "ThreadedChildWatcher", None),
                    getattr(asyncio, "PidfdChildWatcher", None))
    if isinstance(cls, type))


class ProcessMixin(Layer):
    """Adds asyncio's subprocess and pipe methods."""

    def _layers_init(self) -> None:
        super()._layers_init()
        self._child_watcher = ChildWatcher(self)
        self._spawner = Spawner(self)

    def _layers_close(self) -> None:
        self._spawner.close()
        self._child_watcher.close()
        super()._layers_close()

    # ------------------------------------------------------------------
    # pipes
    # ------------------------------------------------------------------

    async def connect_read_pipe(self, protocol_factory: Callable[[], Any],
                                pipe: Any) -> tuple[Any, Any]:
        return await self._connect_pipe(ReadPipeTransport, "Read", protocol_factory, pipe)

    async def connect_write_pipe(self, protocol_factory: Callable[[], Any],
                                 pipe: Any) -> tuple[Any, Any]:
        return await self._connect_pipe(WritePipeTransport, "Write", protocol_factory, pipe)

    async def _connect_pipe(self, transport_class: Callable[..., Any], kind: str,
                            protocol_factory: Callable[[], Any],
                            pipe: Any) -> tuple[Any, Any]:
        protocol = protocol_factory()
        waiter = self.create_future()
        transport = transport_class(self, pipe, protocol, waiter)
        try:
            await waiter
        except BaseException:
            transport.close()
            raise
        if self._debug:
            _compat.asyncio_logger().debug(
                "%s pipe %r connected: (%r, %r)", kind, pipe.fileno(), transport, protocol)
        return transport, protocol

    # ------------------------------------------------------------------
    # subprocesses
    # ------------------------------------------------------------------

    async def subprocess_shell(
            self, protocol_factory: Callable[[], Any], cmd: Any, *,
            stdin: Any = subprocess.PIPE, stdout: Any = subprocess.PIPE,
            stderr: Any = subprocess.PIPE, universal_newlines: bool = False,
            shell: bool = True, bufsize: int = 0, encoding: Any = None,
            errors: Any = None, text: Any = None, **kwargs: Any) -> tuple[Any, Any]:
        if not isinstance(cmd, (bytes, str)):
            raise ValueError("cmd must be a string")
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if not shell:
            raise ValueError("shell must be True")
        _check_binary_mode(bufsize, text, encoding, errors)
        protocol = protocol_factory()
        debug_log = None
        if self._debug:
            # Not the command itself: it may hold secrets, or be huge.
            debug_log = f"run shell command {cmd!r}"
            self._log_subprocess(debug_log, stdin, stdout, stderr)
        transport = await self._make_subprocess_transport(
            protocol, cmd, True, stdin, stdout, stderr, bufsize, **kwargs)
        if self._debug and debug_log is not None:
            _compat.asyncio_logger().info("%s: %r", debug_log, transport)
        return transport, protocol

    async def subprocess_exec(
            self, protocol_factory: Callable[[], Any], program: Any, *args: Any,
            stdin: Any = subprocess.PIPE, stdout: Any = subprocess.PIPE,
            stderr: Any = subprocess.PIPE, universal_newlines: bool = False,
            shell: bool = False, bufsize: int = 0, encoding: Any = None,
            errors: Any = None, text: Any = None, **kwargs: Any) -> tuple[Any, Any]:
        if universal_newlines:
            raise ValueError("universal_newlines must be False")
        if shell:
            raise ValueError("shell must be False")
        _check_binary_mode(bufsize, text, encoding, errors)
        popen_args = (program,) + args
        protocol = protocol_factory()
        debug_log = None
        if self._debug:
            debug_log = f"execute program {program!r}"
            self._log_subprocess(debug_log, stdin, stdout, stderr)
        transport = await self._make_subprocess_transport(
            protocol, popen_args, False, stdin, stdout, stderr, bufsize, **kwargs)
        if self._debug and debug_log is not None:
            _compat.asyncio_logger().info("%s: %r", debug_log, transport)
        return transport, protocol

    def _log_subprocess(self, msg: str, stdin: Any, stdout: Any, stderr: Any) -> None:
        info = [msg]
        if stdin is not None:
            info.append(f"stdin={_format_pipe(stdin)}")
        if stdout is not None and stderr == subprocess.STDOUT:
            info.append(f"stdout=stderr={_format_pipe(stdout)}")
        else:
            if stdout is not None:
                info.append(f"stdout={_format_pipe(stdout)}")
            if stderr is not None:
                info.append(f"stderr={_format_pipe(stderr)}")
        _compat.asyncio_logger().debug(" ".join(info))

    async def _make_subprocess_transport(
            self, protocol: Any, args: Any, shell: bool, stdin: Any, stdout: Any,
            stderr: Any, bufsize: int, extra: dict[str, Any] | None = None,
            **kwargs: Any) -> SubprocessTransport:
        # Before the spawn: asyncio finds out only after it (and 3.11 and
        # 3.12 then wait for the child forever).
        require_protocol(protocol)
        watcher = _policy_child_watcher()
        if watcher is not None:
            return await self._spawn_for_watcher(
                watcher, protocol, args, shell, stdin, stdout, stderr, bufsize,
                extra, kwargs)
        transport = await self._spawn(protocol, args, shell, stdin, stdout, stderr,
                                      bufsize, extra, kwargs)
        transport._child = self._child_watcher.watch(transport._proc,
                                                     transport._process_exited)
        return await self._finish_spawn(transport)

    async def _spawn(self, protocol: Any, args: Any, shell: bool, stdin: Any,
                     stdout: Any, stderr: Any, bufsize: int,
                     extra: dict[str, Any] | None,
                     kwargs: dict[str, Any]) -> SubprocessTransport:
        """Start the child off the loop thread (``spawn.py``), then wrap it
        in its transport."""
        popen = await self._spawner.popen(args, dict(
            kwargs, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
            universal_newlines=False, bufsize=bufsize))
        return SubprocessTransport(self, protocol, popen, args, stdin, stdout,
                                   stderr, extra=extra)

    async def _finish_spawn(self, transport: SubprocessTransport) -> SubprocessTransport:
        waiter = self.create_future()
        transport._start(waiter)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            # Cancelled or failed while connecting the pipes: do not leave
            # a child behind (asyncio kills it and waits for it, too).
            transport.close()
            await transport._wait()
            raise
        return transport

    async def _spawn_for_watcher(
            self, watcher: Any, protocol: Any, args: Any, shell: bool, stdin: Any,
            stdout: Any, stderr: Any, bufsize: int, extra: dict[str, Any] | None,
            kwargs: dict[str, Any]) -> SubprocessTransport:
        # asyncio's exact sequence of watcher calls, which differs by
        # version (3.11 asks the object __enter__ returns).
        if sys.version_info < (3, 12):
            with watcher as active:
                return await self._spawn_watched(
                    active, protocol, args, shell, stdin, stdout, stderr, bufsize,
                    extra, kwargs)
        with watcher:
            return await self._spawn_watched(
                watcher, protocol, args, shell, stdin, stdout, stderr, bufsize,
                extra, kwargs)

    async def _spawn_watched(
            self, watcher: Any, protocol: Any, args: Any, shell: bool, stdin: Any,
            stdout: Any, stderr: Any, bufsize: int, extra: dict[str, Any] | None,
            kwargs: dict[str, Any]) -> SubprocessTransport:
        if not watcher.is_active():
            # Before the spawn: a child nobody would reap must not exist.
            raise RuntimeError("asyncio.get_child_watcher() is not activated, "
                               "subprocess support is not installed.")
        transport = await self._spawn(protocol, args, shell, stdin, stdout, stderr,
                                      bufsize, extra, kwargs)
        watcher.add_child_handler(transport.get_pid(), self._child_watcher_callback,
                                  transport)
        return await self._finish_spawn(transport)

    def _child_watcher_callback(self, pid: int, returncode: int,
                                transport: SubprocessTransport) -> None:
        # asyncio's watchers may call from any thread.
        self.call_soon_threadsafe(transport._process_exited, returncode)


def _check_binary_mode(bufsize: int, text: Any, encoding: Any, errors: Any) -> None:
    """The transports carry bytes: refuse what would make Popen's pipes text
    or buffered, with asyncio's messages."""
    if bufsize != 0:
        raise ValueError("bufsize must be 0")
    if text:
        raise ValueError("text must be False")
    if encoding is not None:
        raise ValueError("encoding must be None")
    if errors is not None:
        raise ValueError("errors must be None")
