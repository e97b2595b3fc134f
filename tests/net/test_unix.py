"""Unix stream servers: stale files, bind errors, path clean-up, abstract
names; on both loops."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import sys
import tempfile

import pytest

from ._util import RecordingProtocol

PY313 = sys.version_info >= (3, 13)


def test_unix_server_serves_and_cleans_up_like_the_running_python(run):
    async def main():
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "srv.sock")

            async def handle(reader, writer):
                writer.write(await reader.read(100))
                await writer.drain()
                writer.close()
            server = await asyncio.start_unix_server(handle, path)
            assert server.sockets[0].getsockname() == path
            reader, writer = await asyncio.open_unix_connection(path)
            writer.write(b"unix")
            assert await reader.read() == b"unix"
            writer.close()
            await writer.wait_closed()
            server.close()
            await server.wait_closed()
            # 3.13 removes the socket file when the server closes.
            assert os.path.exists(path) is (not PY313)
    run(main())


def test_cleanup_socket_false_leaves_the_file(run, loop_factory):
    if loop_factory is asyncio.new_event_loop and not PY313:
        pytest.skip("cleanup_socket is new in 3.13")

    async def main():
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "keep.sock")
            server = await loop.create_unix_server(RecordingProtocol, path,
                                                   cleanup_socket=False)
            server.close()
            await server.wait_closed()
            assert os.path.exists(path)
    run(main())


def test_a_replaced_socket_file_is_not_removed(run):
    async def main():
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "s.sock")
            server = await loop.create_unix_server(RecordingProtocol, path)
            os.unlink(path)
            with open(path, "w"):
                pass                      # someone else's file now
            server.close()
            await server.wait_closed()
            assert os.path.exists(path)
    run(main())


def test_stale_socket_file_is_replaced(run):
    async def main():
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "stale.sock")
            stale = socket.socket(socket.AF_UNIX)
            stale.bind(path)
            stale.close()                 # file left behind, nobody listening
            server = await loop.create_unix_server(RecordingProtocol, path)
            server.close()
            await server.wait_closed()
    run(main())


def test_bind_errors_close_the_socket(run):
    async def main():
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "regular-file")
            with open(path, "w"):
                pass                      # not a socket: left alone, bind fails
            with pytest.raises(OSError) as info:
                await loop.create_unix_server(RecordingProtocol, path)
            assert info.value.errno == errno.EADDRINUSE
            assert f"Address {path!r} is already in use" in str(info.value)
            with pytest.raises(OSError):
                await loop.create_unix_server(RecordingProtocol,
                                              os.path.join(tmp, "missing-dir", "s"))
        # (the test's fd check verifies that no socket was left open)
    run(main())


def test_unix_server_validation(run):
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(TypeError, match="ssl argument must be an SSLContext"):
            await loop.create_unix_server(RecordingProtocol, "/x", ssl=True)
        with pytest.raises(ValueError, match="ssl_handshake_timeout is only meaningful"):
            await loop.create_unix_server(RecordingProtocol, "/x", ssl_handshake_timeout=1)
        with pytest.raises(ValueError, match="path and sock can not be"):
            await loop.create_unix_server(RecordingProtocol, "/x", sock=object())
        with pytest.raises(ValueError, match="path was not specified, and no sock"):
            await loop.create_unix_server(RecordingProtocol)
        with socket.socket() as tcp:
            with pytest.raises(ValueError, match="A UNIX Domain Stream Socket"):
                await loop.create_unix_server(RecordingProtocol, sock=tcp)
    run(main())


def test_abstract_socket_name(run):
    if not sys.platform.startswith("linux"):
        pytest.skip("abstract names are Linux only")

    async def main():
        loop = asyncio.get_running_loop()
        name = f"\0treadle-test-{os.getpid()}"
        server = await loop.create_unix_server(RecordingProtocol, name)
        async with server:
            tr, proto = await loop.create_unix_connection(RecordingProtocol, name)
            tr.close()
            await proto.done
    run(main())


def test_server_from_an_existing_unix_socket(run):
    async def main():
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "given.sock")
            sock = socket.socket(socket.AF_UNIX)
            sock.bind(path)
            server = await loop.create_unix_server(RecordingProtocol, sock=sock)
            async with server:
                tr, proto = await loop.create_unix_connection(RecordingProtocol, path)
                tr.close()
                await proto.done
    run(main())


def test_stale_socket_files_are_looked_at_off_the_loop_thread(monkeypatch):
    # treadle only: os.stat and os.remove can block on the disk; asyncio
    # calls them on the loop thread when it creates a Unix server or
    # datagram endpoint.
    import threading

    import treadle

    creating = []                   # (function, thread) while creating
    real_stat, real_remove = os.stat, os.remove

    def recording(real):
        def call(path, *args, **kwargs):
            if str(path).endswith(".sock") and recording.on:
                creating.append((real.__name__, threading.get_ident()))
            return real(path, *args, **kwargs)
        return call
    recording.on = False

    monkeypatch.setattr(os, "stat", recording(real_stat))
    monkeypatch.setattr(os, "remove", recording(real_remove))

    async def main():
        loop = asyncio.get_running_loop()
        with tempfile.TemporaryDirectory() as tmp:
            stream_path = os.path.join(tmp, "stream.sock")
            dgram_path = os.path.join(tmp, "dgram.sock")
            for path, kind in ((stream_path, socket.SOCK_STREAM),
                               (dgram_path, socket.SOCK_DGRAM)):
                with socket.socket(socket.AF_UNIX, kind) as stale:
                    stale.bind(path)
            recording.on = True
            server = await loop.create_unix_server(asyncio.Protocol, stream_path)
            tr, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, local_addr=dgram_path, family=socket.AF_UNIX)
            recording.on = False
            server.close()
            await server.wait_closed()
            tr.close()
        return threading.get_ident()

    loop_thread = treadle.run(main())
    assert [name for name, _ in creating].count("remove") == 2
    assert all(thread != loop_thread for _, thread in creating)


def test_closing_a_unix_server_passes_a_blocking_call_detector(run, monkeypatch):
    """Tools that fail async code making blocking calls on the loop thread
    (blockbuster: aiohttp's and anyio's suites run every test under it)
    wrap os.stat and os.unlink, and let asyncio's own ``_stop_serving``
    call them, by file and function name.  Closing a Unix server removes
    its socket file (3.13+) through them on asyncio's loop; on treadle's
    too, and it must pass the same detector."""
    import inspect

    def detecting(real):
        def call(*args, **kwargs):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return real(*args, **kwargs)
            frame = inspect.currentframe()
            while frame is not None:
                code = frame.f_code
                if (code.co_filename.replace("\\", "/").endswith("asyncio/unix_events.py")
                        and code.co_name == "_stop_serving"):
                    return real(*args, **kwargs)
                frame = frame.f_back
            raise RuntimeError(f"blocking call to os.{real.__name__}")
        return call

    async def main():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "srv.sock")
            server = await asyncio.get_running_loop().create_unix_server(
                asyncio.Protocol, path)
            with monkeypatch.context() as patch:
                patch.setattr(os, "stat", detecting(os.stat))
                patch.setattr(os, "unlink", detecting(os.unlink))
                server.close()
            await server.wait_closed()
            return os.path.exists(path)
    assert run(main()) is (not PY313)
