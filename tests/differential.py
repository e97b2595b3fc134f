"""The differential harness: the same loop calls on asyncio's loop and on
treadle's, and what each loop made of them.

A *call* is symbolic: a loop method and its arguments as *tokens*
(``"int:7"``, ``"sock:stream"``, ``"pf:none"``, ...).  A ``World`` turns
each token into a fresh value for its own loop (a new socket pair, a new
protocol factory, ...), performs the call the way a program would (from a
task running on the loop; coroutines and futures awaited), lets the loop
settle for a few turns, and records an ``Outcome``: what the call returned
or raised, what reached the loop's exception handler and what was logged
as a warning or error meanwhile.  ``differences()`` compares two runs of
the same calls, allowing only what ``ALLOWED`` lists: the differences the
README documents as deliberate.

Values are normalized before they are compared: object addresses, fd
numbers, port numbers and reprs of objects (``<...>``, which differ in
class names between the loops) are blanked, and the class in
``Class.method()`` is dropped (asyncio names its own internal classes).
Nothing else is.

Used by ``test_differential.py`` (Hypothesis generates the calls) and
readable on its own: ``python -m tests.differential`` runs one call on
both loops and prints both outcomes.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import inspect
import logging
import math
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

PY312 = sys.version_info >= (3, 12)
PY313 = sys.version_info >= (3, 13)
PY314 = sys.version_info >= (3, 14)

#: How long one call may take before the world gives up on it (both loops
#: hanging on the same call is an outcome like any other: "timeout").
STEP_TIMEOUT = 2.0
#: Loop turns after each call, for the callbacks it scheduled.
SETTLE_TURNS = 6


# ----------------------------------------------------------------------
# the catalogue: every public method of AbstractEventLoop
# ----------------------------------------------------------------------

POS, KW, EITHER = "positional", "keyword", "either"


@dataclass(frozen=True)
class Param:
    name: str
    good: tuple[str, ...]           # tokens a correct program would pass
    kind: str = EITHER
    required: bool = False
    #: Tokens of wrong values likely to reach this parameter's own checks,
    #: drawn besides the generic pool.
    bad: tuple[str, ...] = ()
    generic: tuple[str, ...] = ()


@dataclass(frozen=True)
class Method:
    params: tuple[Param, ...] = ()
    varargs: tuple[str, ...] | None = None     # tokens for *args, if any
    #: How it is performed: "inside" a task on the running loop, or
    #: "outside" it (run_until_complete, close).
    where: str = "inside"
    #: Whether the world awaits what the call returns.
    awaited: bool = False
    #: False: generated only with a wrong signature (stop, run_forever).
    valid_ok: bool = True


# Token families.  "good" lists name what a program would pass; GENERIC is
# drawn for any parameter as a wrong (or unusual) value.
GENERIC = ("none", "true", "false", "int:0", "int:1", "int:-1", "int:7", "int:big",
           "float:0.5", "float:-0.5", "float:nan", "float:inf", "str:x", "str:",
           "bytes:x", "bytearray", "tuple", "list", "dict", "object", "func",
           "raiser", "corofunc", "coro", "future")
# Parameters that name hosts, ports or addresses never get a string that
# the resolver would send to DNS (the test runs offline, and fast).
NAMELESS = tuple(t for t in GENERIC if t not in ("str:x",))

CALLBACK = ("func", "raiser", "func", "handler:record")
ARGS = ("int:1", "str:x", "none")
CONTEXT = ("none", "context")
TIMEOUT = ("none", "float:0.5", "int:1", "float:0.05")
PF_STREAM = ("pf:protocol", "pf:buffered", "pf:protocol", "pf:none", "pf:raises",
             "pf:object", "pf:conn-made-raises")
PF_DGRAM = ("pf:datagram", "pf:datagram", "pf:none", "pf:raises", "pf:object",
            "pf:conn-made-raises")
PF_PIPE = ("pf:protocol", "pf:none", "pf:raises", "pf:object", "pf:conn-made-raises")
PF_PROC = ("pf:subprocess", "pf:subprocess", "pf:none", "pf:raises", "pf:object")
SSL_OFF = ("none", "false")
SSL_ARG = ("none", "false", "sslctx", "true")
HOST = ("host:v4", "host:v6", "host:name", "host:bytes", "none", "str:")
PORT = ("port:live", "port:zero", "port:numeric-str", "port:bytes", "port:service", "port:unknown",
        "int:-1", "int:big", "none")
STREAM_SOCK = ("sock:stream", "sock:tcp")
ANY_SOCK = ("sock:stream", "sock:tcp", "sock:dgram", "sock:listen", "sock:fresh",
            "sock:closed", "sock:ssl", "sock:unix-listen")
FAMILY = ("int:0", "family:inet", "family:inet6", "family:unix", "int:7")
STDIO = ("stdio:pipe", "stdio:devnull", "none", "stdio:stdout", "file:rb")


def _p(name: str, good: tuple[str, ...], kind: str = EITHER, required: bool = False,
       bad: tuple[str, ...] = (), generic: tuple[str, ...] = GENERIC) -> Param:
    return Param(name, good, kind, required, bad, generic)


def _ssl_params() -> tuple[Param, ...]:
    return (_p("ssl_handshake_timeout", TIMEOUT, KW),
            _p("ssl_shutdown_timeout", TIMEOUT, KW))


METHODS: dict[str, Method] = {
    # -- running and closing ----------------------------------------------
    "run_until_complete": Method(
        (_p("future", ("coro", "future", "task", "coro"), required=True),),
        where="outside"),
    "run_forever": Method(where="outside", valid_ok=False),
    "stop": Method(valid_ok=False),
    "is_running": Method(),
    "is_closed": Method(),
    "close": Method(where="outside"),
    "shutdown_asyncgens": Method(awaited=True),
    "shutdown_default_executor": Method(
        (_p("timeout", TIMEOUT),) if PY312 else (), awaited=True),
    # -- callbacks and timers ---------------------------------------------
    "call_soon": Method((_p("callback", CALLBACK, required=True),
                         _p("context", CONTEXT, KW)), varargs=ARGS),
    "call_soon_threadsafe": Method((_p("callback", CALLBACK, required=True),
                                    _p("context", CONTEXT, KW)), varargs=ARGS),
    "call_later": Method((_p("delay", ("int:0", "float:-0.5", "delay:far", "int:-1"),
                             required=True),
                          _p("callback", CALLBACK, required=True),
                          _p("context", CONTEXT, KW)), varargs=ARGS),
    "call_at": Method((_p("when", ("when:now", "when:far", "int:0"), required=True),
                       _p("callback", CALLBACK, required=True),
                       _p("context", CONTEXT, KW)), varargs=ARGS),
    "time": Method(),
    # -- futures and tasks ------------------------------------------------
    "create_future": Method(),
    "create_task": Method(
        (_p("coro", ("coro", "coro", "raising-coro"), required=True),
         _p("name", ("str:x", "none", "int:7"), KW),
         _p("context", CONTEXT, KW))
        + ((_p("eager_start", ("true", "false", "none"), KW),) if PY314 else ()),
        awaited=True),
    "set_task_factory": Method((_p("factory", ("none", "taskfactory"), required=True),)),
    "get_task_factory": Method(),
    # -- executors ---------------------------------------------------------
    "run_in_executor": Method((_p("executor", ("none", "executor"), required=True),
                               _p("func", ("func", "raiser"), required=True)),
                              varargs=ARGS, awaited=True),
    "set_default_executor": Method((_p("executor", ("executor",), required=True),)),
    # -- DNS ---------------------------------------------------------------
    "getaddrinfo": Method(
        (_p("host", HOST, required=True, generic=NAMELESS),
         _p("port", PORT, required=True, generic=NAMELESS),
         _p("family", FAMILY, KW), _p("type", ("int:0", "socktype:stream", "int:7"), KW),
         _p("proto", ("int:0", "int:6"), KW), _p("flags", ("int:0", "int:4"), KW)),
        awaited=True),
    "getnameinfo": Method(
        (_p("sockaddr", ("addr:live",), required=True, generic=NAMELESS),
         _p("flags", ("int:0", "ni:numeric"))), awaited=True),
    # -- sockets -----------------------------------------------------------
    "sock_recv": Method((_p("sock", STREAM_SOCK, required=True, bad=ANY_SOCK),
                         _p("n", ("int:7", "int:100000", "int:0"), required=True)),
                        awaited=True),
    "sock_recv_into": Method((_p("sock", STREAM_SOCK, required=True, bad=ANY_SOCK),
                              _p("buf", ("buf:16", "buf:0", "buf:view"), required=True,
                                 bad=("bytes:x",))), awaited=True),
    "sock_recvfrom": Method((_p("sock", ("sock:dgram",), required=True, bad=ANY_SOCK),
                             _p("bufsize", ("int:7", "int:100000"), required=True)),
                            awaited=True),
    "sock_recvfrom_into": Method((_p("sock", ("sock:dgram",), required=True, bad=ANY_SOCK),
                                  _p("buf", ("buf:16", "buf:view"), required=True,
                                     bad=("bytes:x",)),
                                  _p("nbytes", ("int:0", "int:7", "int:100"))),
                                 awaited=True),
    "sock_sendall": Method((_p("sock", STREAM_SOCK, required=True, bad=ANY_SOCK),
                            _p("data", ("bytes:x", "bytearray", "buf:view", "str:"),
                               required=True)), awaited=True),
    "sock_sendto": Method((_p("sock", ("sock:dgram",), required=True, bad=ANY_SOCK),
                           _p("data", ("bytes:x", "bytearray"), required=True),
                           _p("address", ("addr:udp", "addr:short"), required=True,
                              generic=NAMELESS)), awaited=True),
    "sock_connect": Method((_p("sock", ("sock:fresh", "sock:dgram", "sock:fresh-unix"),
                               required=True, bad=ANY_SOCK),
                            _p("address", ("addr:live", "addr:refused", "addr:short",
                                           "addr:unix", "path:missing"),
                               required=True, generic=NAMELESS)), awaited=True),
    "sock_accept": Method((_p("sock", ("sock:listen", "sock:unix-listen"), required=True,
                              bad=ANY_SOCK),), awaited=True),
    "sock_sendfile": Method((_p("sock", STREAM_SOCK, required=True, bad=ANY_SOCK),
                             _p("file", ("file:rb", "file:empty"), required=True,
                                bad=("file:r", "file:closed")),
                             _p("offset", ("int:0", "int:1", "int:big")),
                             _p("count", ("none", "int:7", "int:0")),
                             _p("fallback", ("true", "false"), KW)), awaited=True),
    # -- watching file descriptors -----------------------------------------
    "add_reader": Method((_p("fd", ("sock:stream", "fd:stream"), required=True,
                             bad=("sock:closed", "transport-sock")),
                          _p("callback", CALLBACK, required=True)), varargs=ARGS),
    "add_writer": Method((_p("fd", ("sock:stream", "fd:stream"), required=True,
                             bad=("sock:closed", "transport-sock")),
                          _p("callback", CALLBACK, required=True)), varargs=ARGS),
    "remove_reader": Method((_p("fd", ("sock:stream", "fd:stream"), required=True,
                                bad=("sock:closed", "transport-sock")),)),
    "remove_writer": Method((_p("fd", ("sock:stream", "fd:stream"), required=True,
                                bad=("sock:closed", "transport-sock")),)),
    # -- connections and servers -------------------------------------------
    "create_connection": Method(
        (_p("protocol_factory", PF_STREAM, required=True),
         _p("host", HOST, generic=NAMELESS), _p("port", PORT, generic=NAMELESS),
         _p("ssl", SSL_ARG, KW), _p("family", FAMILY, KW), _p("proto", ("int:0", "int:6"), KW),
         _p("flags", ("int:0",), KW), _p("sock", STREAM_SOCK, KW, bad=ANY_SOCK),
         _p("local_addr", ("addr:local", "addr:short"), KW, generic=NAMELESS),
         _p("server_hostname", ("str:x", "str:", "none"), KW))
        + _ssl_params()
        + (_p("happy_eyeballs_delay", ("float:0.5", "int:0", "none"), KW),
           _p("interleave", ("int:1", "none", "int:0"), KW))
        + ((_p("all_errors", ("true", "false"), KW),) if PY312 else ()),
        awaited=True),
    "create_server": Method(
        (_p("protocol_factory", PF_STREAM, required=True),
         _p("host", ("host:v4", "none", "host:list", "str:"), generic=NAMELESS),
         _p("port", ("port:zero", "none", "port:numeric-str"), generic=NAMELESS),
         _p("family", FAMILY, KW), _p("flags", ("int:0", "int:1"), KW),
         _p("sock", ("sock:listen", "sock:unix-listen"), KW, bad=ANY_SOCK),
         _p("backlog", ("int:7", "int:0"), KW), _p("ssl", SSL_ARG, KW),
         _p("reuse_address", ("true", "false", "none"), KW),
         _p("reuse_port", ("true", "false", "none"), KW))
        + ((_p("keep_alive", ("true", "false", "none"), KW),) if PY313 else ())
        + _ssl_params()
        + (_p("start_serving", ("true", "false"), KW),),
        awaited=True),
    "create_unix_connection": Method(
        (_p("protocol_factory", PF_STREAM, required=True),
         _p("path", ("path:listening", "path:missing", "none"), generic=NAMELESS),
         _p("ssl", SSL_ARG, KW), _p("sock", ("sock:stream",), KW, bad=ANY_SOCK),
         _p("server_hostname", ("str:x", "str:", "none"), KW))
        + _ssl_params(),
        awaited=True),
    "create_unix_server": Method(
        (_p("protocol_factory", PF_STREAM, required=True),
         _p("path", ("path:fresh", "path:missing-dir", "none", "path:abstract")),
         _p("sock", ("sock:unix-listen",), KW, bad=ANY_SOCK),
         _p("backlog", ("int:7",), KW), _p("ssl", SSL_ARG, KW))
        + _ssl_params()
        + (_p("start_serving", ("true", "false"), KW),)
        + ((_p("cleanup_socket", ("true", "false"), KW),) if PY313 else ()),
        awaited=True),
    "connect_accepted_socket": Method(
        (_p("protocol_factory", PF_STREAM, required=True),
         _p("sock", STREAM_SOCK, required=True, bad=ANY_SOCK),
         _p("ssl", SSL_OFF, KW)) + _ssl_params(),
        awaited=True),
    "create_datagram_endpoint": Method(
        (_p("protocol_factory", PF_DGRAM, required=True),
         _p("local_addr", ("addr:local", "none", "addr:short"), generic=NAMELESS),
         _p("remote_addr", ("addr:udp", "none", "addr:short"), generic=NAMELESS),
         _p("family", FAMILY, KW), _p("proto", ("int:0", "int:17"), KW),
         _p("flags", ("int:0",), KW), _p("reuse_port", ("true", "false", "none"), KW),
         _p("allow_broadcast", ("true", "false", "none"), KW),
         _p("sock", ("sock:dgram",), KW, bad=ANY_SOCK)),
        awaited=True),
    "sendfile": Method(
        (_p("transport", ("transport",), required=True),
         _p("file", ("file:rb", "file:empty"), required=True, bad=("file:r", "file:closed")),
         _p("offset", ("int:0", "int:1")), _p("count", ("none", "int:7", "int:0")),
         _p("fallback", ("true", "false"), KW)), awaited=True),
    "start_tls": Method(
        (_p("transport", ("transport",), required=True),
         _p("protocol", ("protocol",), required=True),
         _p("sslcontext", ("sslctx",), required=True),
         _p("server_side", ("false", "true"), KW),
         _p("server_hostname", ("str:x", "none"), KW)) + _ssl_params(),
        awaited=True),
    # -- pipes and subprocesses --------------------------------------------
    "connect_read_pipe": Method((_p("protocol_factory", PF_PIPE, required=True),
                                 _p("pipe", ("pipe:r",), required=True,
                                    bad=("file:rb", "sock:stream"))), awaited=True),
    "connect_write_pipe": Method((_p("protocol_factory", PF_PIPE, required=True),
                                  _p("pipe", ("pipe:w",), required=True,
                                     bad=("file:rb", "sock:stream"))), awaited=True),
    "subprocess_exec": Method(
        (_p("protocol_factory", PF_PROC, required=True),
         _p("program", ("program:true", "program:true-bytes", "program:missing"),
            required=True),
         _p("stdin", STDIO, KW), _p("stdout", STDIO, KW), _p("stderr", STDIO, KW),
         _p("universal_newlines", ("false", "true"), KW),
         _p("shell", ("false", "true"), KW), _p("bufsize", ("int:0", "int:1"), KW),
         _p("encoding", ("none", "str:x"), KW), _p("errors", ("none", "str:x"), KW),
         _p("text", ("none", "false", "true"), KW),
         _p("cwd", ("none", "path:missing-dir"), KW)),
        varargs=("str:x", "int:1"), awaited=True),
    "subprocess_shell": Method(
        (_p("protocol_factory", PF_PROC, required=True),
         _p("cmd", ("cmd:true", "cmd:exit3", "cmd:true-bytes"), required=True),
         _p("stdin", STDIO, KW), _p("stdout", STDIO, KW), _p("stderr", STDIO, KW),
         _p("universal_newlines", ("false", "true"), KW),
         _p("shell", ("true", "false"), KW), _p("bufsize", ("int:0", "int:1"), KW),
         _p("encoding", ("none", "str:x"), KW), _p("errors", ("none", "str:x"), KW),
         _p("text", ("none", "false", "true"), KW),
         _p("env", ("none", "env:bad"), KW)),
        awaited=True),
    # -- signals ----------------------------------------------------------
    "add_signal_handler": Method((_p("sig", ("signal:usr1", "signal:usr2", "signal:kill",
                                             "int:0", "int:big"), required=True),
                                  _p("callback", CALLBACK, required=True)),
                                 varargs=ARGS),
    "remove_signal_handler": Method((_p("sig", ("signal:usr1", "signal:usr2",
                                                "signal:kill", "int:0"), required=True),)),
    # -- errors and debug ---------------------------------------------------
    "set_exception_handler": Method((_p("handler", ("handler:record", "none",
                                                    "handler:raises"), required=True),)),
    "get_exception_handler": Method(),
    "default_exception_handler": Method(
        (_p("context", ("ectx:message", "ectx:exception", "ectx:empty"), required=True),)),
    "call_exception_handler": Method(
        (_p("context", ("ectx:message", "ectx:exception", "ectx:empty", "ectx:handle",
                        "ectx:bad-exception"), required=True),)),
    "get_debug": Method(),
    "set_debug": Method((_p("enabled", ("true", "false"), required=True),)),
}


# ----------------------------------------------------------------------
# outcomes
# ----------------------------------------------------------------------

@dataclass
class Outcome:
    #: ("return", kind) / ("raise", phase, type, message) / ("timeout",) /
    #: ("suspended",) for a coroutine stepped on a closed loop.
    result: tuple[Any, ...]
    #: (message, exception type) of each context the exception handler got.
    reports: list[tuple[str, str]] = field(default_factory=list)
    #: (level, first line, exception type) of asyncio's log records at
    #: WARNING and above.
    logs: list[tuple[str, str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        parts = [" ".join(map(str, self.result))]
        if self.reports:
            parts.append(f"reports={self.reports[:8]}")
        if self.logs:
            parts.append(f"logs={self.logs[:8]}")
        return "; ".join(parts)


_ADDRESS = re.compile(r"0x[0-9a-fA-F]+")
_FD = re.compile(r"\b(fd|fileno)=-?\d+")
_DESCRIPTOR = re.compile(r"(descriptor:?|fd) -?\d+")
_BIG_NUMBER = re.compile(r"(?<![\w.])\d{4,}(?![\w.])")
_REPR = re.compile(r"<[^<>]*>")
_QUALIFIED = re.compile(r"\b[A-Za-z_]\w*\.(\w+)\(\)")
_PATH = re.compile(re.escape(tempfile.gettempdir()) + r"/[\w./-]+")
_AT_FILE = re.compile(r" at [^ ]+:\d+")


def normalize(text: str) -> str:
    """What is compared of a message (see the module docstring)."""
    text = _AT_FILE.sub(" at ?", text)
    text = _ADDRESS.sub("0x?", text)
    text = _FD.sub(r"\1=?", text)
    text = _DESCRIPTOR.sub(r"\1 ?", text)
    text = _PATH.sub("PATH", text)
    text = _BIG_NUMBER.sub("N", text)
    while True:     # innermost first: "<Transport fd=? write=<idle>>"
        shorter = _REPR.sub("\0", text)
        if shorter == text:
            break
        text = shorter
    return _QUALIFIED.sub(r"\1()", text.replace("\0", "<?>"))


def report_message(text: str) -> str:
    """What is compared of a message reported to the exception handler or
    logged: "Exception in callback X" without the callback's repr (which
    names each loop's own transport methods), the rest normalized."""
    if text.startswith("Exception in callback "):
        return "Exception in callback ?"
    return normalize(text)


def kind_of(value: Any) -> str:
    """What is compared of a returned value."""
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return normalize(repr(value))
    if isinstance(value, float):
        return "float"
    if isinstance(value, (tuple, list)):
        inner = ", ".join(kind_of(v) for v in value)
        return f"{type(value).__name__}({inner})"
    if isinstance(value, bytearray):
        return normalize(repr(value))
    if isinstance(value, socket.socket):
        return "socket"
    if hasattr(value, "get_coro"):
        return "task"
    if asyncio.isfuture(value):
        return "future"
    if type(value).__name__.endswith("Handle"):     # (3.13+: _ThreadSafeHandle)
        return "TimerHandle" if hasattr(value, "when") else "Handle"
    if "Datagram" in type(value).__name__:
        return "DatagramTransport"      # (3.11's is not a DatagramTransport)
    for abc in (asyncio.SubprocessTransport, asyncio.DatagramTransport, asyncio.Transport,
                asyncio.ReadTransport, asyncio.WriteTransport, asyncio.AbstractServer):
        if isinstance(value, abc):
            return abc.__name__
    if isinstance(value, (asyncio.BaseProtocol,)):
        return f"protocol:{type(value).__name__}"
    if inspect.isfunction(value):
        return f"function:{value.__name__}"
    return f"object:{type(value).__name__}"


def exc_outcome(phase: str, exc: BaseException) -> tuple[Any, ...]:
    return ("raise", phase, type(exc).__name__, normalize(str(exc)))


# ----------------------------------------------------------------------
# values the tokens stand for
# ----------------------------------------------------------------------

def func(*args: Any) -> int:
    return 1


def raiser(*args: Any) -> None:
    raise ValueError("raiser raised")


async def corofunc() -> int:
    return 1


async def coro_body() -> int:
    await asyncio.sleep(0)
    return 7


async def raising_coro() -> None:
    await asyncio.sleep(0)
    raise KeyError("raising coro")


def raising_handler(loop: Any, context: Any) -> None:
    raise RuntimeError("handler raised")


class StreamProtocol(asyncio.Protocol):
    pass


class BufferedProtocol(asyncio.BufferedProtocol):
    def get_buffer(self, sizehint: int) -> bytearray:
        return bytearray(1024)

    def buffer_updated(self, nbytes: int) -> None:
        pass


class DatagramProtocol(asyncio.DatagramProtocol):
    pass


class SubprocessProtocol(asyncio.SubprocessProtocol):
    pass


class ConnectionMadeRaises(asyncio.Protocol, asyncio.DatagramProtocol):
    def connection_made(self, transport: Any) -> None:
        raise ZeroDivisionError("connection_made raised")


def factory_raises() -> Any:
    raise LookupError("protocol factory raised")


def task_factory(loop: Any, coro: Any, **kwargs: Any) -> Any:
    return asyncio.Task(coro, loop=loop, **kwargs)


PROTOCOL_FACTORIES: dict[str, Any] = {
    "pf:protocol": StreamProtocol,
    "pf:buffered": BufferedProtocol,
    "pf:datagram": DatagramProtocol,
    "pf:subprocess": SubprocessProtocol,
    "pf:none": lambda: None,
    "pf:raises": factory_raises,
    "pf:object": object,
    "pf:conn-made-raises": ConnectionMadeRaises,
}

SCALARS: dict[str, Any] = {
    "none": None, "true": True, "false": False,
    "int:0": 0, "int:1": 1, "int:-1": -1, "int:7": 7, "int:6": 6, "int:17": 17,
    "int:4": 4, "int:100": 100, "int:100000": 100000, "int:big": 2 ** 70,
    "float:0.5": 0.5, "float:-0.5": -0.5, "float:0.05": 0.05,
    "float:nan": math.nan, "float:inf": math.inf,
    "str:x": "x", "str:": "", "bytes:x": b"x",
    "func": func, "raiser": raiser, "corofunc": corofunc,
    "handler:raises": raising_handler, "taskfactory": task_factory,
    "family:inet": socket.AF_INET, "family:inet6": socket.AF_INET6,
    "family:unix": socket.AF_UNIX, "socktype:stream": socket.SOCK_STREAM,
    "ni:numeric": socket.NI_NUMERICHOST | socket.NI_NUMERICSERV,
    "signal:usr1": signal.SIGUSR1, "signal:usr2": signal.SIGUSR2,
    "signal:kill": signal.SIGKILL,
    "host:v4": "127.0.0.1", "host:v6": "::1", "host:name": "localhost",
    "host:bytes": b"127.0.0.1", "host:list": ["127.0.0.1"],
    "port:zero": 0, "port:numeric-str": "0", "port:bytes": b"80", "port:service": "echo",
    "port:unknown": "no-such-service",
    "addr:short": ("127.0.0.1",), "addr:local": ("127.0.0.1", 0),
    "path:missing-dir": "/nonexistent-treadle-dir/s",
    "program:true": "true", "program:true-bytes": b"true",
    "program:missing": "/nonexistent-treadle-program",
    "cmd:true": "true", "cmd:true-bytes": b"true", "cmd:exit3": "exit 3",
    "stdio:pipe": subprocess.PIPE, "stdio:devnull": subprocess.DEVNULL,
    "stdio:stdout": subprocess.STDOUT, "env:bad": {"A": 1},
    "ectx:message": {"message": "a message"},
    "ectx:exception": {"message": "with exception", "exception": ValueError("v")},
    "ectx:empty": {}, "ectx:bad-exception": {"message": "m", "exception": 5},
}
# Fresh mutable values: one per use.
FRESH: dict[str, Callable[[], Any]] = {
    "bytearray": lambda: bytearray(b"xyz"), "tuple": lambda: (1, 2), "list": list,
    "dict": dict, "object": object, "buf:16": lambda: bytearray(16),
    "buf:0": bytearray, "buf:view": lambda: memoryview(bytearray(16)),
    "context": contextvars.copy_context,
}


class World:
    """One loop and everything the calls of one sequence use on it.

    Every token is turned into a *fresh* resource per use (a new socket
    pair, ...), created the same way for both loops, so that calls do not
    interfere through shared state the way a program's calls would not.
    ``close()`` releases all of it: nothing may leak from either loop.
    """

    def __init__(self, loop_factory: Callable[[], asyncio.AbstractEventLoop],
                 directory: str) -> None:
        self.loop = loop_factory()
        #: Where files and Unix sockets go: shared by the worlds of a test
        #: (each removes its own), a directory per world costs more than
        #: the calls.
        self.directory = directory
        self.reports: list[tuple[str, str]] = []
        self.logs: list[tuple[str, str, str]] = []
        self._closeables: list[Any] = []
        self._coros: list[Any] = []
        self._paths = 0
        self._files: list[str] = []
        self._listener: socket.socket | None = None
        self._udp_peer: socket.socket | None = None
        self._unix_listener: str | None = None
        self._executors: list[concurrent.futures.Executor] = []
        self._log_handler = _Recorder(self.logs)
        self.loop.set_exception_handler(self.record)

    # -- recording ----------------------------------------------------------

    def record(self, loop: Any, context: Any) -> None:
        if isinstance(context, dict):
            exc = context.get("exception")
            self.reports.append((report_message(str(context.get("message"))),
                                 type(exc).__name__ if exc is not None else ""))
        else:
            self.reports.append((normalize(repr(context)), "not a dict"))

    # -- tokens -------------------------------------------------------------

    def _keep(self, obj: Any) -> Any:
        self._closeables.append(obj)
        return obj

    def _path(self) -> str:
        self._paths += 1
        path = os.path.join(self.directory, f"{id(self):x}-{self._paths}")
        self._files.append(path)
        return path

    def _live_listener(self) -> socket.socket:
        if self._listener is None:
            self._listener = self._keep(socket.create_server(("127.0.0.1", 0), backlog=100))
        return self._listener

    def _stream_pair(self) -> socket.socket:
        a, b = socket.socketpair()
        self._keep(a)
        self._keep(b)
        b.sendall(b"ping")
        a.setblocking(False)
        return a

    def _tcp_pair(self) -> socket.socket:
        listener = self._live_listener()
        a = self._keep(socket.create_connection(listener.getsockname()))
        b, _ = listener.accept()
        self._keep(b)
        b.sendall(b"ping")
        a.setblocking(False)
        return a

    async def value(self, token: str) -> Any:
        if token in SCALARS:
            return SCALARS[token]
        if token in FRESH:
            return FRESH[token]()
        if token in PROTOCOL_FACTORIES:
            return PROTOCOL_FACTORIES[token]
        loop = self.loop
        if token == "coro":
            coro = coro_body()
            self._coros.append(coro)
            return coro
        if token == "raising-coro":
            coro = raising_coro()
            self._coros.append(coro)
            return coro
        if token == "future":
            fut = loop.create_future()
            fut.set_result(1)
            return fut
        if token == "task":
            coro = coro_body()
            self._coros.append(coro)
            factory = loop.get_task_factory()      # (a call may have set a bad one)
            loop.set_task_factory(None)
            try:
                return loop.create_task(coro)
            finally:
                loop.set_task_factory(factory)
        if token == "handler:record":
            return self.record
        if token == "delay:far":
            return 10_000
        if token == "when:now":
            return loop.time()
        if token == "when:far":
            return loop.time() + 10_000
        if token == "executor":
            executor = concurrent.futures.ThreadPoolExecutor(max_workers=1)
            self._executors.append(executor)
            return executor
        if token == "sock:stream":
            return self._stream_pair()
        if token == "fd:stream":
            return self._stream_pair().fileno()
        if token == "sock:tcp":
            return self._tcp_pair()
        if token == "sock:dgram":
            sock = self._keep(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            peer = self._keep(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
            peer.sendto(b"ping", sock.getsockname())
            return sock
        if token == "sock:listen":
            sock = self._keep(socket.create_server(("127.0.0.1", 0)))
            self._keep(socket.create_connection(sock.getsockname()))
            sock.setblocking(False)
            return sock
        if token == "sock:unix-listen":
            path = self._path()
            sock = self._keep(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            sock.bind(path)
            sock.listen(8)
            client = self._keep(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
            client.connect(path)
            sock.setblocking(False)
            return sock
        if token == "sock:fresh":
            sock = self._keep(socket.socket())
            sock.setblocking(False)
            return sock
        if token == "sock:fresh-unix":
            sock = self._keep(socket.socket(socket.AF_UNIX))
            sock.setblocking(False)
            return sock
        if token == "sock:closed":
            sock = socket.socket()
            sock.close()
            return sock
        if token == "sock:ssl":
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            return self._keep(context.wrap_socket(socket.socket(),
                                                  do_handshake_on_connect=False))
        if token == "transport-sock":
            transport = await self.value("transport")
            return transport.get_extra_info("socket").fileno()
        if token == "addr:live":
            return self._live_listener().getsockname()
        if token == "port:live":
            return self._live_listener().getsockname()[1]
        if token == "addr:v6":
            return ("::1", 80, 0, 0)
        if token == "addr:refused":
            # A port nothing listens on: bound, never listening.
            holder = self._keep(socket.socket())
            holder.bind(("127.0.0.1", 0))
            return holder.getsockname()
        if token == "addr:udp":
            if self._udp_peer is None:
                self._udp_peer = self._keep(socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                self._udp_peer.bind(("127.0.0.1", 0))
            return self._udp_peer.getsockname()
        if token in ("addr:unix", "path:listening"):
            if self._unix_listener is None:
                path = self._path()
                listener = self._keep(socket.socket(socket.AF_UNIX))
                listener.bind(path)
                listener.listen(100)
                self._unix_listener = path
            return self._unix_listener
        if token == "path:missing":
            return os.path.join(self.directory, "missing")
        if token == "path:fresh":
            return self._path()
        if token == "path:abstract":
            return f"\0treadle-diff-{os.getpid()}-{id(self)}-{self._paths}"
        if token.startswith("file:"):
            path = os.path.join(self.directory, "data")
            if not os.path.exists(path):
                with open(path, "wb") as f:
                    f.write(b"0123456789" * 10)
            if token == "file:empty":
                empty = os.path.join(self.directory, "empty")
                open(empty, "wb").close()
                return self._keep(open(empty, "rb"))
            f = self._keep(open(path, "r" if token == "file:r" else "rb"))
            if token == "file:closed":
                f.close()
            return f
        if token in ("pipe:r", "pipe:w"):
            r, w = os.pipe()
            rf = self._keep(open(r, "rb", buffering=0))
            wf = self._keep(open(w, "wb", buffering=0))
            return rf if token == "pipe:r" else wf
        if token == "sslctx":
            return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        if token == "protocol":
            return StreamProtocol()
        if token == "transport":
            transport, _ = await loop.create_connection(StreamProtocol,
                                                        sock=self._stream_pair())
            return self._keep(transport)
        if token == "ectx:handle":
            return {"message": "with handle", "handle": loop.call_soon(func)}
        raise KeyError(f"unknown token {token!r}")

    # -- performing calls ---------------------------------------------------

    def perform(self, call: Call) -> Outcome:
        self.reports.clear()
        self.logs.clear()
        loop = self.loop
        logger = logging.getLogger("asyncio")
        logger.addHandler(self._log_handler)
        try:
            if loop.is_closed():
                result = self._perform_closed(call)
            elif METHODS[call.method].where == "outside":
                result = self._perform_outside(call)
            else:
                result = self._run(self._perform_inside(call))
        finally:
            logger.removeHandler(self._log_handler)
        return Outcome(result, _runs(self.reports), _runs(self.logs))

    def _run(self, coro: Any) -> Any:
        try:
            return self.loop.run_until_complete(coro)
        except BaseException as exc:      # the loop itself failed
            return exc_outcome("loop", exc)

    async def _arguments(self, call: Call) -> tuple[list[Any], dict[str, Any]]:
        args = [await self.value(t) for t in call.args]
        kwargs = {k: await self.value(t) for k, t in call.kwargs}
        return args, kwargs

    async def _perform_inside(self, call: Call) -> tuple[Any, ...]:
        args, kwargs = await self._arguments(call)
        method = getattr(self.loop, call.method)
        result: tuple[Any, ...]
        try:
            value = method(*args, **kwargs)
        except Exception as exc:
            result = exc_outcome("call", exc)
        else:
            if METHODS[call.method].awaited and inspect.isawaitable(value):
                result = await self._await(value)
            else:
                self._keep_result(value)
                result = ("return", kind_of(value))
        del args, kwargs
        for _ in range(SETTLE_TURNS):
            await asyncio.sleep(0)
        return result

    async def _await(self, awaitable: Any) -> tuple[Any, ...]:
        # In a task of its own, waited for without cancelling it: a task
        # that cannot run (a bad context) must not hang the world.
        future = asyncio.ensure_future(awaitable)
        done, _ = await asyncio.wait([future], timeout=STEP_TIMEOUT)
        if not done:
            future.cancel()
            await asyncio.wait([future], timeout=STEP_TIMEOUT)
            return ("timeout",)
        try:
            value = future.result()
        except Exception as exc:
            return exc_outcome("await", exc)
        finally:
            del future
        self._keep_result(value)
        return ("return", kind_of(value))

    def _keep_result(self, value: Any) -> None:
        values = value if isinstance(value, tuple) else (value,)
        for v in values:
            if isinstance(v, (asyncio.BaseTransport, asyncio.AbstractServer, socket.socket)):
                self._keep(v)

    def _arguments_now(self, call: Call) -> tuple[list[Any], dict[str, Any]] | None:
        """The arguments, made without running the loop (None: a token
        needs the loop to run, such as a transport)."""
        arguments = self._arguments(call)
        try:
            arguments.send(None)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        except RuntimeError:
            return None
        arguments.close()
        return None

    def _perform_outside(self, call: Call) -> tuple[Any, ...]:
        made = self._arguments_now(call)
        if made is None:
            return ("needs a running loop",)
        args, kwargs = made
        method = getattr(self.loop, call.method)
        try:
            value = method(*args, **kwargs)
        except Exception as exc:
            return exc_outcome("call", exc)
        self._keep_result(value)
        return ("return", kind_of(value))

    def _perform_closed(self, call: Call) -> tuple[Any, ...]:
        """On a closed loop nothing can run: a coroutine is stepped once,
        which is as far as a program could get with it."""
        made = self._arguments_now(call)
        if made is None:
            return ("needs a running loop",)
        args, kwargs = made
        method = getattr(self.loop, call.method)
        try:
            value = method(*args, **kwargs)
        except Exception as exc:
            return exc_outcome("call", exc)
        if not inspect.iscoroutine(value):
            self._keep_result(value)
            return ("return", kind_of(value))
        try:
            value.send(None)
        except StopIteration as stop:
            return ("return", kind_of(stop.value))
        except Exception as exc:
            return exc_outcome("await", exc)
        finally:
            value.close()
        return ("suspended",)

    # -- closing --------------------------------------------------------------

    def close(self) -> None:
        loop = self.loop
        try:
            if not loop.is_closed():
                for step in (self._close_async, loop.shutdown_asyncgens,
                             loop.shutdown_default_executor):
                    coro = step()
                    try:
                        loop.run_until_complete(coro)
                    except Exception:
                        # The loop broke (asyncio's, after a difference
                        # ALLOWED stops the comparison): close what we can.
                        coro.close()
        finally:
            self._close_sync()
            loop.close()
            for coro in self._coros:
                coro.close()
            for executor in self._executors:
                executor.shutdown(wait=True)
            for path in self._files:
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    async def _close_async(self) -> None:
        for obj in reversed(self._closeables):
            if isinstance(obj, asyncio.AbstractServer):
                obj.close()
                if hasattr(obj, "close_clients"):
                    obj.close_clients()
                await obj.wait_closed()
            elif isinstance(obj, asyncio.SubprocessTransport):
                obj.close()
                for _ in range(500):
                    if obj.get_returncode() is not None:
                        break
                    await asyncio.sleep(0.01)
            elif isinstance(obj, asyncio.BaseTransport):
                obj.close()
        for _ in range(SETTLE_TURNS):
            await asyncio.sleep(0)
        for task in asyncio.all_tasks():
            if task is not asyncio.current_task():
                task.cancel()
        for _ in range(SETTLE_TURNS):
            await asyncio.sleep(0)

    def _close_sync(self) -> None:
        for obj in reversed(self._closeables):
            if isinstance(obj, asyncio.BaseTransport):
                if obj.is_closing():
                    continue
                try:
                    obj.close()
                except RuntimeError:
                    # The sequence closed the loop under it: release what
                    # the transport holds (both loops' transports call it
                    # _sock or _pipe).
                    for name in ("_sock", "_pipe"):
                        held = getattr(obj, name, None)
                        if held is not None:
                            held.close()
            elif hasattr(obj, "close"):
                try:
                    obj.close()
                except OSError:
                    pass
        self._closeables.clear()


def _runs(items: list[Any]) -> list[Any]:
    """*items* with each run of equal ones as one: a reader callback that
    fails is reported once per loop turn, and how many turns a call waits
    depends on timing."""
    return [item for i, item in enumerate(items) if i == 0 or items[i - 1] != item]


class _Recorder(logging.Handler):
    def __init__(self, into: list[tuple[str, str, str]]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if re.match(r"Executing .* took", message):
            return          # debug mode's slow-callback warning: timing
        exc = record.exc_info[0].__name__ if record.exc_info and record.exc_info[0] else ""
        self.into.append((record.levelname, report_message(message.splitlines()[0]), exc))


# ----------------------------------------------------------------------
# calls and runs
# ----------------------------------------------------------------------

@dataclass(frozen=True)
class Call:
    method: str
    args: tuple[str, ...] = ()
    kwargs: tuple[tuple[str, str], ...] = ()
    #: What is wrong with the call's signature, if anything ("" if not).
    signature: str = ""

    def __repr__(self) -> str:
        parts = list(self.args) + [f"{k}={v}" for k, v in self.kwargs]
        return f"{self.method}({', '.join(parts)})"


@dataclass
class Run:
    outcomes: list[Outcome]
    warnings: list[tuple[str, str]]


def run_calls(loop_factory: Callable[[], asyncio.AbstractEventLoop],
              calls: list[Call], directory: str) -> Run:
    """Perform *calls* in order on a new loop; close everything after, and
    collect what was left to the garbage collector (its warnings count)."""
    outcomes: list[Outcome] = []
    # Only what the run allocates is collected at the end: a full
    # collection of the test process's heap costs more than the calls.
    gc.freeze()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            signals = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR1, signal.SIGUSR2)}
            world = World(loop_factory, directory)
            try:
                for call in calls:
                    outcomes.append(world.perform(call))
            finally:
                world.close()
                del world
                gc.collect()
                for sig, handler in signals.items():
                    signal.signal(sig, handler)
    finally:
        gc.unfreeze()
    seen = [(w.category.__name__, normalize(str(w.message))) for w in caught]
    return Run(outcomes, seen)


# ----------------------------------------------------------------------
# comparing
# ----------------------------------------------------------------------

_SIGNATURE_ERROR = re.compile(
    r"(\w+)\(\) (got an unexpected keyword argument '(\w+)'"
    r"|missing \d+ required (?:positional|keyword-only) arguments?: '(\w+)'"
    r"|takes \d+ positional arguments? but \d+ (?:was|were) given"
    r"|got multiple values for argument '(\w+)'"
    r"|got some positional-only arguments passed as keyword arguments)")


def signature_error(outcome: Outcome) -> tuple[str, str | None] | None:
    """(method, parameter named) when *outcome* is Python's TypeError for
    a call that does not fit the signature."""
    result = outcome.result
    if result[0] != "raise" or result[2] != "TypeError":
        return None
    m = _SIGNATURE_ERROR.match(result[3])
    if m is None:
        return None
    return m.group(1), m.group(3) or m.group(4) or m.group(5)


def native_signature_error(message: str, method: str, param: str | None) -> bool:
    """CPython's message for a call that does not fit the signature of a
    function implemented natively (treadle's compiled kernel, asyncio's C
    Future and Task): it names the method, and the parameter or how many
    arguments it takes ("get_debug() takes at most 0 keyword arguments")."""
    if f"{method}()" not in message:
        return False
    return (param is None or f"'{param}'" in message
            or re.search(r"takes (at most|exactly|no) .*arguments?", message) is not None)


@dataclass(frozen=True)
class Allowance:
    """One documented difference (README, "Where treadle differs from
    asyncio on purpose"): *applies(call, asyncio, treadle)* recognises it.
    *stop*: the loops' states differ after it, so the rest of the sequence
    is not compared."""
    reason: str
    applies: Callable[[Call, Outcome, Outcome], bool]
    stop: bool = False


def _raised(outcome: Outcome, type_name: str) -> bool:
    return outcome.result[0] == "raise" and outcome.result[2] == type_name


def _returned(outcome: Outcome) -> bool:
    return outcome.result[0] == "return"


def _arg(call: Call, name: str, position: int) -> str | None:
    for key, token in call.kwargs:
        if key == name:
            return token
    if position < len(call.args):
        return call.args[position]
    return None


_CALLBACK_METHODS = {"call_soon": 0, "call_soon_threadsafe": 0, "call_later": 1,
                     "call_at": 1}
_NUMBERS = {"int:0", "int:1", "int:-1", "int:7", "int:big", "float:0.5", "float:-0.5",
            "float:inf", "float:nan", "true", "false", "when:now", "when:far",
            "delay:far", "int:4", "int:6", "int:17", "int:100", "int:100000"}
_CALLABLES = {"func", "raiser", "corofunc", "handler:record", "handler:raises",
              "taskfactory", "pf:protocol", "pf:buffered", "pf:datagram",
              "pf:subprocess", "pf:none", "pf:raises", "pf:object",
              "pf:conn-made-raises"}


def _time_not_a_number(call: Call, a: Outcome, t: Outcome) -> bool:
    if call.method not in ("call_at", "call_later"):
        return False
    token = _arg(call, "when" if call.method == "call_at" else "delay", 0)
    return token not in _NUMBERS and _raised(t, "TypeError") and (
        _returned(a) or _raised(a, "TypeError"))


def _nan_time(call: Call, a: Outcome, t: Outcome) -> bool:
    if call.method not in ("call_at", "call_later"):
        return False
    token = _arg(call, "when" if call.method == "call_at" else "delay", 0)
    return token == "float:nan" and _returned(a) and _raised(t, "ValueError")


def _task_bad_context(call: Call, a: Outcome, t: Outcome) -> bool:
    token = _arg(call, "context", 99)
    return (call.method == "create_task" and token not in (None, "none", "context")
            and _raised(t, "TypeError") and "context" in t.result[3]
            and not _raised(a, "TypeError"))


def _spawn_without_protocol(call: Call, a: Outcome, t: Outcome) -> bool:
    token = _arg(call, "protocol_factory", 0)
    return (call.method in ("subprocess_exec", "subprocess_shell")
            and token in ("pf:none", "pf:object") and _raised(t, "AttributeError")
            and "connection_made" in t.result[3])


def _sendfile_huge_count(call: Call, a: Outcome, t: Outcome) -> bool:
    # (or fails on a huge offset instead, with its own OverflowError)
    return (call.method in ("sock_sendfile", "sendfile")
            and _arg(call, "count", 3) == "int:big" and _raised(a, "OverflowError")
            and (_returned(t) or _raised(t, "OverflowError")))


_CONNECTING = {"create_connection", "create_unix_connection", "connect_accepted_socket",
               "create_datagram_endpoint", "connect_read_pipe", "connect_write_pipe"}
_FALSE = {None, "none", "false", "int:0", "str:", "float:0.0"}


def _no_protocol_before_tls(call: Call, a: Outcome, t: Outcome) -> bool:
    return (call.method in _CONNECTING
            and _arg(call, "protocol_factory", 0) in ("pf:none", "pf:object")
            and _arg(call, "ssl", 99) not in _FALSE
            and _raised(t, "AttributeError") and "connection_made" in t.result[3])


def _half_made_transport(call: Call, a: Outcome, t: Outcome) -> bool:
    # Both fail alike, but asyncio's half-made transport stays registered
    # for the fd until it is collected: later calls on a socket that gets
    # the same fd number see it ("is used by transport").
    return (call.method in _CONNECTING | {"create_server", "create_unix_server"}
            and _arg(call, "protocol_factory", 0) in ("pf:none", "pf:object")
            and a.result == t.result)


def _signal_not_callable(call: Call, a: Outcome, t: Outcome) -> bool:
    # (asyncio accepts it, or fails later: SIGKILL cannot be caught)
    token = _arg(call, "callback", 1)
    return (call.method == "add_signal_handler" and token not in _CALLABLES
            and (_returned(a) or _raised(a, "RuntimeError")) and _raised(t, "TypeError"))


def _named_only_when_asked(call: Call, a: Outcome, t: Outcome) -> bool:
    # 3.13.0-3.13.2's asyncio calls set_name(None) on whatever the task
    # factory returned (gh-130033, a regression CPython fixed): with a
    # factory that returns no task it fails there, treadle a step later.
    return (not PY314 and _raised(a, "AttributeError") and "'set_name'" in a.result[3]
            and _raised(t, "AttributeError"))


#: (method, parameter, position or None): whether this Python's asyncio
#: has it.
_NEWER_PARAMETERS = {
    ("create_connection", "all_errors", None): PY312,
    ("create_server", "keep_alive", None): PY313,
    ("create_unix_server", "cleanup_socket", None): PY313,
    ("create_task", "eager_start", None): PY314,
    ("shutdown_default_executor", "timeout", 0): PY312,
}


def _newer_parameter(call: Call, a: Outcome, t: Outcome) -> bool:
    if signature_error(a) is None or signature_error(t) is not None:
        return False
    for (method, name, position), present in _NEWER_PARAMETERS.items():
        if method == call.method and not present and (
                _arg(call, name, 99) is not None
                or (position is not None and len(call.args) > position)):
            return True
    return False


def _native_signature(call: Call, a: Outcome, t: Outcome) -> bool:
    sig = signature_error(a)
    return (sig is not None and _raised(t, "TypeError")
            and native_signature_error(t.result[3], call.method, sig[1]))


#: The documented differences: the test's only allowance.
ALLOWED: tuple[Allowance, ...] = (
    Allowance("call_later/call_at with a NaN delay or time raise ValueError",
              _nan_time, stop=True),
    Allowance("call_later/call_at with a delay or time that is not a number raise "
              "TypeError at the call (asyncio's loop fails on its next turn)",
              _time_not_a_number, stop=True),
    Allowance("create_task() refuses a context that is not a contextvars.Context "
              "(asyncio's task takes it and can never run)", _task_bad_context, stop=True),
    Allowance("subprocess_exec/subprocess_shell check what the protocol factory "
              "returned before they spawn the child (asyncio spawns it, then fails, or "
              "hangs on 3.11 and 3.12)", _spawn_without_protocol, stop=True),
    Allowance("a protocol factory that returns no protocol fails the call before the "
              "TLS arguments are looked at (asyncio finds out after the handshake)",
              _no_protocol_before_tls, stop=True),
    Allowance("a protocol factory that returns no protocol leaves no half-made "
              "transport behind", _half_made_transport, stop=True),
    Allowance("sock_sendfile/sendfile with a count larger than os.sendfile takes send "
              "the file (asyncio raises OverflowError)", _sendfile_huge_count),
    Allowance("add_signal_handler rejects a non-callable at once", _signal_not_callable,
              stop=True),
    Allowance("parameters of newer Pythons are accepted on older ones", _newer_parameter,
              stop=True),
    Allowance("up to 3.13 a task from a task factory is named only when create_task() "
              "is given a name, as on 3.11 and 3.12 (3.13.0-3.13.2 rename it 'None', "
              "gh-130033)", _named_only_when_asked, stop=True),
    Allowance("the compiled kernel's methods reject a call that does not fit their "
              "signature with CPython's message for native functions", _native_signature),
)


def differences(calls: list[Call], a: Run, t: Run) -> list[str]:
    """What treadle did differently from asyncio, beyond ALLOWED."""
    found: list[str] = []
    for call, oa, ot in zip(calls, a.outcomes, t.outcomes):
        allowance = next((al for al in ALLOWED if al.applies(call, oa, ot)), None)
        if allowance is not None:
            if allowance.stop:
                return found
            continue
        if oa.result != ot.result and not _clearer_message(call, oa, ot):
            found.append(f"{call!r}:\n    asyncio: {oa}\n    treadle: {ot}")
            return found        # later calls see a different state
        if oa.reports != ot.reports or oa.logs != ot.logs:
            found.append(f"{call!r} (reported):\n    asyncio: {oa}\n    treadle: {ot}")
            return found
    # Which warnings, not how many: a reader callback that makes a
    # coroutine warns once per loop turn, and turns depend on timing.
    extra = sorted(set(t.warnings) - set(a.warnings))
    missing = sorted(w for w in set(a.warnings) - set(t.warnings) if not _asyncio_leak(w))
    if extra or missing:
        found.append(f"warnings:\n    asyncio only: {missing}\n    treadle only: {extra}")
    return found


def _asyncio_leak(warning: tuple[str, str]) -> bool:
    """asyncio leaves a socket or a half-made transport to the garbage
    collector where a call fails; treadle closes what it opened and makes
    nothing before it knows the call succeeds (README: nothing leaks)."""
    return warning[0] == "ResourceWarning" and warning[1].startswith("unclosed")


def parameters_named(call: Call, message: str) -> bool:
    names = {name for name, _ in call.kwargs}
    names.update(p.name for p in METHODS[call.method].params[:len(call.args)])
    return any(re.search(rf"\b{name}\b", message) for name in names)


def _clearer_message(call: Call, a: Outcome, t: Outcome) -> bool:
    """asyncio's answer, or a clearer one: the same exception type, raised
    at the same point, with a message that names the parameter where
    asyncio's names none (``_ipaddr_info() takes from 5 to 7 positional
    arguments``)."""
    ra, rt = a.result, t.result
    return (ra[0] == rt[0] == "raise" and ra[1:3] == rt[1:3]
            and not parameters_named(call, ra[3]) and parameters_named(call, rt[3]))
