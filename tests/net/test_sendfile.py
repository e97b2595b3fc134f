"""sock_sendfile and sendfile, zero-copy and fallback, on both loops."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import tempfile

import pytest

import treadle

from ._util import RecordingProtocol, recv_exactly, recv_until_eof, tls_contexts

DATA = bytes(range(256)) * 4096         # 1 MiB


@pytest.fixture
def data_file():
    with tempfile.TemporaryFile() as f:
        f.write(DATA)
        f.flush()
        f.seek(0)
        yield f


def _pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


async def _sock_sendfile_whole(data_file) -> None:
    """sock_sendfile() the whole of *data_file* to a peer that reads it all."""
    loop = asyncio.get_running_loop()
    a, b = _pair()
    with a, b:
        reader = asyncio.create_task(recv_exactly(b, len(DATA)))
        assert await loop.sock_sendfile(a, data_file) == len(DATA)
        assert await reader == DATA


def test_sock_sendfile_whole_file(run, data_file):
    async def main():
        await _sock_sendfile_whole(data_file)
        assert data_file.tell() == len(DATA)
    run(main())


def test_sock_sendfile_offset_and_count(run, data_file):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with a, b:
            reader = asyncio.create_task(recv_exactly(b, 1000))
            assert await loop.sock_sendfile(a, data_file, 5000, 1000) == 1000
            assert await reader == DATA[5000:6000]
            assert data_file.tell() == 6000
    run(main())


def test_sock_sendfile_falls_back_for_non_regular_files(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with a, b:
            f = io.BytesIO(DATA)
            reader = asyncio.create_task(recv_exactly(b, len(DATA) - 10))
            assert await loop.sock_sendfile(a, f, 10) == len(DATA) - 10
            assert await reader == DATA[10:]
            assert f.tell() == len(DATA)
            with pytest.raises(asyncio.SendfileNotAvailableError):
                await loop.sock_sendfile(a, io.BytesIO(b"x"), fallback=False)
    run(main())


def test_sock_sendfile_empty_file(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with a, b, tempfile.TemporaryFile() as f:
            assert await loop.sock_sendfile(a, f) == 0
    run(main())


def test_sock_sendfile_parameter_checks(run, data_file):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with a, b:
            with pytest.raises(ValueError, match="binary mode"):
                with tempfile.TemporaryFile("w") as text:
                    await loop.sock_sendfile(a, text)
            with pytest.raises(TypeError, match="count must be a positive integer"):
                await loop.sock_sendfile(a, data_file, 0, "1")
            with pytest.raises(ValueError, match="count must be a positive integer"):
                await loop.sock_sendfile(a, data_file, 0, 0)
            with pytest.raises(TypeError, match="offset must be a non-negative integer"):
                await loop.sock_sendfile(a, data_file, "0")
            with pytest.raises(ValueError, match="offset must be a non-negative integer"):
                await loop.sock_sendfile(a, data_file, -1)
        with socket.socket(type=socket.SOCK_DGRAM) as udp:
            udp.setblocking(False)
            with pytest.raises(ValueError, match="only SOCK_STREAM"):
                await loop.sock_sendfile(udp, data_file)
    run(main())


def test_sock_sendfile_peer_gone_mid_transfer(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with tempfile.TemporaryFile() as f:
            f.write(b"x" * (16 * 1024 * 1024))
            f.flush()
            f.seek(0)
            with a:
                task = asyncio.create_task(loop.sock_sendfile(a, f))
                await asyncio.sleep(0.01)
                b.close()
                with pytest.raises(OSError):
                    await task
                # The file position says how much was sent.
                assert 0 < f.tell() < 16 * 1024 * 1024
    run(main())


async def _transport_and_peer():
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    b.setblocking(False)
    tr, proto = await loop.create_connection(RecordingProtocol, sock=a)
    return tr, proto, b


def test_sendfile_over_a_transport(run, data_file):
    async def main():
        loop = asyncio.get_running_loop()
        tr, proto, peer = await _transport_and_peer()
        tr.write(b"header:")
        reader = asyncio.create_task(recv_exactly(peer, 7 + len(DATA) + 7))
        assert await loop.sendfile(tr, data_file) == len(DATA)
        tr.write(b":footer")
        assert await reader == b"header:" + DATA + b":footer"
        assert tr.is_reading()
        tr.close()
        await proto.done
        peer.close()
    run(main())


def test_write_during_sendfile_is_refused(run, data_file):
    async def main():
        loop = asyncio.get_running_loop()
        tr, proto, peer = await _transport_and_peer()
        task = asyncio.create_task(loop.sendfile(tr, data_file))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="sendfile is in progress"):
            tr.write(b"x")
        received = await recv_exactly(peer, len(DATA))
        assert await task == len(DATA)
        assert received == DATA
        tr.close()
        await proto.done
        peer.close()
    run(main())


def test_sendfile_fallback_over_tls(run, data_file):
    server_ctx, client_ctx = tls_contexts()

    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()

        async def handle(reader, writer):
            got.set_result(await reader.readexactly(len(DATA)))
            writer.close()
        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        async with server:
            tr, proto = await loop.create_connection(
                RecordingProtocol, "127.0.0.1", port, ssl=client_ctx,
                server_hostname="localhost")
            with pytest.raises(RuntimeError, match="fallback is disabled"):
                await loop.sendfile(tr, data_file, fallback=False)
            assert await loop.sendfile(tr, data_file) == len(DATA)
            assert await got == DATA
            tr.close()
            await proto.done
    run(main())


def test_sendfile_errors(run, data_file):
    async def main():
        loop = asyncio.get_running_loop()
        tr, proto, peer = await _transport_and_peer()
        tr.close()
        with pytest.raises(RuntimeError, match="Transport is closing"):
            await loop.sendfile(tr, data_file)
        await proto.done
        peer.close()
        with pytest.raises(RuntimeError, match="sendfile is not supported for transport"):
            class Bare(asyncio.Transport):
                def is_closing(self):
                    return False
            await loop.sendfile(Bare(), data_file)
    run(main())


def test_sock_sendfile_on_a_transports_socket_is_refused_when_it_must_wait(run):
    async def main():
        loop = asyncio.get_running_loop()
        sock, peer = socket.socketpair()
        peer.setblocking(False)
        tr, proto = await loop.create_connection(RecordingProtocol, sock=sock)
        with tempfile.TemporaryFile() as f:
            f.write(b"x" * (16 * 1024 * 1024))       # more than the socket takes
            f.flush()
            f.seek(0)
            with pytest.raises(RuntimeError, match="is used by transport"):
                await loop.sock_sendfile(sock, f)
        tr.abort()
        await proto.done
        peer.close()
    run(main())


def test_sock_sendfile_after_the_default_executor_is_shut_down(run, data_file):
    # treadle sends from the default executor; without it, it sends as
    # asyncio does.
    async def main():
        loop = asyncio.get_running_loop()
        await loop.shutdown_default_executor()
        await _sock_sendfile_whole(data_file)
    run(main())


def test_cancelled_sock_sendfile_sends_nothing_more(run, loop_factory):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        size = 64 * 1024 * 1024
        with a, b, tempfile.TemporaryFile() as f:
            f.truncate(size)
            task = asyncio.create_task(loop.sock_sendfile(a, f))
            await asyncio.sleep(0.05)        # the peer reads nothing: full
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            received = 0
            for _ in range(3):
                while True:
                    try:
                        received += len(b.recv(1 << 20))
                    except BlockingIOError:
                        break
                await asyncio.sleep(0.02)    # room again: would it send?
            try:
                more = len(b.recv(1 << 20))
            except BlockingIOError:
                more = 0
            assert more == 0
            assert 0 < received < size
            position = os.lseek(f.fileno(), 0, os.SEEK_CUR)
            if loop_factory is treadle.new_event_loop:
                # treadle: the position says what was sent, as after an
                # error; asyncio leaves it where it was.
                assert position == received
            else:
                assert position == 0
    run(main())


def test_zero_copy_never_runs_on_the_loop_thread(monkeypatch, data_file):
    # treadle only: os.sendfile reads the file, which blocks on the disk
    # when its pages are not cached; asyncio calls it on the loop thread.
    import threading

    threads = []
    real_sendfile = os.sendfile

    def recording_sendfile(*args):
        threads.append(threading.get_ident())
        return real_sendfile(*args)

    monkeypatch.setattr(os, "sendfile", recording_sendfile)

    async def main():
        loop = asyncio.get_running_loop()
        await _sock_sendfile_whole(data_file)
        tr, proto, peer = await _transport_and_peer()
        with peer:
            reader = asyncio.create_task(recv_exactly(peer, len(DATA)))
            assert await loop.sendfile(tr, data_file, 0) == len(DATA)
            assert await reader == DATA
            tr.close()
        return threading.get_ident()

    loop_thread = treadle.run(main())
    assert threads and loop_thread not in threads
