"""HTTP framing on both sides, without a loop: the server's request framer
and the load generator's response parser."""

from __future__ import annotations

import pytest

from treadle.bench._http import HEAD, HEAD_CLOSE, RESPONSE, HttpError, RequestFramer
from treadle.bench._loadgen import parse_response

GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_one_request_per_feed():
    f = RequestFramer()
    assert f.feed(GET) == (1, False)
    assert f.feed(GET) == (1, False)


def test_pipelined_and_split_requests():
    f = RequestFramer()
    data = GET * 3
    assert f.feed(data[:10]) == (0, False)
    assert f.feed(data[10:len(GET) * 2 - 1]) == (1, False)   # "\r\n\r\n" straddles feeds
    assert f.feed(data[len(GET) * 2 - 1:]) == (2, False)
    assert f.feed(b"") == (0, False)


def test_terminator_split_byte_by_byte():
    f = RequestFramer()
    counts = [f.feed(bytes([b])) for b in GET]
    assert counts[-1] == (1, False) and all(c == (0, False) for c in counts[:-1])


def test_body_by_content_length():
    f = RequestFramer()
    req = b"POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
    assert f.feed(req[:-2]) == (0, False)
    assert f.feed(req[-2:] + GET) == (2, False)


def test_connection_close_and_http10():
    f = RequestFramer()
    assert f.feed(GET + b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n" + GET) == (2, True)
    assert f.closed and f.feed(GET) == (0, True)
    assert RequestFramer().feed(b"GET / HTTP/1.0\r\n\r\n") == (1, True)
    assert RequestFramer().feed(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") == (1, False)


@pytest.mark.parametrize("bad, status", [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nno colon\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501),
])
def test_bad_requests(bad, status):
    with pytest.raises(HttpError) as info:
        RequestFramer().feed(bad)
    assert info.value.status == status
    assert info.value.response().startswith(b"HTTP/1.1 %d " % status)


def test_oversized_head():
    with pytest.raises(HttpError, match="too large"):
        RequestFramer().feed(b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 20000)


def test_response_parser_frames_the_server_responses():
    buf = bytearray(RESPONSE + RESPONSE[:5])
    assert parse_response(buf) == (len(RESPONSE), 200)
    assert parse_response(bytearray(HEAD)) == (0, 200)              # body missing
    assert parse_response(bytearray(HEAD_CLOSE + b"Hello, World!"))[0] == len(HEAD_CLOSE) + 13
    not_found = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    assert parse_response(bytearray(not_found)) == (len(not_found), 404)
    with pytest.raises(ValueError, match="Content-Length"):
        parse_response(bytearray(b"HTTP/1.1 200 OK\r\n\r\n"))
    with pytest.raises(ValueError, match="status line"):
        parse_response(bytearray(b"NOPE\r\n\r\n"))


def test_response_parser_frames_chunked_responses():
    # uvicorn chunks a body sent without a length.
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    body = b"d\r\nHello, World!\r\n0\r\n\r\n"
    whole = head + body
    assert parse_response(bytearray(whole + b"HTTP/1.1")) == (len(whole), 200)
    for cut in range(len(head), len(whole)):
        assert parse_response(bytearray(whole[:cut])) == (0, 200)
    trailers = head + b"3;x=y\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
    assert parse_response(bytearray(trailers)) == (len(trailers), 200)
