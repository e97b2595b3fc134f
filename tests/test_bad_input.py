"""Bad input to the loop's methods: asyncio's answer, or a clearer one,
never a compiler's.  One test per difference that ``test_differential.py``
found and that was fixed, on both loops where asyncio and treadle now
agree, on treadle alone where treadle is deliberately clearer (README,
"Where treadle differs from asyncio on purpose")."""

from __future__ import annotations

import asyncio
import fractions
import gc
import inspect
import io
import logging
import os
import re
import signal
import socket
import ssl
import sys
import warnings

import pytest

import treadle

PY312 = sys.version_info >= (3, 12)


def _f() -> None:
    pass


# ----------------------------------------------------------------------
# exception handling: the context is whatever the caller passed
# ----------------------------------------------------------------------

def test_call_exception_handler_with_a_non_dict_logs_as_asyncio(loop, caplog):
    # asyncio's default handler fails on it and the failure is logged;
    # the compiled build used to refuse it ("dict object expected").
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        assert loop.call_exception_handler("ctx") is None
    assert [r.getMessage() for r in caplog.records] == [
        "Exception in default exception handler"]
    assert caplog.records[0].exc_info[0] is AttributeError


def test_call_exception_handler_passes_a_non_dict_to_the_handler(loop, caplog):
    seen = []
    loop.set_exception_handler(lambda lp, context: seen.append(context))
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        loop.call_exception_handler("ctx")
    if PY312:
        # 3.12+ looks for the task's context in it first, and fails.
        assert seen == []
        assert [r.getMessage().splitlines()[0] for r in caplog.records] == [
            "Unhandled error in exception handler"]
    else:
        assert seen == ["ctx"]


def test_default_exception_handler_with_a_non_dict(loop):
    with pytest.raises(AttributeError, match="'int' object has no attribute 'get'"):
        loop.default_exception_handler(1)


# ----------------------------------------------------------------------
# timers
# ----------------------------------------------------------------------

def test_call_at_takes_any_real_number(loop):
    out = []
    loop.call_at(fractions.Fraction(0), out.append, "fraction")
    loop.call_at(0, out.append, "int")
    loop.call_later(fractions.Fraction(0), out.append, "later")
    loop.call_soon(loop.stop)
    loop.run_forever()
    assert out == ["fraction", "int", "later"]


def test_call_later_with_a_string_fails_as_asyncio(loop):
    with pytest.raises(TypeError, match=r"unsupported operand type\(s\) for \+"):
        loop.call_later("x", _f)


@pytest.mark.parametrize("when", ["x", b"1", None, object(), 1j])
def test_call_at_refuses_a_time_that_is_not_a_number(when):
    # asyncio keeps it and its loop fails on every later turn; treadle
    # refuses it at the call (README).
    loop = treadle.new_event_loop()
    try:
        with pytest.raises(TypeError, match="when"):
            loop.call_at(when, _f)
        loop.call_soon(loop.stop)
        loop.run_forever()          # the loop is unharmed
    finally:
        loop.close()


# ----------------------------------------------------------------------
# tasks and debug mode
# ----------------------------------------------------------------------

def test_create_task_with_an_unexpected_keyword_names_create_task(loop):
    coro = asyncio.sleep(0)
    try:
        with pytest.raises(TypeError) as info:
            loop.create_task(coro, bogus=1)
    finally:
        coro.close()
    if sys.version_info < (3, 14):
        assert "create_task() got an unexpected keyword argument 'bogus'" in str(info.value)
    else:
        assert "'bogus'" in str(info.value)


def test_create_task_refuses_a_context_that_is_not_a_context():
    # asyncio's task takes it, then cannot run a step, ever (README).
    loop = treadle.new_event_loop()
    coro = asyncio.sleep(0)
    try:
        with pytest.raises(TypeError, match="context must be a contextvars.Context"):
            loop.create_task(coro, context=5)
    finally:
        coro.close()
        loop.close()


def test_get_debug_returns_what_set_debug_got(loop):
    loop.set_debug("yes")
    assert loop.get_debug() == "yes"
    loop.set_debug(0)
    assert loop.get_debug() == 0


def test_set_debug_with_any_true_value_while_running(run):
    async def main():
        loop = asyncio.get_running_loop()
        loop.set_debug("yes")
        await asyncio.sleep(0)
        loop.set_debug(None)
        await asyncio.sleep(0)
        return loop.get_debug()
    assert run(main()) is None


# ----------------------------------------------------------------------
# signature errors name the loop's method, never an internal layer
# ----------------------------------------------------------------------

def test_unexpected_keyword_names_the_method(loop):
    for name in sorted(n for n in dir(asyncio.AbstractEventLoop) if not n.startswith("_")):
        method = getattr(loop, name)
        with pytest.raises(TypeError) as info:
            result = method(bogus=1)
            if inspect.iscoroutine(result):     # (not raised at the call)
                result.close()
        message = str(info.value)
        assert f"{name}()" in message, message
        qualifier = message.split(f"{name}()")[0].rstrip(".").rpartition(" ")[2]
        assert "Mixin" not in qualifier and "Kernel" not in qualifier, message


def test_the_loops_coroutines_carry_asyncios_names(loop):
    # A warning names a coroutine by its __qualname__, and code filters
    # such warnings by asyncio's names (next test).
    for name in ("shutdown_asyncgens", "shutdown_default_executor", "create_connection"):
        coro = getattr(loop, name)(*(() if name.startswith("shutdown") else (asyncio.Protocol,)))
        try:
            assert coro.__qualname__ == f"BaseEventLoop.{name}"
        finally:
            coro.close()


def test_closing_a_runner_whose_loop_was_closed_warns_under_asyncios_name(loop_factory):
    # pytest-asyncio closes its runner this way after a test that closed
    # the loop itself, and ignores the warning by asyncio's name.
    runner = asyncio.Runner(loop_factory=loop_factory)
    runner.run(asyncio.sleep(0))
    runner.get_loop().close()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.filterwarnings(
            "ignore", ".*BaseEventLoop.shutdown_asyncgens.*", RuntimeWarning)
        with pytest.raises(RuntimeError, match="closed"):
            runner.close()
        gc.collect()
    assert [str(w.message) for w in caught] == []


def test_bound_methods_are_the_loops():
    loop = treadle.new_event_loop()
    try:
        assert "Mixin" not in repr(loop.create_connection)
        assert "Mixin" not in repr(loop.sock_recv)
    finally:
        loop.close()


# ----------------------------------------------------------------------
# sockets and names
# ----------------------------------------------------------------------

def test_sock_recv_with_a_string_size(run):
    async def main():
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            b.send(b"x")
            await asyncio.get_running_loop().sock_recv(a, "x")
    with pytest.raises(TypeError, match="'str' object cannot be interpreted as an integer"):
        run(main())


def test_sock_accept_of_a_non_socket(run):
    async def main():
        await asyncio.get_running_loop().sock_accept(b"x")
    with pytest.raises(AttributeError, match="'bytes' object has no attribute 'fileno'"):
        run(main())


def test_sock_connect_to_a_long_string_names_the_address(run, loop_factory):
    # asyncio counts the arguments of an internal helper; treadle names
    # the parameter (the same exception type).
    async def main():
        with socket.socket() as sock:
            sock.setblocking(False)
            await asyncio.get_running_loop().sock_connect(sock, "/some/unix/path")
    with pytest.raises(TypeError) as info:
        run(main())
    if loop_factory is treadle.new_event_loop:
        assert "address must be (host, port" in str(info.value)


@pytest.mark.parametrize("host, port", [(b"127.0.0.1", b"80"), ("::1", 80), (None, 0)])
def test_getaddrinfo_after_shutdown_default_executor(run, host, port):
    # Numeric addresses need no lookup (treadle answers on the loop
    # thread), but the call still fails as asyncio's does.
    async def main():
        loop = asyncio.get_running_loop()
        await loop.shutdown_default_executor()
        await loop.getaddrinfo(host, port)
    with pytest.raises(RuntimeError, match="Executor shutdown has been called"):
        run(main())


def test_getaddrinfo_on_a_closed_loop(loop_factory):
    loop = loop_factory()
    loop.close()
    coro = loop.getaddrinfo("127.0.0.1", 80)
    with pytest.raises(RuntimeError, match="Event loop is closed"):
        coro.send(None)
    coro.close()


# ----------------------------------------------------------------------
# protocol factories that do not return a protocol
# ----------------------------------------------------------------------

class _Reports:
    def __init__(self, loop):
        self.contexts = []
        loop.set_exception_handler(lambda lp, context: self.contexts.append(context))


@pytest.mark.parametrize("factory", [lambda: None, object],
                         ids=["returns None", "returns object()"])
@pytest.mark.parametrize("method", ["create_connection", "create_unix_connection",
                                    "connect_accepted_socket"])
def test_stream_protocol_factory_without_connection_made(run, method, factory):
    async def main():
        loop = asyncio.get_running_loop()
        reports = _Reports(loop)
        a, b = socket.socketpair()
        with a, b:
            if method == "connect_accepted_socket":
                call = loop.connect_accepted_socket(factory, a)
            else:
                call = getattr(loop, method)(factory, sock=a)
            with pytest.raises(AttributeError, match="has no attribute 'connection_made'"):
                await call
            for _ in range(5):
                await asyncio.sleep(0)
        return reports.contexts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)   # asyncio's half-made transport
        assert run(main()) == []


def test_datagram_protocol_factory_returning_none(run):
    async def main():
        loop = asyncio.get_running_loop()
        reports = _Reports(loop)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            with pytest.raises(AttributeError, match="has no attribute 'connection_made'"):
                await loop.create_datagram_endpoint(lambda: None, sock=sock)
            for _ in range(5):
                await asyncio.sleep(0)
        return reports.contexts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert run(main()) == []


@pytest.mark.parametrize("method", ["connect_read_pipe", "connect_write_pipe"])
def test_pipe_protocol_factory_returning_none(run, method):
    async def main():
        loop = asyncio.get_running_loop()
        reports = _Reports(loop)
        r, w = os.pipe()
        with open(r, "rb", buffering=0) as rf, open(w, "wb", buffering=0) as wf:
            pipe = rf if method == "connect_read_pipe" else wf
            with pytest.raises(AttributeError, match="has no attribute 'connection_made'"):
                await getattr(loop, method)(lambda: None, pipe)
            for _ in range(5):
                await asyncio.sleep(0)
        return reports.contexts
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert run(main()) == []


def test_failed_protocol_factory_leaves_no_socket_behind():
    # asyncio leaves the socket it connected to the garbage collector
    # (ResourceWarning); treadle closes it (README).
    async def main():
        loop = asyncio.get_running_loop()
        server = await loop.create_server(asyncio.Protocol, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(AttributeError):
                await loop.create_connection(lambda: None, "127.0.0.1", port)
            with pytest.raises(ZeroDivisionError):
                await loop.create_connection(lambda: 1 / 0, "127.0.0.1", port)
            with pytest.raises(AttributeError):
                await loop.create_datagram_endpoint(lambda: None,
                                                    remote_addr=("127.0.0.1", port))
        finally:
            server.close()
            await server.wait_closed()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        treadle.run(main())


def test_subprocess_protocol_factory_returning_none_spawns_nothing():
    # asyncio spawns the child first, then hangs (3.11, 3.12) or kills it
    # and reports errors (3.13+); treadle refuses before the spawn (README).
    async def main(marker):
        loop = asyncio.get_running_loop()
        reports = _Reports(loop)
        with pytest.raises(AttributeError, match="has no attribute 'connection_made'"):
            await loop.subprocess_shell(lambda: None, f"touch {marker}")
        with pytest.raises(AttributeError, match="has no attribute 'connection_made'"):
            await loop.subprocess_exec(lambda: None, "touch", marker)
        await asyncio.sleep(0.1)
        return reports.contexts

    marker = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"treadle-spawned-{os.getpid()}")
    assert treadle.run(main(marker)) == []
    assert not os.path.exists(marker)


# ----------------------------------------------------------------------
# signals
# ----------------------------------------------------------------------

@pytest.mark.parametrize("sig, error", [(0, ValueError), ("x", TypeError)])
def test_add_signal_handler_checks_the_signal_first(loop, sig, error):
    with pytest.raises(error):
        loop.add_signal_handler(sig, "not callable")


def test_add_signal_handler_refuses_a_non_callable_at_once():
    loop = treadle.new_event_loop()
    try:
        with pytest.raises(TypeError, match="a callable object was expected"):
            loop.add_signal_handler(signal.SIGUSR1, 5)
        assert not loop.remove_signal_handler(signal.SIGUSR1)
    finally:
        loop.close()


# ----------------------------------------------------------------------
# more found by the differential test
# ----------------------------------------------------------------------

@pytest.mark.parametrize("server_side", [1.5, "x", None])
def test_start_tls_server_side_that_is_not_an_int(run, server_side):
    # What ssl itself says of it, as on asyncio (the compiled TLS state
    # machine used to refuse it with "bool object expected").
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    try:
        context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(), server_side=server_side)
    except Exception as exc:
        expected = exc
    else:
        pytest.skip(f"this ssl module takes server_side={server_side!r}")

    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
            try:
                await loop.start_tls(transport, asyncio.Protocol(), context,
                                     server_side=server_side)
            finally:
                transport.close()
                await asyncio.sleep(0)
    with pytest.raises(type(expected), match=re.escape(str(expected))):
        run(main())


def test_start_tls_server_hostname_as_bytes_is_accepted(run):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            transport, _ = await loop.create_connection(asyncio.Protocol, sock=a)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            upgrade = asyncio.ensure_future(loop.start_tls(
                transport, asyncio.Protocol(), context, server_hostname=b"localhost",
                ssl_handshake_timeout=0.05))
            # No TLS peer: the handshake times out, past the argument checks.
            with pytest.raises(ConnectionAbortedError):
                await upgrade
            transport.close()
            await asyncio.sleep(0)
    run(main())


def test_accepted_connection_whose_protocol_factory_returns_none(run, loop_factory):
    # As on asyncio, debug mode reports it; treadle also closes the
    # connection at once (asyncio leaves it to the garbage collector).
    async def main():
        loop = asyncio.get_running_loop()
        reports = _Reports(loop)
        server = await loop.create_server(lambda: None, "127.0.0.1", 0)
        try:
            reader, writer = await asyncio.open_connection(
                *server.sockets[0].getsockname())
            for _ in range(200):
                if reports.contexts:
                    break
                await asyncio.sleep(0.005)
            if loop_factory is treadle.new_event_loop:
                assert await reader.read() == b""
            writer.close()
            await writer.wait_closed()
        finally:
            server.close()
            if loop_factory is treadle.new_event_loop:
                # (asyncio 3.12+ would wait for its half-made transport)
                await server.wait_closed()
        return [c["message"] for c in reports.contexts]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        assert run(main(), debug=True) == [
            "Error on transport creation for incoming connection"]


def test_create_server_on_an_empty_list_of_hosts(run):
    # 3.13 refuses; 3.11 and 3.12 make a server without sockets.
    async def main():
        server = await asyncio.get_running_loop().create_server(asyncio.Protocol, [], 0)
        server.close()
        await server.wait_closed()
        return server.sockets
    if sys.version_info >= (3, 13):
        with pytest.raises(OSError, match="could not bind on any address out of"):
            run(main())
    else:
        assert run(main()) == ()


def test_sendfile_fallback_starts_where_this_asyncio_starts(run):
    # gh-150107: asyncio seeks to offset 0 before a read-and-send fallback
    # from 3.14 on (and in later 3.13 releases); before, it read on from
    # the file's position.  treadle does what the running asyncio does.
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with a, b:
            a.setblocking(False)
            data = io.BytesIO(b"0123456789")      # no fileno(): the fallback
            data.seek(5)
            return await loop.sock_sendfile(a, data, 0)

    source = inspect.getsource(asyncio.base_events.BaseEventLoop._sock_sendfile_fallback)
    seeks = re.search(r"if hasattr\(file, 'seek'\):\s*file\.seek\(offset\)", source)
    assert run(main()) == (10 if seeks else 5)


def test_no_deprecation_warning_from_the_coroutine_function_checks():
    # 3.14 deprecates asyncio.iscoroutinefunction; treadle uses what
    # asyncio's loop uses.
    async def handler():
        pass

    loop = treadle.new_event_loop()
    try:
        loop.set_debug(True)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with pytest.raises(TypeError, match="coroutines cannot be used"):
                loop.add_signal_handler(signal.SIGUSR1, handler)
            with pytest.raises(TypeError, match="coroutines cannot be used"):
                loop.call_soon(handler)
            loop.add_signal_handler(signal.SIGUSR1, _f)
            loop.remove_signal_handler(signal.SIGUSR1)
    finally:
        loop.close()
