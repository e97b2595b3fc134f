"""The load generator of ``treadle bench``: a client process for the echo,
HTTP and idle-connection workloads.

Owns: opening the client connections, driving request/response traffic at
one message in flight per connection, and counting what came back in a
measured window.
Never: imports treadle or any event loop.  It is run as a script with
``python -I`` (stdlib only, ``selectors`` and non-blocking sockets in one
thread), so it is byte-for-byte the same program whatever loop the server
under test runs; a faster server can only be measured as faster.

It prints one JSON line on stdout.  ``cpu_util`` is this process's CPU time
over the window's wall time: near 1.0 means the client used a whole core
and the result may be client-bound.

    python -I _loadgen.py echo --port P [--conns 10 --size 1024 --duration 2 --warmup 0.5]
    python -I _loadgen.py http --port P [--conns 50 ...]
    python -I _loadgen.py idle --port P --conns N
"""

from __future__ import annotations

import argparse
import json
import resource
import select
import selectors
import socket
import struct
import sys
import time
from typing import Any, Callable

#: Give up when a connection has made no progress for this long.
STALL_S = 10.0
#: At most this many latency samples are kept (memory bound on long runs).
MAX_SAMPLES = 1_000_000


class Conn:
    """One client connection: what is left to send, what came back."""

    __slots__ = ("sock", "fd", "out", "got", "t0", "buf", "writing")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.out: memoryview | None = None
        self.got = 0
        self.t0 = 0.0
        self.buf = bytearray()
        self.writing = False


class Poller:
    """Readiness of the client's sockets: ``select.epoll`` where there is
    one (its events need no per-event object, which keeps the client cheap),
    else ``selectors``."""

    def __init__(self) -> None:
        self._ep = select.epoll() if hasattr(select, "epoll") else None
        self._sel = selectors.DefaultSelector() if self._ep is None else None

    def register(self, fd: int, write: bool) -> None:
        if self._ep is not None:
            self._ep.register(fd, select.EPOLLIN | (select.EPOLLOUT if write else 0))
        else:
            assert self._sel is not None
            self._sel.register(fd, selectors.EVENT_READ
                               | (selectors.EVENT_WRITE if write else 0))

    def modify(self, fd: int, write: bool) -> None:
        if self._ep is not None:
            self._ep.modify(fd, select.EPOLLIN | (select.EPOLLOUT if write else 0))
        else:
            assert self._sel is not None
            self._sel.modify(fd, selectors.EVENT_READ
                             | (selectors.EVENT_WRITE if write else 0))

    def poll(self, timeout: float) -> list[tuple[int, bool, bool]]:
        """[(fd, readable, writable)]; errors and hang-ups count as readable
        (the read then reports them)."""
        if self._ep is not None:
            return [(fd, bool(ev & _EP_READ), bool(ev & select.EPOLLOUT))
                    for fd, ev in self._ep.poll(timeout)]
        assert self._sel is not None
        return [(int(key.fd), bool(ev & selectors.EVENT_READ),
                 bool(ev & selectors.EVENT_WRITE)) for key, ev in self._sel.select(timeout)]

    def close(self) -> None:
        if self._ep is not None:
            self._ep.close()
        if self._sel is not None:
            self._sel.close()


_EP_READ = (select.EPOLLIN | select.EPOLLERR | select.EPOLLHUP) if hasattr(select, "epoll") else 0


def _chunked_length(buf: bytearray, pos: int) -> int:
    """The length of a response whose chunked body starts at *pos*, up to
    the empty line after the last chunk's trailers; 0 if incomplete."""
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return 0
        size = int(bytes(buf[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            break
        pos += size + 2                 # the data and its CRLF
        if len(buf) < pos:
            return 0
    while True:                         # trailers, then an empty line
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return 0
        if eol == pos:
            return pos + 2
        pos = eol + 2


def parse_response(buf: bytearray) -> tuple[int, int]:
    """Frame one HTTP/1.1 response at the start of *buf*.

    Returns ``(length, status)``: *length* 0 when the response is not
    complete yet.  Framed by Content-Length, or chunked (uvicorn chunks a
    body sent without a length); a response with neither is a protocol
    error.
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return 0, 0
    head = bytes(buf[:end]).split(b"\r\n")
    parts = head[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"bad status line {head[0]!r}")
    status = int(parts[1])
    clen = -1
    for line in head[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            clen = int(value.strip())
        elif name == b"transfer-encoding" and value.strip().lower() == b"chunked":
            return _chunked_length(buf, end + 4), status
    if clen < 0:
        raise ValueError("response without Content-Length")
    total = end + 4 + clen
    if len(buf) < total:
        return 0, status
    return total, status


def _connect(host: str, port: int) -> socket.socket:
    s = socket.create_connection((host, port), timeout=STALL_S)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setblocking(False)
    return s


def _percentile_ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values.sort()
    return round(values[min(len(values) - 1, int(q * len(values)))] * 1000.0, 3)


#: Receive buffer shared by all connections (the client handles one at a time).
RECV_BYTES = 262144


def drive(host: str, port: int, conns: int, request: bytes, warmup: float,
          duration: float,
          on_data: Callable[[Conn, memoryview], int],
          requests: int = 0) -> dict[str, Any]:
    """Keep one *request* in flight on each of *conns* connections.

    *on_data(conn, view)* gets what one read returned (a view of a shared
    buffer, valid only during the call) and returns how many responses it
    completed (0 or 1: one request is in flight); each one starts the next
    request.  Round trips are counted between ``warmup`` and
    ``warmup + duration`` seconds after the connections are open.

    With *requests* > 0 the run is a fixed amount of work instead: exactly
    that many round trips in all, no warm-up, however long they take (how
    ``treadle.bench.instructions`` counts a server's instructions per
    request, with the server running under valgrind).
    """
    poller = Poller()
    clients = [Conn(_connect(host, port)) for _ in range(conns)]
    by_fd = {c.fd: c for c in clients}
    rbuf = bytearray(RECV_BYTES)
    rview = memoryview(rbuf)
    done = 0
    samples: list[float] = []
    in_window = False
    perf = time.perf_counter
    size = len(request)

    def send(c: Conn, data: memoryview | bytes) -> None:
        try:
            n = c.sock.send(data)
        except BlockingIOError:
            n = 0
        if n < len(data):
            c.out = memoryview(data)[n:]
            if not c.writing:
                poller.modify(c.fd, True)
                c.writing = True
        else:
            c.out = None
            if c.writing:
                poller.modify(c.fd, False)
                c.writing = False

    for c in clients:
        poller.register(c.fd, False)
    start = perf()
    for c in clients:
        c.t0 = start
        send(c, request)
    if requests:
        warmup, duration = 0.0, float("inf")
    sent = conns
    t_window = start + warmup
    t_end = t_window + duration
    done0, cpu0, w0 = 0, 0.0, t_window
    last_progress = start
    try:
        while True:
            now = perf()
            if not in_window and now >= t_window:
                in_window = True
                done0, cpu0, w0 = done, time.process_time(), now
            if now >= t_end:
                break
            # Wake at the next boundary of the window, so it is timed exactly.
            events = poller.poll(min((t_end if in_window else t_window) - now, 0.5))
            if not events:
                if perf() - last_progress > STALL_S:
                    raise TimeoutError(f"no response for {STALL_S:.0f} s")
                continue
            for fd, readable, writable in events:
                c = by_fd[fd]
                if writable and c.out is not None:
                    send(c, c.out)
                if readable:
                    try:
                        n = c.sock.recv_into(rbuf)
                    except BlockingIOError:
                        continue
                    if not n:
                        raise ConnectionError("the server closed a connection")
                    if on_data(c, rview[:n]):
                        t = perf()
                        done += 1
                        if in_window and len(samples) < MAX_SAMPLES:
                            samples.append(t - c.t0)
                        c.t0 = t
                        last_progress = t
                        if requests:
                            if done >= requests:
                                t_end = t
                                break
                            if sent >= requests:
                                continue
                            sent += 1
                        send(c, request)
        w1, cpu1 = perf(), time.process_time()
    finally:
        for c in clients:
            c.sock.close()
        poller.close()
    seconds = w1 - w0
    n = done - done0
    if n == 0:
        raise TimeoutError(f"no response in the {seconds:.2f} s measured window")
    return {"ops": n, "seconds": seconds, "ops_per_sec": n / seconds if seconds else 0.0,
            "total_ops": done, "cpu_util": round((cpu1 - cpu0) / seconds, 3),
            "lat_ms_p50": _percentile_ms(samples, 0.50),
            "lat_ms_p99": _percentile_ms(samples, 0.99),
            "request_bytes": size, "python": sys.version.split()[0]}


def run_echo(a: argparse.Namespace) -> dict[str, Any]:
    size = a.size

    def on_data(c: Conn, data: memoryview) -> int:
        c.got += len(data)
        if c.got < size:
            return 0
        if c.got > size:
            raise ValueError(f"echo returned {c.got} bytes for {size} sent")
        c.got = 0
        return 1

    res = drive(a.host, a.port, a.conns, b"x" * size, a.warmup, a.duration, on_data,
                a.requests)
    res["mib_per_sec"] = round(res["ops_per_sec"] * size * 2 / 2**20, 1)
    return res


HTTP_REQUEST = (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                b"User-Agent: treadle-bench\r\nAccept: */*\r\n\r\n")


def run_http(a: argparse.Namespace) -> dict[str, Any]:
    bad = [0]

    def on_data(c: Conn, data: memoryview) -> int:
        c.buf += data
        length, status = parse_response(c.buf)
        if not length:
            return 0
        if len(c.buf) > length:
            raise ValueError("a response arrived that was not asked for")
        del c.buf[:length]
        if status != 200:
            bad[0] += 1
        return 1

    res = drive(a.host, a.port, a.conns, HTTP_REQUEST, a.warmup, a.duration, on_data,
                a.requests)
    if bad[0]:
        raise ValueError(f"{bad[0]} responses were not 200 OK")
    return res


def run_idle(a: argparse.Namespace) -> dict[str, Any]:
    """Open *conns* connections that then stay idle until stdin closes.

    Connections are opened in batches and each waits for the server's
    one-byte greeting, so the server's accept queue never overflows (a
    dropped SYN would cost a one-second retransmit) and "ready" means the
    server has really accepted every connection."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.conns + 64
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    socks: list[socket.socket] = []
    t0 = time.perf_counter()
    try:
        while len(socks) < a.conns:
            batch = []
            for _ in range(min(a.batch, a.conns - len(socks))):
                s = socket.create_connection((a.host, a.port), timeout=STALL_S)
                batch.append(s)
                socks.append(s)
            for s in batch:
                if s.recv(1) != b"!":
                    raise ConnectionError("no greeting from the server")
        elapsed = time.perf_counter() - t0
        print(json.dumps({"ready": len(socks)}), flush=True)
        sys.stdin.read()            # hold them until the server has measured
    finally:
        for s in socks:
            # Reset rather than close: no TIME_WAIT left behind by thousands
            # of connections, so runs do not use up the ephemeral ports.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            s.close()
    return {"ops": len(socks), "connect_s": round(elapsed, 3)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="_loadgen.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["echo", "http", "idle"])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=10)
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--warmup", type=float, default=0.5)
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--requests", type=int, default=0,
                   help="a fixed number of round trips instead of a timed window")
    a = p.parse_args(argv)
    run = {"echo": run_echo, "http": run_http, "idle": run_idle}[a.mode]
    try:
        res = run(a)
    except Exception as exc:  # reported as data; the server child decides
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
