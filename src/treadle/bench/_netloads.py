"""The I/O workloads: echo servers (sockets, streams, Protocol), the HTTP
server, and idle connections, each on the loop under test, loaded by the
separate ``_loadgen.py`` process.

Owns: the servers and the plumbing that starts the load generator, waits
for it, and turns its report into a result.
Never: generates load in the server's process, or lets the load generator
outlive the workload (it is killed on every error path).  Only 127.0.0.1.

The server's CPU time is measured over the load generator's whole life and
reported as ``server_cpu_util``; the client reports its own ``cpu_util``.
On a 2-core machine a client near 1.0 is saturated: the server may be
faster than the number shows (the report flags such runs).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import time
from typing import Any, Awaitable, Callable, cast

from ._http import BODY, HEAD, HEAD_CLOSE, RESPONSE, HttpError, RequestFramer
from ._measure import Meter, peak_rss, raise_fd_limit, rss_probe
from ._workloads import LoopFactory, NotApplicable, Params, Result, run_on

RECV = 65536
POLL_S = 0.05
#: fds a server child needs besides its connections (loop, pipes, imports).
FD_MARGIN = 128

LOADGEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "_loadgen.py")

Closer = Callable[[], Awaitable[None]]


def loadgen_command(*args: str) -> list[str]:
    """The load generator's command line: the same interpreter, isolated
    (``-I``: no site-packages on the path, no PYTHON* variables), running
    the stdlib-only script, so it is the same program for every loop."""
    if os.path.exists(LOADGEN):
        return [sys.executable, "-I", LOADGEN, *args]
    return [sys.executable, "-m", "treadle.bench._loadgen", *args]


def _nodelay(sock: Any) -> None:
    if sock is None:
        return
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def _client_report(out: bytes, err: bytes, rc: int | None) -> dict[str, Any]:
    lines = out.decode(errors="replace").strip().splitlines()
    try:
        rep: dict[str, Any] = json.loads(lines[-1]) if lines else {}
    except ValueError:
        rep = {}
    if "error" in rep:
        raise RuntimeError(f"load generator: {rep['error']}")
    if rc != 0 or not rep:
        tail = err.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"load generator exited with status {rc}: {' | '.join(tail)}")
    return rep


def _outputs(proc: subprocess.Popen[bytes]) -> tuple[bytes, bytes]:
    """stdout and stderr of an exited load generator (a few lines each)."""
    out = proc.stdout.read() if proc.stdout is not None else b""
    err = proc.stderr.read() if proc.stderr is not None else b""
    return out, err


def _reap(proc: subprocess.Popen[bytes]) -> None:
    """Make sure the load generator is gone and its pipes are closed."""
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


async def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait for *proc* without blocking the loop (the loop under test keeps
    serving meanwhile; a 50 ms timer is the same cost on every loop)."""
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"load generator still running after {timeout:.0f} s")
        await asyncio.sleep(POLL_S)


async def _close_server(server: asyncio.Server) -> None:
    server.close()
    try:
        await asyncio.wait_for(server.wait_closed(), 1.0)
    except asyncio.TimeoutError:
        pass


# ------------------------------------------------------------------ echo


class EchoProtocol(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances: no isinstance.
        self.transport = cast(asyncio.Transport, transport)
        _nodelay(transport.get_extra_info("socket"))

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def _echo_protocol(loop: asyncio.AbstractEventLoop) -> tuple[int, Closer]:
    server = await loop.create_server(EchoProtocol, "127.0.0.1", 0, backlog=128)
    port: int = server.sockets[0].getsockname()[1]
    return port, lambda: _close_server(server)


async def _echo_streams(loop: asyncio.AbstractEventLoop) -> tuple[int, Closer]:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _nodelay(writer.get_extra_info("socket"))
        read, write, drain = reader.read, writer.write, writer.drain
        try:
            while True:
                data = await read(RECV)
                if not data:
                    break
                write(data)
                await drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, backlog=128)
    port: int = server.sockets[0].getsockname()[1]
    return port, lambda: _close_server(server)


async def _echo_sockets(loop: asyncio.AbstractEventLoop) -> tuple[int, Closer]:
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(128)
        lsock.setblocking(False)
    except BaseException:
        lsock.close()
        raise
    handlers: set[asyncio.Task[None]] = set()
    errors: list[BaseException] = []

    def finished(t: asyncio.Task[None]) -> None:
        handlers.discard(t)
        if not t.cancelled() and t.exception() is not None:
            errors.append(t.exception())  # type: ignore[arg-type]

    async def handle(sock: socket.socket) -> None:
        recv, sendall = loop.sock_recv, loop.sock_sendall
        try:
            while True:
                data = await recv(sock, RECV)
                if not data:
                    break
                await sendall(sock, data)
        except ConnectionError:
            pass
        finally:
            sock.close()

    async def acceptor() -> None:
        while True:
            sock, _ = await loop.sock_accept(lsock)
            sock.setblocking(False)
            _nodelay(sock)
            t = loop.create_task(handle(sock))
            handlers.add(t)
            t.add_done_callback(finished)

    acc = loop.create_task(acceptor())
    acc.add_done_callback(finished)

    async def close() -> None:
        acc.cancel()
        for t in list(handlers):
            t.cancel()
        await asyncio.gather(acc, *handlers, return_exceptions=True)
        lsock.close()
        if errors:
            # The server's own failure (say sock_accept missing) explains
            # the client's "no response" better than the client can.
            raise errors[0]

    return int(lsock.getsockname()[1]), close


_ECHO = {"protocol": _echo_protocol, "streams": _echo_streams, "sockets": _echo_sockets}


async def _serve_under_load(start: Callable[[asyncio.AbstractEventLoop],
                                            Awaitable[tuple[int, Closer]]],
                            client_args: list[str], timeout: float
                            ) -> tuple[Meter, dict[str, Any]]:
    loop = asyncio.get_running_loop()
    port, close = await start(loop)
    try:
        proc = subprocess.Popen(loadgen_command(*client_args, "--port", str(port)),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            with Meter() as m:
                await _wait_exit(proc, timeout)
            out, err = _outputs(proc)
        finally:
            _reap(proc)
    finally:
        await close()
    return m, _client_report(out, err, proc.returncode)


def _io_result(m: Meter, rep: dict[str, Any], **extra: Any) -> Result:
    total = int(rep["total_ops"])
    return {"value": rep["ops_per_sec"], "ops": rep["ops"], "wall_s": rep["seconds"],
            "cpu_s": m.cpu,
            # Server CPU per op over the client's whole life (incl. warm-up).
            "ops_per_cpu_s": total / m.cpu if m.cpu > 0 else None,
            "extra": {"server_cpu_util": round(m.cpu / m.wall, 3) if m.wall else None,
                      "client_cpu_util": rep["cpu_util"],
                      "lat_ms_p50": rep.get("lat_ms_p50"),
                      "lat_ms_p99": rep.get("lat_ms_p99"), **extra}}


def echo(factory: LoopFactory, p: Params) -> Result:
    api, size, conns = str(p["api"]), int(p["size"]), int(p["conns"])
    duration, warmup = float(p["duration"]), float(p["warmup"])
    args = ["echo", "--conns", str(conns), "--size", str(size),
            "--duration", str(duration), "--warmup", str(warmup)]
    m, rep = run_on(factory, _serve_under_load(_ECHO[api], args,
                                               duration + warmup + 30.0))
    return _io_result(m, rep, mib_per_s=rep.get("mib_per_sec"))


# ------------------------------------------------------------------ http


class HttpProtocol(asyncio.Protocol):
    """A minimal keep-alive HTTP/1.1 server: every request gets the same
    13-byte response; pipelined requests are answered in order.  With
    *split*, each response is written as two writes (head, then body), the
    shape of most real servers, which a loop should coalesce."""

    __slots__ = ("transport", "framer", "split")

    def __init__(self, split: bool) -> None:
        self.split = split
        self.framer = RequestFramer()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances: no isinstance.
        self.transport = cast(asyncio.Transport, transport)
        _nodelay(transport.get_extra_info("socket"))

    def data_received(self, data: bytes) -> None:
        try:
            n, close = self.framer.feed(data)
        except HttpError as exc:
            self.transport.write(exc.response())
            self.transport.close()
            return
        if n:
            write = self.transport.write
            if self.split:
                for i in range(n):
                    write(HEAD_CLOSE if close and i == n - 1 else HEAD)
                    write(BODY)
            elif close:
                write(RESPONSE * (n - 1) + HEAD_CLOSE + BODY)
            else:
                write(RESPONSE if n == 1 else RESPONSE * n)
        if close:
            self.transport.close()


def _http_protocol_server(split: bool) -> Callable[[asyncio.AbstractEventLoop],
                                                  Awaitable[tuple[int, Closer]]]:
    async def start(loop: asyncio.AbstractEventLoop) -> tuple[int, Closer]:
        server = await loop.create_server(lambda: HttpProtocol(split), "127.0.0.1", 0,
                                          backlog=1024)
        port: int = server.sockets[0].getsockname()[1]
        return port, lambda: _close_server(server)
    return start


def http(factory: LoopFactory, p: Params) -> Result:
    """An HTTP server under keep-alive load: the Protocol server
    (``app="protocol"``) or a framework's (``_FRAMEWORK``), loaded by wrk
    when it is installed, else by the Python load generator."""
    app, conns = str(p["app"]), int(p["conns"])
    duration, warmup = float(p["duration"]), float(p["warmup"])
    if app == "protocol":
        start = _http_protocol_server(bool(p["split"]))
    else:
        _require(app)
        start = _FRAMEWORK[app]
    wrk = shutil.which("wrk")
    if wrk is not None:
        m, rep = run_on(factory, _serve_under_wrk(start, wrk, conns, warmup, duration))
        return _io_result(m, rep, client="wrk")
    args = ["http", "--conns", str(conns), "--duration", str(duration),
            "--warmup", str(warmup)]
    m, rep = run_on(factory, _serve_under_load(start, args, duration + warmup + 30.0))
    return _io_result(m, rep, client="treadle's load generator",
                      note="wrk is not installed: loaded by treadle's Python load "
                           "generator instead")


def _wrk_seconds(seconds: float) -> str:
    # wrk takes whole seconds only.
    return f"{max(1, round(seconds))}s"


async def _run_wrk(wrk: str, port: int, conns: int, seconds: float,
                   timeout: float) -> tuple[dict[str, Any], float]:
    """One wrk run against *port*; its parsed report and its CPU seconds."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen(
        [wrk, "-t1", f"-c{conns}", f"-d{_wrk_seconds(seconds)}", "--latency",
         f"http://127.0.0.1:{port}/"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        await _wait_exit(proc, timeout)
        out, err = _outputs(proc)
    finally:
        _reap(proc)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return parse_wrk(out.decode(errors="replace"), err.decode(errors="replace"),
                     proc.returncode), cpu


async def _serve_under_wrk(start: Callable[[asyncio.AbstractEventLoop],
                                           Awaitable[tuple[int, Closer]]],
                           wrk: str, conns: int, warmup: float, duration: float
                           ) -> tuple[Meter, dict[str, Any]]:
    loop = asyncio.get_running_loop()
    port, close = await start(loop)
    try:
        if warmup >= 0.5:
            # (wrk runs whole seconds: a shorter warm-up, as in --quick
            # mode, is left out rather than stretched to one.)
            await _run_wrk(wrk, port, conns, warmup, warmup + 30.0)
        with Meter() as m:
            rep, client_cpu = await _run_wrk(wrk, port, conns, duration, duration + 30.0)
    finally:
        await close()
    rep["cpu_util"] = round(client_cpu / m.wall, 3) if m.wall else None
    return m, rep


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _wrk_ms(text: str) -> float:
    for unit in ("us", "ms", "s", "m"):
        if text.endswith(unit):
            return round(float(text[:-len(unit)]) * _WRK_UNITS[unit], 3)
    return float(text)


def parse_wrk(out: str, err: str, rc: int | None) -> dict[str, Any]:
    """wrk's text report as the load generator's JSON fields."""
    total = seconds = None
    lat: dict[str, float] = {}
    bad = errors = 0
    for line in out.splitlines():
        words = line.split()
        if len(words) >= 4 and words[1] == "requests" and words[2] == "in":
            total = int(words[0])
            seconds = _wrk_ms(words[3].rstrip(",")) / 1e3
        elif len(words) == 2 and words[0] in ("50%", "99%"):
            lat[words[0]] = _wrk_ms(words[1])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            bad = int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            errors = sum(int(w.rstrip(",")) for w in words[2:] if w.rstrip(",").isdigit())
    if rc != 0 or total is None or not seconds:
        tail = " | ".join((err or out).strip().splitlines()[-3:])
        raise RuntimeError(f"wrk exited with status {rc}: {tail}")
    if bad:
        raise ValueError(f"{bad} responses were not 2xx/3xx")
    if not total:
        raise TimeoutError("no response in the measured window")
    rep: dict[str, Any] = {"ops": total, "total_ops": total, "seconds": seconds,
                           "ops_per_sec": total / seconds,
                           "lat_ms_p50": lat.get("50%"), "lat_ms_p99": lat.get("99%")}
    if errors:
        rep["socket_errors"] = errors
    return rep


# ------------------------------------------------------------ frameworks

# Real servers on the loop under test: aiohttp's hello world, uvicorn
# (httptools) with a bare ASGI hello world, and uvicorn with a Starlette
# JSON endpoint.  Each is optional: without its packages the workload is
# "n/a" with a note naming what to install.

FRAMEWORK_PACKAGES = {"aiohttp": ("aiohttp",), "uvicorn": ("uvicorn", "httptools"),
                      "starlette": ("uvicorn", "httptools", "starlette")}


def _require(app: str) -> None:
    import importlib.util
    missing = [m for m in FRAMEWORK_PACKAGES[app] if importlib.util.find_spec(m) is None]
    if missing:
        raise NotApplicable(f"needs {', '.join(missing)} (pip install {' '.join(missing)})")


async def _aiohttp_server(loop: asyncio.AbstractEventLoop) -> tuple[int, Closer]:
    from aiohttp import web

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text="Hello, World!")

    app = web.Application()
    app.router.add_get("/", hello)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
    await site.start()
    server = cast(Any, site)._server
    port: int = server.sockets[0].getsockname()[1]
    return port, runner.cleanup


async def _asgi_hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"Hello, World!"})


def _starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse({"message": "Hello, World!"})

    return Starlette(routes=[Route("/", hello)])


async def _uvicorn_server(app: Any) -> tuple[int, Closer]:
    import uvicorn

    # uvicorn's defaults otherwise (httptools, no access log): what
    # `uvicorn app:app --loop none --port 0` runs on whatever loop is
    # running.  (uvicorn binds the socket itself: a socket made with
    # socket.socket() has proto 0, and asyncio would not turn Nagle off on
    # its connections.)
    config = uvicorn.Config(app, host="127.0.0.1", port=0, loop="none",
                            http="httptools", lifespan="off", access_log=False,
                            log_level="warning", backlog=1024)
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.01)
    port: int = server.servers[0].sockets[0].getsockname()[1]

    async def close() -> None:
        server.should_exit = True
        await asyncio.wait_for(task, 5.0)

    return port, close


async def _uvicorn_hello(loop: asyncio.AbstractEventLoop) -> tuple[int, Closer]:
    return await _uvicorn_server(_asgi_hello)


async def _starlette_json(loop: asyncio.AbstractEventLoop) -> tuple[int, Closer]:
    return await _uvicorn_server(_starlette_app())


_FRAMEWORK = {"aiohttp": _aiohttp_server, "uvicorn": _uvicorn_hello,
              "starlette": _starlette_json}


# ------------------------------------------------------------ serving alone

def server_of(params: Params) -> tuple[Callable[[asyncio.AbstractEventLoop],
                                                Awaitable[tuple[int, Closer]]],
                                       list[str]]:
    """The server of an echo or HTTP workload (by its parameters) and the
    load generator's arguments that drive it (without ``--port``)."""
    conns = ["--conns", str(params["conns"])]
    if "api" in params:
        return _ECHO[str(params["api"])], ["echo", *conns, "--size", str(params["size"])]
    app = str(params["app"])
    if app == "protocol":
        return _http_protocol_server(bool(params["split"])), ["http", *conns]
    _require(app)
    return _FRAMEWORK[app], ["http", *conns]


async def serve_until_eof(start: Callable[[asyncio.AbstractEventLoop],
                                          Awaitable[tuple[int, Closer]]]) -> None:
    """Start a server, print its port on stdout, serve until stdin ends
    (``treadle.bench.instructions`` runs this under valgrind)."""
    loop = asyncio.get_running_loop()
    port, close = await start(loop)
    print(port, flush=True)
    ended = loop.create_future()

    def on_stdin() -> None:
        if not os.read(0, 4096) and not ended.done():
            ended.set_result(None)

    loop.add_reader(0, on_stdin)
    try:
        await ended
    finally:
        loop.remove_reader(0)
        await close()


# ------------------------------------------------------------------ memory


class IdleProtocol(asyncio.Protocol):
    """Greets with one byte (so the client knows it was accepted), then
    holds the connection without doing anything."""

    __slots__ = ("transport", "state")

    def __init__(self, state: list[Any]) -> None:
        self.state = state

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport instances: no isinstance.
        self.transport = cast(asyncio.Transport, transport)
        self.state.append(self.transport)
        self.transport.write(b"!")


def fd_budget(wanted: int) -> tuple[int, str | None]:
    """How many connections this process can hold: *wanted*, or fewer when
    the fd limit cannot be raised far enough (with a note saying so)."""
    limit = raise_fd_limit(wanted + FD_MARGIN)
    if limit >= wanted + FD_MARGIN:
        return wanted, None
    got = max(0, (limit - FD_MARGIN) // 100 * 100)
    return got, (f"lowered from {wanted:,} to {got:,} connections: the fd limit "
                 f"is {limit:,} and cannot be raised (ulimit -n)")


def mem_conns(factory: LoopFactory, p: Params) -> Result:
    """Resident memory per accepted, idle connection: the server's RSS with
    N connections open minus its RSS before the first, per connection."""
    n, note = fd_budget(int(p["conns"]))
    if n < 100:
        raise RuntimeError(note or "no fds available for connections")

    async def main() -> Result:
        loop = asyncio.get_running_loop()
        transports: list[Any] = []
        server = await loop.create_server(lambda: IdleProtocol(transports),
                                          "127.0.0.1", 0, backlog=1024)
        port = server.sockets[0].getsockname()[1]
        try:
            gc.collect()
            before, probe = rss_probe()
            proc = subprocess.Popen(
                loadgen_command("idle", "--port", str(port), "--conns", str(n)),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            try:
                deadline = time.monotonic() + 60.0 + n / 200
                while len(transports) < n:
                    if proc.poll() is not None:
                        out, err = _outputs(proc)
                        _client_report(out, err, proc.returncode)
                        raise RuntimeError(
                            f"load generator ended after {len(transports)} of {n} "
                            "connections")
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"only {len(transports)} of {n} "
                                           "connections were accepted")
                    await asyncio.sleep(0.02)
                gc.collect()
                after, _ = rss_probe()
                assert proc.stdin is not None
                proc.stdin.close()
                await _wait_exit(proc, 30.0)
                out, err = _outputs(proc)
                _client_report(out, err, proc.returncode)
            finally:
                _reap(proc)
        finally:
            for t in transports:
                t.abort()
            await _close_server(server)
        delta = after - before
        extra: dict[str, Any] = {"rss_delta_mib": round(delta / 2**20, 2),
                                 "peak_rss_mib": round(peak_rss() / 2**20, 1),
                                 "probe": probe, "conns": n}
        if note:
            extra["note"] = note
        return {"value": delta / n, "ops": n, "wall_s": None, "cpu_s": None,
                "extra": extra}

    return run_on(factory, main())
