"""Networking behaviour that changed in Python 3.14's asyncio, on both loops
(each test states the version rule it checks; treadle follows the running
version)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import socket
import ssl
import sys
import tempfile
import threading
import time
import weakref

import pytest

from ._util import RecordingProtocol, recv_until_eof, tls_contexts

PY314 = sys.version_info >= (3, 14)
DATA = b"abcdef" * 1000


def test_sock_sendfile_leaves_the_file_position_after_what_was_sent(run):
    # 3.14: the position ends at offset + bytes sent even when nothing was
    # sent (offset at the end of the file), native path and fallback alike.
    async def main():
        loop = asyncio.get_running_loop()
        results = []
        with tempfile.TemporaryFile() as f:
            f.write(DATA)
            f.flush()
            for offset in (0, len(DATA)):
                f.seek(123)
                a, b = socket.socketpair()
                a.setblocking(False)
                b.setblocking(False)
                with a, b:
                    reader = asyncio.create_task(recv_until_eof(b))
                    sent = await loop.sock_sendfile(a, f, offset)
                    a.shutdown(socket.SHUT_WR)
                    received = await reader
                results.append((sent, len(received), f.tell()))
        return results

    results = run(main())
    assert results[0] == (len(DATA), len(DATA), len(DATA))
    assert results[1][:2] == (0, 0)
    assert results[1][2] == (len(DATA) if PY314 else 123)


class _Unseekable:
    """A readable file-like object without ``seek`` (a pipe's reader, say)."""

    def __init__(self, data):
        self._data = data

    def readinto(self, view):
        n = min(len(view), len(self._data))
        view[:n] = self._data[:n]
        self._data = self._data[n:]
        return n


def test_sock_sendfile_of_a_file_without_seek(run):
    # 3.14: a file without seek is sent from where it is, offset or not;
    # before, a non-zero offset is seeked to (AttributeError here).
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)
        with a, b:
            reader = asyncio.create_task(recv_until_eof(b))
            try:
                sent = await loop.sock_sendfile(a, _Unseekable(DATA), 5)
            except AttributeError as exc:
                sent = f"AttributeError: {exc}"
            a.shutdown(socket.SHUT_WR)
            received = await reader
        return sent, len(received)

    sent, received = run(main())
    if PY314:
        assert (sent, received) == (len(DATA), len(DATA))
    else:
        assert "seek" in sent and received == 0


@pytest.mark.skipif(not PY314, reason="asyncio's thread-safe handles are 3.14's")
def test_threadsafe_handle_cancel_waits_for_a_running_callback(loop):
    started = threading.Event()
    log = []

    def callback():
        started.set()
        time.sleep(0.2)
        log.append("callback done")

    def other_thread():
        handle = loop.call_soon_threadsafe(callback)
        started.wait(10)
        # The callback is running: cancel() waits until it has finished.
        handle.cancel()
        log.append("cancel returned")
        loop.call_soon_threadsafe(loop.stop)

    t = threading.Thread(target=other_thread)
    t.start()
    loop.run_forever()
    t.join()
    assert log == ["callback done", "cancel returned"]


def test_threadsafe_handle_cancelled_before_it_runs(loop):
    ran = []
    handle = loop.call_soon_threadsafe(ran.append, 1)
    handle.cancel()
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert ran == [] and handle.cancelled()


@pytest.mark.skipif(sys.version_info < (3, 12),
                    reason="3.11's wait_closed() does not wait for connections")
def test_cancelling_serve_forever_and_a_hanging_client(run):
    # 3.14: cancelling serve_forever() closes the connections too, so
    # wait_closed() does not wait for a client that never hangs up.
    async def main():
        made = asyncio.Event()

        class Proto(asyncio.Protocol):
            def connection_made(self, transport):
                made.set()

        srv = await asyncio.get_running_loop().create_server(Proto, "127.0.0.1", 0)
        serving = asyncio.create_task(srv.serve_forever())
        await asyncio.sleep(0)
        client = socket.create_connection(srv.sockets[0].getsockname())
        try:
            await made.wait()
            serving.cancel()
            # (up to 3.13 the cancelled serve_forever() itself waits in
            # wait_closed() until the client hangs up)
            done, _ = await asyncio.wait([serving], timeout=5 if PY314 else 0.2)
            closed = bool(done)
            if not closed:
                client.close()
                await asyncio.gather(serving, return_exceptions=True)
            await srv.wait_closed()
            return closed
        finally:
            client.close()

    assert run(main()) is PY314


def test_start_tls_server_side_takes_bytes_a_stream_reader_buffered(run, loop_factory):
    # 3.14 (gh-142352): bytes the client sent right after its plain-text line
    # (the start of its handshake) may already be in the StreamReader's
    # buffer when the server calls start_tls(); they belong to TLS.  treadle
    # does so on every version (asyncio lost them before 3.14: README).
    if not PY314 and loop_factory is asyncio.new_event_loop:
        pytest.skip("asyncio before 3.14 loses those bytes")
    server_ctx, client_ctx = tls_contexts()

    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()

        async def handle(reader, writer):
            await reader.readline()                     # b"STARTTLS\n"
            await asyncio.sleep(0.2)                    # let the ClientHello arrive
            await writer.start_tls(server_ctx)
            got.set_result(await reader.readexactly(4))
            writer.close()

        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        host, port = srv.sockets[0].getsockname()[:2]
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"STARTTLS\n")
        await writer.drain()
        await writer.start_tls(client_ctx, server_hostname="localhost")
        writer.write(b"ping")
        result = await asyncio.wait_for(got, 10)
        writer.close()
        srv.close()
        await srv.wait_closed()
        return result

    assert run(main()) == b"ping"


@pytest.mark.skipif(not PY314, reason="3.14 keeps the shutdown timeout until connection_lost")
def test_tls_shutdown_timeout_covers_a_peer_that_sent_eof_and_stopped_reading(run):
    server_ctx, client_ctx = tls_contexts()
    filled = threading.Event()
    done = threading.Event()
    lsock = socket.create_server(("127.0.0.1", 0))

    def server():
        conn, _ = lsock.accept()
        with conn:
            tls_conn = server_ctx.wrap_socket(conn, server_side=True)
            filled.wait(10)
            tls_conn.shutdown(socket.SHUT_WR)      # EOF, and never read
            done.wait(10)

    t = threading.Thread(target=server)
    t.start()

    async def main():
        loop = asyncio.get_running_loop()
        tr, proto = await loop.create_connection(
            RecordingProtocol, *lsock.getsockname(), ssl=client_ctx,
            server_hostname="localhost", ssl_shutdown_timeout=0.1)
        try:
            chunk = bytes(1024 * 1024)
            for _ in range(64):
                if ("pause_writing", None) in proto.events:
                    break
                tr.write(chunk)
                await asyncio.sleep(0)
            filled.set()
            return await asyncio.wait_for(proto.done, 10)
        finally:
            filled.set()
            done.set()
            tr.abort()

    try:
        exc = run(main())
    finally:
        done.set()
        t.join()
        lsock.close()
    assert isinstance(exc, TimeoutError)


@pytest.mark.skipif(not PY314, reason="the no-cycle guarantee is 3.14's (gh-159049)")
def test_failed_start_tls_leaves_no_cycle(loop):
    server_ctx, _ = tls_contexts()
    client_ctx = ssl.create_default_context()          # does not trust the test CA
    lsock = socket.create_server(("127.0.0.1", 0))

    def server():
        conn, _ = lsock.accept()
        with conn:
            try:
                server_ctx.wrap_socket(conn, server_side=True)
            except OSError:
                pass

    t = threading.Thread(target=server)
    t.start()
    transports = []

    async def client():
        tr, proto = await loop.create_connection(asyncio.Protocol, *lsock.getsockname())
        transports.append(weakref.ref(tr))
        try:
            await loop.start_tls(tr, proto, client_ctx, server_hostname="localhost")
        except ssl.SSLCertVerificationError:
            pass

    gc.collect()
    gc.disable()
    try:
        loop.run_until_complete(client())
        alive = [ref() for ref in transports]
    finally:
        gc.enable()
        t.join()
        lsock.close()
    assert alive == [None]


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
def test_an_accepted_connection_keeps_its_context_whoever_resumes_reading(run, tls):
    # 3.15 (gh-140947): the callbacks of a connection a server accepted run
    # in the context it was accepted in; before, connection_lost() ran in a
    # copy of whatever context last resumed reading.
    var = contextvars.ContextVar("var")
    seen = []
    server_ctx, client_ctx = tls_contexts() if tls else (None, None)

    async def main():
        lost = asyncio.get_running_loop().create_future()
        tasks = set()

        class Proto(asyncio.Protocol):
            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                self.transport.pause_reading()
                task = asyncio.create_task(self.resume())
                tasks.add(task)

            async def resume(self):
                var.set("set by the task that resumed reading")
                await asyncio.sleep(0)
                self.transport.resume_reading()

            def connection_lost(self, exc):
                seen.append(var.get(None))
                lost.set_result(None)

        srv = await asyncio.get_running_loop().create_server(
            Proto, "127.0.0.1", 0, ssl=server_ctx)
        async with srv:
            _, writer = await asyncio.open_connection(
                *srv.sockets[0].getsockname()[:2], ssl=client_ctx,
                server_hostname="localhost" if tls else None)
            writer.write(b"hello")
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.close()
            await writer.wait_closed()
            await lost
            await asyncio.gather(*tasks)

    run(main())
    # (over TLS, resuming reading never re-registered the socket's reader)
    expected = (None if sys.version_info >= (3, 15) or tls
                else "set by the task that resumed reading")
    assert seen == [expected]
