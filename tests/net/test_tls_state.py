"""The TLS state machine on its own: two TLSConnections wired back to back
in memory, no event loop, no socket, no thread."""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from treadle._net._tlsstate import (CLOSED, FLUSHING, HANDSHAKING, SHUTDOWN, UNWRAPPED, WRAPPED,
                                    HandshakeComplete, TLSConnection, TLSStateError)

from .test_tls_support import VERSIONS, client_context, get_certs, server_context


class Pair:
    """A client and a server connection and the wire between them."""

    def __init__(self, client_ctx: ssl.SSLContext | None = None,
                 server_ctx: ssl.SSLContext | None = None, *,
                 server_hostname: str | None = "localhost",
                 version: ssl.TLSVersion | None = None) -> None:
        self.client = TLSConnection(client_ctx or client_context(version=version),
                                    server_hostname=server_hostname)
        self.server = TLSConnection(server_ctx or server_context(version=version),
                                    server_side=True)
        self.client_events: list[HandshakeComplete] = []
        self.server_events: list[HandshakeComplete] = []

    def to_server(self, chunk: int = 0) -> int:
        return self._move(self.client, self.server, chunk)

    def to_client(self, chunk: int = 0) -> int:
        return self._move(self.server, self.client, chunk)

    @staticmethod
    def _move(src: TLSConnection, dst: TLSConnection, chunk: int) -> int:
        data = src.data_to_send()
        if chunk:
            for i in range(0, len(data), chunk):
                dst.receive(data[i:i + chunk])
        elif data:
            dst.receive(data)
        return len(data)

    def handshake(self, chunk: int = 0) -> None:
        event = self.client.start_handshake()
        assert event is None                       # the client speaks first
        event = self.server.start_handshake()
        assert event is None
        for _ in range(20):
            moved = self.to_server(chunk)
            if self.server.state == HANDSHAKING:
                event = self.server.do_handshake()
                if event is not None:
                    self.server_events.append(event)
            moved += self.to_client(chunk)
            if self.client.state == HANDSHAKING:
                event = self.client.do_handshake()
                if event is not None:
                    self.client_events.append(event)
            if (self.client.state == WRAPPED and self.server.state == WRAPPED
                    and not moved and not self.client.bytes_to_send
                    and not self.server.bytes_to_send):
                return
        raise AssertionError("handshake did not finish")

    def pump(self) -> None:
        """Deliver everything in flight both ways (reads nothing)."""
        while self.to_server() or self.to_client():
            pass


def read_all(conn: TLSConnection) -> bytes:
    out = bytearray()
    while True:
        data = conn.read()
        if not data:
            return bytes(out)
        out += data


# -- handshake -----------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_handshake_reports_version_cipher_and_certificate(version: ssl.TLSVersion) -> None:
    pair = Pair(version=version)
    assert pair.client.state == UNWRAPPED and pair.server.state == UNWRAPPED
    pair.handshake()
    assert pair.client.state == WRAPPED and pair.server.state == WRAPPED
    (client_event,) = pair.client_events
    (server_event,) = pair.server_events
    expected = "TLSv1.3" if version == ssl.TLSVersion.TLSv1_3 else "TLSv1.2"
    assert client_event.version == server_event.version == expected
    assert client_event.cipher == server_event.cipher
    assert client_event.cipher is not None and client_event.cipher[1] == expected
    subject = dict(x[0] for x in client_event.peercert["subject"])
    assert subject["commonName"] == "localhost"
    assert server_event.peercert is None          # no client certificate
    assert client_event.compression is None
    assert "HandshakeComplete" in repr(client_event)


def test_handshake_in_one_byte_pieces() -> None:
    pair = Pair()
    pair.handshake(chunk=1)
    pair.client.send(b"ping")
    pair.to_server(chunk=1)
    assert pair.server.read() == b"ping"


def test_alpn_is_reported() -> None:
    cctx, sctx = client_context(), server_context()
    cctx.set_alpn_protocols(["h2", "http/1.1"])
    sctx.set_alpn_protocols(["http/1.1"])
    pair = Pair(cctx, sctx)
    pair.handshake()
    assert pair.client_events[0].alpn_protocol == "http/1.1"
    assert pair.server_events[0].alpn_protocol == "http/1.1"


def test_client_certificate_is_reported_to_the_server() -> None:
    certs = get_certs()
    pair = Pair(client_context(cert=certs.fakehost), server_context(verify_clients=True))
    pair.handshake()
    subject = dict(x[0] for x in pair.server_events[0].peercert["subject"])
    assert subject["commonName"] == "fakehostname"


def test_server_may_receive_the_client_hello_before_it_starts() -> None:
    pair = Pair()
    assert pair.client.start_handshake() is None
    pair.to_server()
    assert pair.server.bytes_received > 0
    assert pair.server.start_handshake() is None     # answers the hello at once
    assert pair.server.bytes_to_send > 0


def test_untrusted_certificate_fails_the_client_and_alerts_the_server() -> None:
    certs = get_certs()
    pair = Pair(server_ctx=server_context(certs.selfsigned))
    pair.client.start_handshake()
    pair.server.start_handshake()
    pair.to_server()
    pair.server.do_handshake()
    pair.to_client()
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        pair.client.do_handshake()
    assert info.value.reason == "CERTIFICATE_VERIFY_FAILED"
    assert pair.client.state == CLOSED
    assert pair.client.error is info.value
    # The alert that says why is waiting to be sent...
    assert pair.client.bytes_to_send > 0
    pair.to_server()
    # ...and fails the server's side with it.
    with pytest.raises(ssl.SSLError) as server_info:
        pair.server.do_handshake()
    assert "alert" in str(server_info.value).lower()
    assert pair.server.state == CLOSED


def test_wrong_host_name_fails_the_handshake() -> None:
    pair = Pair(server_hostname="example.org")
    pair.client.start_handshake()
    pair.server.start_handshake()
    pair.to_server()
    pair.server.do_handshake()
    pair.to_client()
    with pytest.raises(ssl.CertificateError, match="(?i)hostname mismatch"):
        pair.client.do_handshake()
    assert pair.client.state == CLOSED


def _wrap_bio_needs_a_host_name() -> bool:
    """Python 3.14+ refuses a client SSLObject without server_hostname when
    the context checks host names; before, it only skipped the name check."""
    try:
        client_context().wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO(),
                                  server_hostname=None)
    except ValueError:
        return True
    return False


def test_without_a_host_name_only_the_chain_is_checked() -> None:
    # As ssl.SSLObject (and so asyncio's start_tls) behaves: no name to
    # match, but the certificate must still chain to a trusted CA.
    if _wrap_bio_needs_a_host_name():
        with pytest.raises(ValueError, match="server_hostname"):
            Pair(server_hostname=None)
        return
    pair = Pair(server_hostname=None)
    pair.handshake()
    certs = get_certs()
    pair = Pair(server_ctx=server_context(certs.selfsigned), server_hostname=None)
    with pytest.raises(ssl.SSLCertVerificationError):
        pair.handshake()


@pytest.mark.parametrize("version", VERSIONS)
def test_missing_client_certificate(version: ssl.TLSVersion) -> None:
    pair = Pair(server_ctx=server_context(verify_clients=True, version=version),
                version=version)
    pair.client.start_handshake()
    pair.server.start_handshake()
    pair.to_server()
    pair.server.do_handshake()
    pair.to_client()
    if version == ssl.TLSVersion.TLSv1_2:
        pair.client.do_handshake()
        pair.to_server()
        with pytest.raises(ssl.SSLError, match="(?i)certificate"):
            pair.server.do_handshake()
    else:
        # TLS 1.3: the client is done before the server has judged its
        # (missing) certificate; the verdict arrives as an alert later.
        assert pair.client.do_handshake() is not None
        pair.client.send(b"hello")
        pair.to_server()
        with pytest.raises(ssl.SSLError, match="(?i)certificate"):
            pair.server.do_handshake()
        pair.to_client()
        with pytest.raises(ssl.SSLError, match="(?i)certificate"):
            pair.client.read()
        assert pair.client.state == CLOSED


def test_eof_during_handshake_is_a_connection_reset() -> None:
    pair = Pair()
    pair.client.start_handshake()
    with pytest.raises(ConnectionResetError):
        pair.client.receive_eof()
    assert pair.client.state == CLOSED
    assert isinstance(pair.client.error, ConnectionResetError)
    pair.client.receive(b"ignored once closed")
    pair.client.receive_eof()                       # idempotent


def test_eof_before_the_handshake_starts() -> None:
    pair = Pair()
    with pytest.raises(ConnectionResetError):
        pair.server.receive_eof()
    assert pair.server.state == CLOSED


def test_garbage_instead_of_a_handshake() -> None:
    pair = Pair()
    pair.server.start_handshake()
    pair.server.receive(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    with pytest.raises(ssl.SSLError):
        pair.server.do_handshake()
    assert pair.server.state == CLOSED


# -- application data ----------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_data_both_ways(version: ssl.TLSVersion) -> None:
    pair = Pair(version=version)
    pair.handshake()
    pair.client.send(b"hello ")
    pair.client.send(bytearray(b"server"))
    pair.to_server()
    assert pair.server.read() == b"hello server"
    pair.server.send(memoryview(b"hello client"))
    pair.to_client()
    buf = bytearray(100)
    n = pair.client.read_into(buf)
    assert buf[:n] == b"hello client"
    assert pair.client.read_into(buf) == 0            # nothing more now
    assert not pair.client.close_notify_received


def test_strided_and_typed_memoryviews_are_sent_as_their_bytes() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send(memoryview(b"a-b-c-")[::2])           # not contiguous
    pair.client.send(memoryview(bytearray(b"\x01\x00\x02\x00")).cast("H"))
    pair.to_server()
    assert pair.server.read() == b"abc\x01\x00\x02\x00"


def test_large_writes_span_many_records() -> None:
    pair = Pair()
    pair.handshake()
    payload = bytes(range(256)) * 4096                 # 1 MiB
    pair.client.send(payload)
    wire = pair.client.data_to_send()
    assert len(wire) > len(payload)                    # 64+ records of overhead
    received = bytearray()
    for i in range(0, len(wire), 7001):               # odd-sized wire chunks
        pair.server.receive(wire[i:i + 7001])
        received += read_all(pair.server)
    assert received == payload


def test_read_limits() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.send(b"a" * 50000)
    pair.to_server()
    assert pair.server.read(100) == b"a" * 100
    buf = bytearray(1000)
    assert pair.server.read_into(buf) == 1000
    assert pair.server.read_into(memoryview(buf)[:0]) == 0
    assert len(read_all(pair.server)) == 50000 - 1100


def test_data_queued_before_the_handshake_goes_first_in_order() -> None:
    pair = Pair()
    pair.client.send(b"one ")                          # UNWRAPPED
    pair.client.start_handshake()
    pair.client.send(b"two ")                          # HANDSHAKING
    assert pair.client.queued == 8
    pair.server.start_handshake()
    while pair.client.state != WRAPPED:
        pair.to_server()
        if pair.server.state == HANDSHAKING:
            pair.server.do_handshake()
        pair.to_client()
        pair.client.do_handshake()
    assert pair.client.queued == 0                     # encrypted on completion
    pair.client.send(b"three")
    pair.to_server()
    if pair.server.state == HANDSHAKING:
        pair.server.do_handshake()
    assert read_all(pair.server) == b"one two three"


def test_mutable_data_is_copied_when_queued() -> None:
    pair = Pair()
    data = bytearray(b"original")
    pair.client.send(data)                             # queued before the handshake
    data[:] = b"changed!"
    pair.handshake()
    assert read_all(pair.server) == b"original"


def test_reads_and_sends_in_the_wrong_state() -> None:
    pair = Pair()
    with pytest.raises(TLSStateError):
        pair.client.read()
    with pytest.raises(TLSStateError):
        pair.client.read_into(bytearray(10))
    with pytest.raises(TLSStateError):
        pair.client.do_handshake()
    with pytest.raises(TLSStateError):
        pair.client.do_shutdown()
    pair.handshake()
    with pytest.raises(TLSStateError):
        pair.client.start_handshake()
    with pytest.raises(TLSStateError):
        pair.client.do_handshake()
    pair.client.start_shutdown()
    with pytest.raises(TLSStateError):
        pair.client.send(b"too late")
    with pytest.raises(TLSStateError):
        pair.client.queue(b"too late")
    assert "SHUTDOWN" in repr(pair.client)


def test_corrupted_record_fails_after_the_good_data() -> None:
    pair = Pair()
    pair.handshake()
    pair.server.send(b"good")
    good = pair.server.data_to_send()
    pair.server.send(b"bad!")
    bad = bytearray(pair.server.data_to_send())
    bad[-3] ^= 0xFF                                    # inside the auth tag
    pair.client.receive(good + bad)
    assert pair.client.read() == b"good"               # delivered first
    assert pair.client.error is not None
    with pytest.raises(ssl.SSLError):
        pair.client.raise_error()
    assert pair.client.state == CLOSED


def test_corrupted_record_alone_raises_from_the_read() -> None:
    pair = Pair()
    pair.handshake()
    pair.server.send(b"data")
    bad = bytearray(pair.server.data_to_send())
    bad[-1] ^= 0x01
    pair.client.receive(bad)
    with pytest.raises(ssl.SSLError):
        pair.client.read_into(bytearray(100))
    assert pair.client.state == CLOSED
    assert pair.client.read() == b""                   # CLOSED: nothing


def test_corruption_found_by_read_into_after_data() -> None:
    pair = Pair()
    pair.handshake()
    pair.server.send(b"x" * 100)
    good = pair.server.data_to_send()
    pair.server.send(b"y" * 100)
    bad = bytearray(pair.server.data_to_send())
    bad[10] ^= 0xFF
    pair.client.receive(good + bad)
    buf = bytearray(1000)
    assert pair.client.read_into(buf) == 100
    with pytest.raises(ssl.SSLError):
        pair.client.read_into(buf)


# -- closing -------------------------------------------------------------------

@pytest.mark.parametrize("version", VERSIONS)
def test_close_notify_initiated_by_the_client(version: ssl.TLSVersion) -> None:
    pair = Pair(version=version)
    pair.handshake()
    pair.client.send(b"last words")
    assert pair.client.start_shutdown() is False
    assert pair.client.state == SHUTDOWN and pair.client.close_notify_sent
    pair.to_server()
    assert pair.server.read() == b"last words"
    assert pair.server.read() == b""
    assert pair.server.close_notify_received
    assert pair.server.start_shutdown() is True       # the peer closed first
    assert pair.server.state == CLOSED and pair.server.close_notify_sent
    assert not pair.server.truncated
    pair.to_client()
    assert pair.client.do_shutdown() is True
    assert pair.client.state == CLOSED
    assert pair.client.close_notify_received and not pair.client.truncated
    assert pair.client.do_shutdown() is True           # idempotent
    pair.client.receive(b"ignored")


def test_close_notify_initiated_by_the_server_with_data_pending() -> None:
    pair = Pair()
    pair.handshake()
    pair.server.send(b"bye")
    pair.server.start_shutdown()
    pair.to_client()
    buf = bytearray(10)
    n = pair.client.read_into(buf)
    assert buf[:n] == b"bye"
    assert pair.client.read_into(buf) == 0 and pair.client.close_notify_received
    assert pair.client.start_shutdown() is True
    pair.to_server()
    assert pair.server.do_shutdown() is True


@pytest.mark.parametrize("version", VERSIONS)
def test_half_close_the_peer_keeps_sending(version: ssl.TLSVersion) -> None:
    pair = Pair(version=version)
    pair.handshake()
    pair.client.start_shutdown()
    pair.to_server()
    assert pair.server.read() == b""
    assert pair.server.close_notify_received
    # The server may still send: TLS half-close.
    pair.server.send(b"still talking")
    pair.to_client()
    assert pair.client.state == SHUTDOWN
    assert pair.client.read() == b"still talking"      # kept if read
    pair.server.start_shutdown()
    pair.to_client()
    assert pair.client.do_shutdown() is True


def test_data_after_our_close_notify_is_discarded() -> None:
    # asyncio fails here with APPLICATION_DATA_AFTER_CLOSE_NOTIFY.
    pair = Pair()
    pair.handshake()
    pair.client.start_shutdown()
    pair.server.send(b"written before the server saw the close")
    pair.to_client()
    assert pair.client.do_shutdown() is False          # data discarded, wait on
    assert pair.client.state == SHUTDOWN
    pair.to_server()
    assert pair.server.read() == b""
    pair.server.start_shutdown()
    pair.to_client()
    assert pair.client.do_shutdown() is True
    assert pair.client.error is None


def test_eof_while_waiting_for_the_peers_close_notify() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.start_shutdown()
    pair.client.receive_eof()
    assert pair.client.state == CLOSED and pair.client.truncated
    assert pair.client.do_shutdown() is True


def test_shutdown_before_the_handshake_is_an_abort() -> None:
    pair = Pair()
    pair.client.send(b"never sent")
    assert pair.client.start_shutdown() is True
    assert pair.client.state == CLOSED and pair.client.queued == 0
    assert pair.client.bytes_to_send == 0
    pair.server.start_handshake()
    assert pair.server.start_shutdown() is True


def test_abort() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.abort()
    assert pair.client.state == CLOSED
    with pytest.raises(TLSStateError):
        pair.client.send(b"x")
    assert pair.client.read() == b"" and pair.client.read_into(bytearray(1)) == 0
    assert pair.client.start_shutdown() is True


# -- truncation ----------------------------------------------------------------

def test_eof_after_complete_records_without_close_notify_is_truncation() -> None:
    pair = Pair()
    pair.handshake()
    pair.server.send(b"complete")
    pair.to_client()
    pair.client.receive_eof()
    assert pair.client.read() == b"complete"           # still readable
    assert pair.client.read() == b""
    assert pair.client.truncated
    with pytest.raises(TLSStateError):
        pair.client.receive(b"after eof")


def test_eof_inside_a_record_is_truncation() -> None:
    pair = Pair()
    pair.handshake()
    pair.server.send(b"x" * 1000)
    wire = pair.server.data_to_send()
    pair.client.receive(wire[:len(wire) // 2])
    pair.client.receive_eof()
    assert pair.client.read_into(bytearray(2000)) == 0
    assert pair.client.truncated
    assert pair.client.state == WRAPPED                # no error: a ragged EOF


def test_eof_after_close_notify_is_not_truncation() -> None:
    pair = Pair()
    pair.handshake()
    pair.server.start_shutdown()
    pair.to_client()
    pair.client.receive_eof()
    assert pair.client.read() == b""
    assert pair.client.close_notify_received and not pair.client.truncated
    # After an EOF no close_notify is sent back, as asyncio.
    assert pair.client.start_shutdown() is True
    assert not pair.client.close_notify_sent


def test_eof_makes_a_shutdown_send_what_was_queued_but_no_close_notify() -> None:
    pair = Pair()
    pair.handshake()
    pair.client.receive_eof()                          # the server half-closed TCP
    pair.client.send(b"answer")
    assert pair.client.start_shutdown() is True
    assert pair.client.state == CLOSED and not pair.client.close_notify_sent
    pair.to_server()
    assert pair.server.read() == b"answer"
    assert not pair.server.close_notify_received


# -- writes that cannot finish: renegotiation, WantWrite ------------------------

class Stalling:
    """Wraps the C SSL object so writes raise *error* while ``stalled``."""

    def __init__(self, inner: Any, error: type[BaseException]) -> None:
        self.inner = inner
        self.error = error
        self.stalled = True
        self.attempts = 0

    def write(self, data: Any) -> int:
        self.attempts += 1
        if self.stalled:
            raise self.error("stalled")
        return int(self.inner.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("error", [ssl.SSLWantReadError, ssl.SSLWantWriteError])
def test_a_stalled_write_keeps_the_data_queued_in_order(error: type[BaseException]) -> None:
    pair = Pair()
    pair.handshake()
    stall = Stalling(pair.client._sslobj, error)
    pair.client._sslobj = stall
    pair.client.send(b"first ")
    pair.client.send(memoryview(b"second "))
    assert pair.client.queued == 13 and pair.client.bytes_to_send == 0
    stall.stalled = False
    pair.client.send(b"third")                         # retries the queue first
    assert pair.client.queued == 0
    pair.to_server()
    assert read_all(pair.server) == b"first second third"


def test_a_read_retries_a_stalled_write() -> None:
    pair = Pair()
    pair.handshake()
    stall = Stalling(pair.client._sslobj, ssl.SSLWantReadError)
    pair.client._sslobj = stall
    pair.client.send(b"queued")
    stall.stalled = False
    pair.server.send(b"reply")
    pair.to_client()
    assert pair.client.read() == b"reply"
    assert pair.client.queued == 0
    pair.to_server()
    assert pair.server.read() == b"queued"


def test_shutdown_flushes_a_stalled_queue_before_close_notify() -> None:
    pair = Pair()
    pair.handshake()
    stall = Stalling(pair.client._sslobj, ssl.SSLWantReadError)
    pair.client._sslobj = stall
    pair.client.send(b"must arrive")
    assert pair.client.start_shutdown() is False
    assert pair.client.state == FLUSHING               # queue first
    assert not pair.client.close_notify_sent
    stall.stalled = False
    assert pair.client.do_shutdown() is False
    assert pair.client.state == SHUTDOWN and pair.client.close_notify_sent
    pair.to_server()
    assert pair.server.read() == b"must arrive"
    assert pair.server.read() == b"" and pair.server.close_notify_received


def test_eof_drops_a_queue_that_can_never_be_sent() -> None:
    pair = Pair()
    pair.handshake()
    stall = Stalling(pair.client._sslobj, ssl.SSLWantReadError)
    pair.client._sslobj = stall
    pair.client.send(b"lost")
    pair.client.start_shutdown()
    assert pair.client.state == FLUSHING
    pair.client.receive_eof()
    assert pair.client.state == CLOSED and pair.client.queued == 0


def test_an_ssl_error_on_write_closes() -> None:
    pair = Pair()
    pair.handshake()
    pair.client._sslobj = Stalling(pair.client._sslobj, ssl.SSLError)
    with pytest.raises(ssl.SSLError):
        pair.client.send(b"x")
    assert pair.client.state == CLOSED
    assert isinstance(pair.client.error, ssl.SSLError)
