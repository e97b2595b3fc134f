"""Request framing for the benchmark's minimal HTTP/1.1 server.

Owns: cutting a byte stream into requests (request line, headers,
Content-Length body; pipelining; keep-alive rules of HTTP/1.0 and 1.1).
Never: touches a socket, a transport or a loop.  It is a plain state
machine fed with bytes (h11 style), so the server's parsing is tested
without a loop and costs every loop under test exactly the same.

The server answers every request with the same small response; what the
benchmark measures is the loop's transport path, so the parser does only
what a real minimal server must: it reads every header line.
"""

from __future__ import annotations

MAX_HEAD = 65536

BODY = b"Hello, World!"
HEAD = (b"HTTP/1.1 200 OK\r\nServer: treadle-bench\r\nContent-Type: text/plain\r\n"
        b"Content-Length: %d\r\n\r\n" % len(BODY))
RESPONSE = HEAD + BODY
HEAD_CLOSE = HEAD[:-2] + b"Connection: close\r\n\r\n"


class HttpError(ValueError):
    """A request the server refuses; *status* is the HTTP status to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status

    def response(self) -> bytes:
        text = str(self).encode("ascii", "replace")
        return (b"HTTP/1.1 %d %s\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (self.status, b"Bad Request" if self.status == 400 else b"Error",
                   len(text), text))


class RequestFramer:
    """Feed bytes, get back how many complete requests they finished.

    ``feed(data) -> (count, close)``: *close* is True when the last of those
    requests ends the connection (``Connection: close``, or HTTP/1.0
    without ``keep-alive``); bytes after it are ignored and so is any later
    feed.  Raises ``HttpError`` on a malformed request.
    """

    __slots__ = ("_buf", "_scan", "closed")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._scan = 0          # where to resume looking for the blank line
        self.closed = False

    def feed(self, data: bytes) -> tuple[int, bool]:
        if self.closed:
            return 0, True
        buf = self._buf
        buf += data
        count = 0
        while True:
            end = buf.find(b"\r\n\r\n", self._scan)
            if end < 0:
                if len(buf) > MAX_HEAD:
                    raise HttpError(400, "request head too large")
                # The terminator may straddle two reads.
                self._scan = max(0, len(buf) - 3)
                break
            close, clen = self._head(bytes(buf[:end]))
            total = end + 4 + clen
            if len(buf) < total:
                self._scan = end        # head known; wait for the body
                break
            del buf[:total]
            self._scan = 0
            count += 1
            if close:
                self.closed = True
                buf.clear()
                return count, True
        return count, False

    @staticmethod
    def _head(head: bytes) -> tuple[bool, int]:
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
            raise HttpError(400, f"bad request line {lines[0][:80]!r}")
        version = parts[2]
        clen = 0
        connection = b""
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon or not name or name != name.strip():
                raise HttpError(400, f"bad header line {line[:80]!r}")
            key = name.lower()
            if key == b"content-length":
                try:
                    clen = int(value.strip())
                except ValueError:
                    raise HttpError(400, "bad Content-Length") from None
                if clen < 0:
                    raise HttpError(400, "bad Content-Length")
            elif key == b"transfer-encoding":
                raise HttpError(501, "Transfer-Encoding is not supported")
            elif key == b"connection":
                connection = value.strip().lower()
        if version == b"HTTP/1.0":
            close = connection != b"keep-alive"
        else:
            close = connection == b"close"
        return close, clen
