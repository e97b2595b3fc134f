"""The loop's ``sock_*`` methods and fd ownership, on both loops."""

from __future__ import annotations

import contextlib
import asyncio
import socket
import ssl

import pytest

from ._util import RecordingProtocol, closed_port


def _pair():
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    return a, b


def test_recv_sendall_large_payload(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with a, b:
            payload = bytes(range(256)) * 40000         # ~10 MB: must wait
            sender = asyncio.create_task(loop.sock_sendall(a, payload))
            received = bytearray()
            while len(received) < len(payload):
                received += await loop.sock_recv(b, 65536)
            await sender
            assert received == payload
    run(main())


def test_sendall_counts_bytes_of_memoryviews_of_any_format():
    # treadle only: asyncio compares bytes sent with len(view), which counts
    # items, and never finishes for an "i" view; treadle counts bytes.
    import treadle

    async def main():
        import array
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with a, b:
            data = array.array("i", range(1000))
            await loop.sock_sendall(a, memoryview(data))
            got = bytearray()
            while len(got) < data.itemsize * 1000:
                got += await loop.sock_recv(b, 65536)
            assert bytes(got) == data.tobytes()
    with asyncio.Runner(loop_factory=treadle.new_event_loop) as runner:
        runner.run(asyncio.wait_for(main(), 10))


def test_recv_into_and_recvfrom_into(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with a, b:
            buf = bytearray(10)
            task = asyncio.create_task(loop.sock_recv_into(b, buf))
            await asyncio.sleep(0)
            await loop.sock_sendall(a, b"hello")
            assert await task == 5
            assert buf[:5] == b"hello"
        u1 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u2 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with u1, u2:
            u1.setblocking(False)
            u2.setblocking(False)
            u1.bind(("127.0.0.1", 0))
            u2.bind(("127.0.0.1", 0))
            task = asyncio.create_task(loop.sock_recvfrom_into(u1, buf, 3))
            await asyncio.sleep(0)
            assert await loop.sock_sendto(u2, b"abcdef", u1.getsockname()) == 6
            nbytes, addr = await task
            assert nbytes == 3 and buf[:3] == b"abc"
            assert addr == u2.getsockname()
            await loop.sock_sendto(u2, b"again", u1.getsockname())
            data, addr = await loop.sock_recvfrom(u1, 100)
            assert data == b"again"
    run(main())


def test_connect_and_accept(run):
    async def main():
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.setblocking(False)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        client.setblocking(False)
        with listener, client:
            accept = asyncio.create_task(loop.sock_accept(listener))
            await loop.sock_connect(client, listener.getsockname())
            conn, addr = await accept
            with conn:
                assert conn.gettimeout() == 0
                assert addr == client.getsockname()
                await loop.sock_sendall(client, b"ping")
                assert await loop.sock_recv(conn, 4) == b"ping"
    run(main())


def test_connect_resolves_a_host_name_with_the_socket_family(run):
    async def main():
        loop = asyncio.get_running_loop()
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        client.setblocking(False)
        with listener, client:
            await loop.sock_connect(client, ("localhost", listener.getsockname()[1]))
            assert client.getpeername() == listener.getsockname()
    run(main())


def test_connect_refused(run):
    async def main():
        loop = asyncio.get_running_loop()
        with socket.socket() as s:
            s.setblocking(False)
            with pytest.raises(ConnectionRefusedError):
                await loop.sock_connect(s, ("127.0.0.1", closed_port()))
    run(main())


def test_cancelled_recv_unregisters_and_a_new_recv_works(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with a, b:
            task = asyncio.create_task(loop.sock_recv(b, 10))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await loop.sock_sendall(a, b"after")
            assert await loop.sock_recv(b, 10) == b"after"
            # Nothing of the cancelled operation is left registered.
            assert loop.remove_reader(b) is False
    run(main())


def test_cancelled_accept_leaves_nothing_registered(run):
    async def main():
        loop = asyncio.get_running_loop()
        with socket.socket() as listener:
            listener.setblocking(False)
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            task = asyncio.create_task(loop.sock_accept(listener))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert loop.remove_reader(listener) is False
    run(main())


def test_watcher_of_a_closed_socket_is_removed_by_the_socket(run):
    # anyio removes a reader/writer with the socket object after another
    # task closed it (fileno() is then -1); asyncio's selector finds the
    # registration by the object, so removal succeeds instead of raising.
    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        c, d = _pair()
        with b, d:
            loop.add_writer(a, print)
            a.close()
            assert loop.remove_writer(a) is True
            loop.add_reader(c, print)
            c.close()
            assert loop.remove_reader(c) is True
            # A closed socket that was never added is still invalid.
            e, f = _pair()
            e.close()
            f.close()
            with pytest.raises(ValueError):
                loop.remove_reader(e)
    run(main())


def test_refused_connect_error_is_not_kept_alive_by_a_cycle(run):
    # No frame in the error's traceback (the connect callback's, the task
    # step's) may hold the future that holds the error once the task is
    # done: that cycle kept refused-connection errors (and everything their
    # tracebacks reference) alive until the cycle collector ran.  anyio's
    # suite checks this.
    async def main() -> OSError:
        loop = asyncio.get_running_loop()
        with socket.socket() as sock:
            sock.setblocking(False)
            with pytest.raises(OSError) as info:
                await loop.sock_connect(sock, ("127.0.0.1", closed_port()))
        return info.value

    exc = run(main())
    tb = exc.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            assert not (isinstance(value, asyncio.Future) and value.done()
                        and not value.cancelled() and value.exception() is exc), \
                tb.tb_frame
        tb = tb.tb_next


@pytest.mark.parametrize("call", ["sock_recv", "sock_recv_into", "sock_recvfrom",
                                  "sock_recvfrom_into", "sock_sendall"])
def test_an_error_after_a_wait_belongs_to_the_caller_alone(run, call, loop_factory):
    # A receive that waited, then failed (the peer reset the connection):
    # once the error reached the caller, nothing of the loop's (the future
    # that carried it, the callback's or the waiting frame's locals, a
    # handle's arguments) holds it in a reference cycle.  asyncio's does:
    # its sock_* coroutine's frame, kept by the traceback, holds the
    # future, which holds the error (the cycle of CPython's gh-124859,
    # fixed there for sock_connect only); the error, and all its traceback
    # holds, lives until the cyclic GC runs.  An improvement on treadle.
    import gc
    import struct
    import types

    async def main():
        loop = asyncio.get_running_loop()
        with socket.create_server(("127.0.0.1", 0)) as listener, \
                socket.socket() as client:
            client.setblocking(False)
            await loop.sock_connect(client, listener.getsockname())
            server, _ = listener.accept()

            def reset():
                server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                  struct.pack("ii", 1, 0))
                server.close()

            loop.call_later(0.02, reset)
            args = {"sock_recv": (10,), "sock_recv_into": (bytearray(10),),
                    "sock_recvfrom": (10,), "sock_recvfrom_into": (bytearray(10),),
                    "sock_sendall": (b"x" * (64 << 20),)}[call]
            exc = None
            try:
                await getattr(loop, call)(client, *args)
            except (ConnectionResetError, BrokenPipeError) as error:
                exc = error
            assert exc is not None
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert loop.remove_reader(client.fileno()) is False
            assert loop.remove_writer(client.fileno()) is False
            return [type(r).__name__ for r in gc.get_referrers(exc)
                    if not isinstance(r, (types.FrameType, types.CoroutineType))]
    holders = run(main())
    assert holders == ([] if loop_factory is not asyncio.new_event_loop
                       else ["Future"])


@pytest.mark.parametrize("call, method, args", [
    ("sock_recv_into", "recv_into", (bytearray(10),)),
    ("sock_recvfrom", "recvfrom", (10,)),
    ("sock_recvfrom_into", "recvfrom_into", (bytearray(10),)),
    ("sock_accept", "accept", ()),
])
def test_a_waiting_call_retries_with_the_method_the_socket_has_then(run, call, method, args):
    # asyncio looks the socket's method up at every attempt: one replaced
    # while the call waits (as a test's mock may be) is the one that runs.
    class Sock(socket.socket):
        pass

    async def main():
        loop = asyncio.get_running_loop()
        sock = Sock()
        with contextlib.ExitStack() as stack:
            stack.enter_context(sock)
            sock.bind(("127.0.0.1", 0))
            if call == "sock_accept":
                sock.listen()
            else:
                listener = stack.enter_context(socket.create_server(("127.0.0.1", 0)))
                sock.connect(listener.getsockname())
                peer = stack.enter_context(listener.accept()[0])
            sock.setblocking(False)
            waiting = asyncio.ensure_future(getattr(loop, call)(sock, *args))
            await asyncio.sleep(0.01)
            assert not waiting.done()
            original = getattr(sock, method)
            calls = []

            def replaced(*a):
                calls.append(a)
                return original(*a)

            setattr(sock, method, replaced)
            if call == "sock_accept":
                stack.enter_context(socket.create_connection(sock.getsockname()))
            else:
                peer.sendall(b"hello")
            result = await asyncio.wait_for(waiting, 5)
            if call == "sock_accept":
                result[0].close()
            assert len(calls) == 1
    run(main())


def test_ssl_sockets_are_rejected(run):
    async def main():
        loop = asyncio.get_running_loop()
        ctx = ssl.create_default_context()
        with ctx.wrap_socket(socket.socket(), do_handshake_on_connect=False,
                             server_hostname="x") as s:
            for coro in (loop.sock_recv(s, 1), loop.sock_sendall(s, b"x"),
                         loop.sock_accept(s), loop.sock_connect(s, ("127.0.0.1", 1)),
                         loop.sock_recv_into(s, bytearray(1)),
                         loop.sock_recvfrom(s, 1), loop.sock_sendto(s, b"x", ("127.0.0.1", 1))):
                with pytest.raises(TypeError, match="SSLSocket"):
                    await coro
    run(main())


def test_blocking_sockets_are_rejected_in_debug_mode(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            with pytest.raises(ValueError, match="non-blocking"):
                await loop.sock_recv(a, 1)
            with pytest.raises(ValueError, match="non-blocking"):
                await loop.sock_sendall(a, b"x")
    run(main(), debug=True)


def test_fd_of_a_transport_cannot_be_used_directly(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        tr, proto = await loop.create_connection(RecordingProtocol, sock=a)
        try:
            for call in (lambda: loop.add_reader(a, print), lambda: loop.remove_reader(a),
                         lambda: loop.add_writer(a.fileno(), print),
                         lambda: loop.remove_writer(a.fileno())):
                with pytest.raises(RuntimeError, match="is used by transport"):
                    call()
            with pytest.raises(ValueError, match="Invalid file object"):
                loop.add_reader(object(), print)
        finally:
            tr.close()
            await proto.done
            b.close()
        # Closed transports no longer own the fd number.
        c, d = socket.socketpair()
        with c, d:
            loop.add_reader(c, print)
            assert loop.remove_reader(c)
    run(main())


def test_recv_and_sendall_errors_are_those_of_recv_and_send(run):
    # treadle reads and writes plain non-blocking sockets with os.read /
    # os.write: the errors must stay those of sock.recv / sock.send.
    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with a, b:
            with pytest.raises(ValueError, match="negative buffersize"):
                await loop.sock_recv(b, -1)
            with pytest.raises(TypeError):
                await loop.sock_recv(b, 1.5)
            assert await loop.sock_recv(b, 0) == b""
            await loop.sock_sendall(a, b"ab")
            assert await loop.sock_recv(b, True) == b"a"      # bool is an int
            assert await loop.sock_recv(b, 1 << 20) == b"b"   # beyond the buffer
            a.shutdown(socket.SHUT_WR)
            assert await loop.sock_recv(b, 10) == b""
            b.close()
            a.close()
            with pytest.raises(OSError) as recv_err:
                await loop.sock_recv(b, 10)
            assert recv_err.value.errno == 9 and type(recv_err.value) is OSError
            with pytest.raises(OSError) as send_err:
                await loop.sock_sendall(a, b"x")
            assert send_err.value.errno == 9 and type(send_err.value) is OSError
        c, d = _pair()
        with c, d:
            d.close()
            with pytest.raises(BrokenPipeError):
                await loop.sock_sendall(c, b"x" * 10)
                await loop.sock_sendall(c, b"x" * 10)
    run(main())


def test_recv_uses_the_recv_of_a_socket_subclass(run):
    class Recording(socket.socket):
        def recv(self, n, flags=0):
            calls.append(n)
            return super().recv(n, flags)

        def send(self, data, flags=0):
            calls.append(len(data))
            return super().send(data, flags)

    calls = []

    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with a, b, Recording(fileno=a.detach()) as ra, Recording(fileno=b.detach()) as rb:
            await loop.sock_sendall(ra, b"hello")
            assert await loop.sock_recv(rb, 100) == b"hello"
        assert calls == [5, 100]
    run(main())


def test_recv_from_a_socket_with_a_timeout_waits_in_recv(run):
    # Outside debug mode asyncio calls recv() on such a socket, which
    # waits for the timeout itself and raises TimeoutError.
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            b.settimeout(0.05)
            with pytest.raises(TimeoutError):
                await loop.sock_recv(b, 10)
            a.send(b"x")
            assert await loop.sock_recv(b, 10) == b"x"
    run(main())


def test_recv_and_sendall_are_coroutine_functions_of_the_loop(run):
    # treadle's sock_recv and sock_sendall wait in compiled code; what the
    # caller gets is still a coroutine of the loop's method, by name, with
    # a frame: task reprs, stacks and mock's autospec see asyncio's shape.
    import inspect
    from unittest import mock

    async def main():
        loop = asyncio.get_running_loop()
        spec = mock.create_autospec(loop)
        for name in ("sock_recv", "sock_sendall", "sock_recv_into", "sock_accept"):
            assert inspect.iscoroutinefunction(getattr(loop, name)), name
            assert isinstance(getattr(spec, name), mock.AsyncMock), name
        a, b = _pair()
        with a, b:
            pending = loop.sock_recv(b, 1)
            assert inspect.iscoroutine(pending)
            assert pending.__qualname__.endswith(".sock_recv")
            pending.close()                     # never awaited: nothing happens
            task = asyncio.ensure_future(loop.sock_recv(b, 1))
            await asyncio.sleep(0)
            assert "sock_recv() running at" in repr(task)
            assert task.get_stack()
            await loop.sock_sendall(a, b"x")
            assert await task == b"x"
    run(main())


def test_throwing_into_a_waiting_sock_call_warns_nothing(run):
    # A task throws into its coroutine when what it awaited failed (and a
    # cancel scope when it interrupts a wait); the waiting sock_* call must
    # take that without a DeprecationWarning on 3.12+ (which a compiled
    # coroutine awaited by an interpreted one gives: throw(type, value, tb)).
    import warnings

    async def main():
        loop = asyncio.get_running_loop()
        a, b = _pair()
        with a, b:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
            waits = [loop.sock_recv(b, 10), loop.sock_recv_into(b, bytearray(10)),
                     loop.sock_sendall(a, b"x" * 10_000_000)]
            for coro in waits:
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    assert coro.send(None) is not None          # waiting
                    with pytest.raises(KeyError):
                        coro.throw(KeyError("k"))
            # Nothing left registered for either socket.
            loop.add_reader(b, print)
            assert loop.remove_reader(b)
            loop.add_writer(a, print)
            assert loop.remove_writer(a)
    run(main())
