"""connect_read_pipe / connect_write_pipe: asyncio's pipe transports.

Behavioural tests run on asyncio's loop and on treadle's (``run`` and
``loop`` fixtures); the write-rule tests at the end are treadle's own.
"""

from __future__ import annotations

import array
import asyncio
import gc
import io
import logging
import os
import socket
import tty
import warnings

import pytest

import treadle


class ReadProto(asyncio.Protocol):
    def __init__(self) -> None:
        self.events: list[object] = []
        self.data = bytearray()
        self.transport: asyncio.ReadTransport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self.got = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def data_received(self, data):
        self.data += data
        self.got.set()

    def eof_received(self):
        self.events.append("eof")

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(exc)


class WriteProto(asyncio.BaseProtocol):
    def __init__(self) -> None:
        self.events: list[object] = []
        self.transport: asyncio.WriteTransport | None = None
        self.lost = asyncio.get_running_loop().create_future()
        self.resumed = asyncio.Event()

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("made")

    def pause_writing(self):
        self.events.append("pause")

    def resume_writing(self):
        self.events.append("resume")
        self.resumed.set()

    def connection_lost(self, exc):
        self.events.append(("lost", exc))
        self.lost.set_result(exc)


def read_all(fd: int) -> bytes:
    out = bytearray()
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            return bytes(out)
        if not chunk:
            return bytes(out)
        out += chunk


# ---------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------

def test_read_pipe_data_then_eof(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        pipe = open(r, "rb", buffering=0)
        proto = ReadProto()
        transport, p = await loop.connect_read_pipe(lambda: proto, pipe)
        assert p is proto and proto.transport is transport
        assert proto.events == ["made"]      # before the waiter
        assert transport.get_extra_info("pipe") is pipe
        assert transport.is_reading() and not transport.is_closing()
        os.write(w, b"hello ")
        await proto.got.wait()
        proto.got.clear()
        os.write(w, b"world")
        await proto.got.wait()
        os.close(w)
        assert await proto.lost is None
        assert proto.events == ["made", "eof", ("lost", None)]
        assert bytes(proto.data) == b"hello world"
        assert pipe.closed and transport.is_closing()
    run(main())


def test_read_pipe_pause_and_resume(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = ReadProto()
        transport, _ = await loop.connect_read_pipe(lambda: proto, open(r, "rb", 0))
        transport.pause_reading()
        transport.pause_reading()            # idempotent
        assert not transport.is_reading()
        os.write(w, b"held")
        for _ in range(5):
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        assert proto.data == b""
        transport.resume_reading()
        transport.resume_reading()
        assert transport.is_reading()
        await proto.got.wait()
        assert proto.data == b"held"
        os.close(w)
        await proto.lost
        assert not transport.is_reading()
    run(main())


def test_read_pipe_close(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        pipe = open(r, "rb", 0)
        proto = ReadProto()
        transport, _ = await loop.connect_read_pipe(lambda: proto, pipe)
        transport.close()
        transport.close()
        assert transport.is_closing()
        assert await proto.lost is None
        assert proto.events == ["made", ("lost", None)]
        assert pipe.closed
        os.close(w)
    run(main())


def test_read_pipe_rejects_regular_file(run, tmp_path):
    async def main():
        loop = asyncio.get_running_loop()
        path = tmp_path / "f"
        path.write_bytes(b"x")
        with open(path, "rb") as f:
            with warnings.catch_warnings():
                warnings.simplefilter("error", ResourceWarning)
                with pytest.raises(ValueError, match="Pipe transport is for pipes/sockets only"):
                    await loop.connect_read_pipe(asyncio.Protocol, f)
                with pytest.raises(ValueError, match="pipes, sockets and character devices"):
                    await loop.connect_write_pipe(asyncio.BaseProtocol, open(f.fileno(), "rb", closefd=False))
                gc.collect()
    run(main())


def test_read_fifo(run, tmp_path):
    async def main():
        loop = asyncio.get_running_loop()
        path = tmp_path / "fifo"
        os.mkfifo(path)
        r = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        w = os.open(path, os.O_WRONLY)
        proto = ReadProto()
        await loop.connect_read_pipe(lambda: proto, open(r, "rb", 0))
        os.write(w, b"through a fifo")
        os.close(w)
        assert await proto.lost is None
        assert proto.data == b"through a fifo"
    run(main())


def test_read_pty_master_until_slave_closes(run):
    async def main():
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(slave)
        proto = ReadProto()
        transport, _ = await loop.connect_read_pipe(lambda: proto, open(master, "rb", 0))
        os.write(slave, b"tty bytes")
        while len(proto.data) < 9:
            await proto.got.wait()
            proto.got.clear()
        assert proto.data == b"tty bytes"
        os.close(slave)
        # Linux reports a pty whose slave is gone with EIO: asyncio ends the
        # transport quietly, handing the error to connection_lost.
        exc = await asyncio.wait_for(proto.lost, 10)
        assert exc is None or (isinstance(exc, OSError) and exc.errno == 5)
        assert transport.is_closing()
    run(main())


def test_read_socket(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        proto = ReadProto()
        await loop.connect_read_pipe(lambda: proto, io.open(a.detach(), "rb", 0))
        b.sendall(b"over a socket")
        b.close()
        assert await proto.lost is None
        assert proto.data == b"over a socket"
    run(main())


def test_data_received_error_goes_to_exception_handler(run):
    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

        class Bad(ReadProto):
            def data_received(self, data):
                raise ZeroDivisionError

        r, w = os.pipe()
        proto = Bad()
        transport, _ = await loop.connect_read_pipe(lambda: proto, open(r, "rb", 0))
        os.write(w, b"x")
        while not seen:
            await asyncio.sleep(0.001)
        assert isinstance(seen[0]["exception"], ZeroDivisionError)
        transport.close()
        os.close(w)
        await proto.lost
    run(main())


# ---------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------

def test_write_is_readable_at_once(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, p = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        assert p is proto and proto.events == ["made"]
        assert transport.can_write_eof()
        transport.write(b"now")
        # asyncio's promise: a blocking read right after write() sees it.
        assert os.read(r, 100) == b"now"
        transport.write(bytearray(b"ba"))
        transport.write(memoryview(b"mv"))
        await asyncio.sleep(0)
        assert os.read(r, 100) == b"bamv"
        transport.write(b"")
        assert transport.get_write_buffer_size() == 0
        transport.close()
        assert await proto.lost is None
        assert os.read(r, 100) == b""          # EOF: the fd was closed
        os.close(r)
    run(main())


def test_write_flow_control_pauses_and_resumes(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        os.set_blocking(r, False)
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
        payload = bytes(range(256)) * 4096          # 1 MiB, more than a pipe holds
        transport.write(payload)
        assert transport.get_write_buffer_size() > 64 * 1024
        assert proto.events == ["made", "pause"]
        got = bytearray()
        while not proto.resumed.is_set():
            got += read_all(r)
            await asyncio.sleep(0)
        assert proto.events == ["made", "pause", "resume"]
        assert transport.get_write_buffer_size() <= 16 * 1024
        transport.close()
        while not proto.lost.done():
            got += read_all(r)
            await asyncio.sleep(0)
        got += read_all(r)
        assert bytes(got) == payload
        assert proto.lost.result() is None
        os.close(r)
    run(main())


def test_write_buffer_limits_validation(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        with pytest.raises(ValueError):
            transport.set_write_buffer_limits(high=1, low=2)
        transport.set_write_buffer_limits(low=100)
        assert transport.get_write_buffer_limits() == (100, 400)
        transport.close()
        await proto.lost
        os.close(r)
    run(main())


def test_write_pipe_is_a_full_transport(run):
    # asyncio's write pipe transport is an asyncio.Transport: code that
    # probes the read side gets NotImplementedError, not AttributeError
    # (uvloop's test_process_streams_basic_1 checks this on a child's stdin).
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        assert isinstance(transport, asyncio.Transport)
        assert isinstance(transport, asyncio.ReadTransport)
        for method in (transport.pause_reading, transport.resume_reading,
                       transport.is_reading):
            with pytest.raises(NotImplementedError):
                method()
        transport.close()
        await proto.lost
        os.close(r)
    run(main())


def test_close_with_pending_data_drains_first(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        os.set_blocking(r, False)
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        payload = b"y" * (512 * 1024)
        transport.write(payload)
        assert transport.get_write_buffer_size() > 0
        transport.close()
        assert transport.is_closing()
        transport.write(b"dropped")           # after close: silently dropped
        got = bytearray()
        while not proto.lost.done():
            got += read_all(r)
            await asyncio.sleep(0)
        got += read_all(r)
        assert bytes(got) == payload and proto.lost.result() is None
        os.close(r)
    run(main())


def test_reader_gone_with_pending_data_is_broken_pipe(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.write(b"z" * (512 * 1024))
        assert transport.get_write_buffer_size() > 0
        os.close(r)
        exc = await asyncio.wait_for(proto.lost, 10)
        assert isinstance(exc, BrokenPipeError)
        assert transport.is_closing() and transport.get_write_buffer_size() == 0
    run(main())


def test_writes_without_yielding_reach_a_pipe_whose_reader_left(run):
    """Writes in one step that never yields still reach the pipe (and its
    EPIPE closes the transport) at the first write after the reader left,
    on asyncio and on treadle (which held later writes of a loop turn until
    December 2026)."""
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.write(b"first")
        os.close(r)
        n = 0
        while not transport.is_closing() and n < 100_000:
            n += 1
            transport.write(b"-")
        exc = await asyncio.wait_for(proto.lost, 10)
        assert isinstance(exc, BrokenPipeError)
        return n
    assert run(main()) == 1


def test_reader_gone_while_idle_is_a_clean_close(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.write(b"small")
        os.close(r)
        assert await asyncio.wait_for(proto.lost, 10) is None
        assert transport.is_closing()
    run(main())


def test_socket_peer_closing_ends_write_pipe(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(
            lambda: proto, io.open(a.detach(), "wb", 0))
        transport.write(b"1")
        assert b.recv(10) == b"1"
        b.close()
        assert await asyncio.wait_for(proto.lost, 10) is None
    run(main())


def test_abort_discards_pending_data(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.write(b"q" * (512 * 1024))
        transport.abort()
        assert transport.is_closing()
        assert transport.get_write_buffer_size() == 0
        assert await proto.lost is None
        os.close(r)
    run(main())


def test_write_eof_then_writes_are_dropped_with_a_warning(run, caplog):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.write_eof()
        transport.write_eof()
        assert await proto.lost is None
        with caplog.at_level(logging.WARNING, logger="asyncio"):
            for _ in range(7):
                transport.write(b"late")
        assert "pipe closed by peer" in caplog.text
        os.close(r)
    run(main())


def test_writelines(run):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.writelines([b"a", bytearray(b"b"), memoryview(b"c"), b""])
        transport.writelines(iter([b"d", b"e"]))
        # Joined as asyncio joins them: any buffer goes, text is refused.
        transport.writelines([array.array("B", b"f")])
        with pytest.raises(TypeError, match=r"^sequence item 1: expected a bytes-like object, str found$"):
            transport.writelines([b"ok", "text"])
        with pytest.raises(TypeError, match=r"^can only join an iterable$"):
            transport.writelines(None)
        await asyncio.sleep(0)
        assert os.read(r, 100) == b"abcdef"
        transport.close()
        await proto.lost
        os.close(r)
    run(main())


def test_write_pty_slave(run):
    async def main():
        loop = asyncio.get_running_loop()
        master, slave = os.openpty()
        tty.setraw(slave)
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(slave, "wb", 0))
        transport.write(b"to the terminal")
        assert os.read(master, 100) == b"to the terminal"
        transport.close()
        assert await proto.lost is None
        os.close(master)
    run(main())


def test_write_char_device(run):
    async def main():
        loop = asyncio.get_running_loop()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(os.devnull, "wb", 0))
        transport.write(b"into the void" * 1000)
        assert transport.get_write_buffer_size() == 0
        transport.close()
        assert await proto.lost is None
    run(main())


def test_pause_writing_failure_is_reported(run):
    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

        class Bad(WriteProto):
            def pause_writing(self):
                raise ZeroDivisionError

        r, w = os.pipe()
        proto = Bad()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.write(b"x" * (512 * 1024))
        assert seen and seen[0]["message"] == "protocol.pause_writing() failed"
        assert isinstance(seen[0]["exception"], ZeroDivisionError)
        transport.abort()
        await proto.lost
        os.close(r)
    run(main())


def test_unclosed_transports_warn_and_close_their_pipes(loop):
    async def connect():
        r, w = os.pipe()
        rt, _ = await loop.connect_read_pipe(asyncio.Protocol, open(r, "rb", 0))
        wt, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, open(w, "wb", 0))
        return rt, wt
    rt, wt = loop.run_until_complete(connect())
    loop.close()
    # asyncio's GitHub issue #314: the reprs work after the loop closed.
    assert "open" in repr(rt) and "open" in repr(wt)
    with pytest.warns(ResourceWarning, match="unclosed transport"):
        del rt, wt
        gc.collect()


# ---------------------------------------------------------------------------
# treadle's own behaviour
# ---------------------------------------------------------------------------

def test_write_rejects_text():
    # asyncio's pipe transport only asserts; treadle raises TypeError, as
    # asyncio's socket transports do.
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        with pytest.raises(TypeError, match="bytes-like object, not 'str'"):
            transport.write("text")
        with pytest.raises(TypeError):
            transport.writelines([b"ok", "text"])
        assert transport.get_write_buffer_size() == 0
        transport.close()
        await proto.lost
        os.close(r)
    treadle.run(main())


def test_write_takes_any_buffer_shape():
    # asyncio's pipe transport dies on a strided memoryview (os.write
    # refuses it); treadle flattens it.
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.write(memoryview(b"0123456789")[::2])
        transport.write(memoryview(bytearray(b"\1\0\2\0")).cast("H"))
        transport.writelines([memoryview(b"abcdef")[1::2]])
        await asyncio.sleep(0)
        assert os.read(r, 100) == b"02468\1\0\2\0bdf"
        transport.close()
        assert await proto.lost is None
        os.close(r)
    treadle.run(main())


def test_every_write_outside_a_callback_goes_out_at_once(run):
    # asyncio's rule (treadle held the later writes of a loop turn for its
    # end until December 2026).
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        os.set_blocking(r, False)
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.write(b"first")
        assert read_all(r) == b"first"
        transport.write(b"second ")
        transport.write(b"third")
        assert read_all(r) == b"second third"
        assert transport.get_write_buffer_size() == 0
        transport.close()
        await proto.lost
        os.close(r)
    run(main())


def test_writes_from_connection_made_are_flushed_when_it_returns(monkeypatch):
    calls: list[int] = []
    real_writev = os.writev
    monkeypatch.setattr(os, "writev", lambda fd, bufs: calls.append(len(bufs)) or real_writev(fd, bufs))

    class Greeter(WriteProto):
        def connection_made(self, transport):
            super().connection_made(transport)
            transport.write(b"hello ")
            transport.write(b"there")
            assert transport.get_write_buffer_size() == 11   # rule 3: held

    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = Greeter()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        assert os.read(r, 100) == b"hello there"
        assert calls == [2]
        transport.close()
        await proto.lost
        os.close(r)
    treadle.run(main())


def test_writes_from_resume_writing_are_flushed_when_it_returns(monkeypatch):
    calls: list[int] = []
    real_writev = os.writev

    class Refill(WriteProto):
        def resume_writing(self):
            super().resume_writing()
            if len(self.events) < 4:
                self.transport.write(b"more ")
                self.transport.write(b"data")
                assert self.transport.get_write_buffer_size() == 9   # held

    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        os.set_blocking(r, False)
        proto = Refill()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.write(b"x" * (256 * 1024))
        assert proto.events == ["made", "pause"]
        monkeypatch.setattr(os, "writev", lambda fd, bufs: calls.append([len(b) for b in bufs]) or real_writev(fd, bufs))
        got = bytearray()
        while not proto.resumed.is_set():
            got += read_all(r)
            await asyncio.sleep(0)
        while len(got) < 256 * 1024 + 9:
            await asyncio.sleep(0)
            got += read_all(r)
        assert bytes(got) == b"x" * (256 * 1024) + b"more data"
        # Both chunks went to one writev (tried again whole if the pipe was
        # still full), never one write each.
        assert calls and all(c == [5, 4] for c in calls)
        transport.close()
        await proto.lost
        os.close(r)
    treadle.run(main())


def test_held_writes_past_the_high_water_mark_go_out_at_once():
    # On asyncio every write to an idle pipe is sent at once; holding bytes
    # back must not make treadle pause a protocol that asyncio would not.
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        proto = WriteProto()
        transport, _ = await loop.connect_write_pipe(lambda: proto, open(w, "wb", 0))
        transport.set_write_buffer_limits(high=8, low=2)
        transport.write(b"a")
        transport.write(b"0123456789")       # held, then past the mark: sent
        assert transport.get_write_buffer_size() == 0
        assert proto.events == ["made"]
        assert os.read(r, 100) == b"a0123456789"
        transport.close()
        await proto.lost
        os.close(r)
    treadle.run(main())


def test_writes_outside_a_running_loop_go_out_at_once():
    loop = treadle.new_event_loop()
    try:
        r, w = os.pipe()
        holder = {}

        async def connect():
            holder["proto"] = WriteProto()
            return await loop.connect_write_pipe(lambda: holder["proto"], open(w, "wb", 0))
        transport, _ = loop.run_until_complete(connect())
        transport.write(b"one ")
        transport.write(b"two")
        assert os.read(r, 100) == b"one two"
        transport.close()
        loop.run_until_complete(holder["proto"].lost)
        os.close(r)
    finally:
        loop.close()


def test_close_on_a_closed_loop_releases_the_pipe():
    loop = treadle.new_event_loop()
    r, w = os.pipe()

    async def connect():
        rt, _ = await loop.connect_read_pipe(asyncio.Protocol, open(r, "rb", 0))
        wt, _ = await loop.connect_write_pipe(asyncio.BaseProtocol, open(w, "wb", 0))
        return rt, wt
    rt, wt = loop.run_until_complete(connect())
    loop.close()
    # asyncio raises "Event loop is closed" here and keeps the fds open until
    # garbage collection; treadle closes them.
    rt.close()
    wt.abort()
    assert "closed" in repr(rt) and "closed" in repr(wt)
    with pytest.raises(OSError):
        os.fstat(r)
