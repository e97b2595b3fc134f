"""Helpers shared by the networking tests (not a test module)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any


class RecordingProtocol(asyncio.Protocol):
    """Records every callback, in order, with its argument."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.events: list[tuple[str, Any]] = []
        self.transport: Any = None
        self.data = bytearray()
        self.done: asyncio.Future[Any] = (loop or asyncio.get_running_loop()).create_future()
        self.eof_result: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append(("connection_made", None))

    def data_received(self, data: bytes) -> None:
        self.data += data
        self.events.append(("data_received", len(data)))

    def eof_received(self) -> Any:
        self.events.append(("eof_received", None))
        return self.eof_result

    def pause_writing(self) -> None:
        self.events.append(("pause_writing", None))

    def resume_writing(self) -> None:
        self.events.append(("resume_writing", None))

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append(("connection_lost", exc))
        if not self.done.done():
            self.done.set_result(exc)

    def names(self) -> list[str]:
        return [name for name, _ in self.events]


async def connected_pair(proto_factory: Any = RecordingProtocol) -> tuple[Any, Any, socket.socket]:
    """A transport on one end of a socketpair, the raw peer socket on the
    other (blocking off)."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    b.setblocking(False)
    tr, proto = await loop.create_connection(proto_factory, sock=a)
    return tr, proto, b


async def recv_exactly(sock: socket.socket, n: int) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    while len(out) < n:
        chunk = await loop.sock_recv(sock, n - len(out))
        if not chunk:
            break
        out += chunk
    return bytes(out)


async def recv_until_eof(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    out = bytearray()
    while True:
        chunk = await loop.sock_recv(sock, 1 << 16)
        if not chunk:
            return bytes(out)
        out += chunk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def closed_port() -> int:
    """A loopback port nobody listens on (connections are refused)."""
    return free_port()


def keycert_path() -> str | None:
    """CPython's self-signed test certificate for localhost (cert + key),
    or None when the interpreter ships without its test package."""
    import os
    try:
        import test
    except ImportError:
        return None
    root = os.path.dirname(test.__file__)
    for folder in (os.path.join(root, "certdata"), root):
        path = os.path.join(folder, "keycert.pem")
        if os.path.exists(path):
            return path
    return None


def tls_contexts() -> tuple[Any, Any]:
    """(server context, client context) for TLS tests; skips the test when
    no certificate is available."""
    import ssl

    import pytest
    path = keycert_path()
    if path is None:
        pytest.skip("no test certificate available")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(path)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    return server, client


async def hanging_address() -> tuple[Any, list[Any], tuple[str, int]]:
    """A loopback address whose connect() stays in progress: a listener
    with backlog 0 whose queue is already full (new SYNs are dropped).
    Returns (listener, fillers, address); the caller closes the sockets."""
    import errno
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    addr = listener.getsockname()
    fillers: list[Any] = []
    for _ in range(8):
        s = socket.socket()
        s.setblocking(False)
        fillers.append(s)
        err = s.connect_ex(addr)
        if err != errno.EINPROGRESS and err != 0:
            break
        await asyncio.sleep(0.05)
        if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0:
            try:
                s.getpeername()
                continue        # this one got in: fill more
            except OSError:
                pass
        return listener, fillers, addr
    return listener, fillers, addr
