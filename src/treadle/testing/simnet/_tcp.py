"""TCP as the simulation models it: one direction of a connection, as a
pure state machine.

Owns: the bytes of one direction of a TCP connection from the sender's
kernel buffer to the receiver's - what the sender's buffer accepts (its
size less what is unsent, in flight or unacknowledged), what may go on the
wire (the receiver's window), segments in flight in order, the receiver's
buffer, FIN, and go-back-N when a segment is lost.
Never: knows about time, links, loops or sockets.  The network stack
(``_stack.py``) asks ``next_segment()``, decides when (and whether) the
segment arrives, and calls ``arrived()``/``lost()``/``acked()``.

Why so: "bytes arrive in order or the connection fails" is the whole
promise of TCP, and flow control (a slow reader pauses the writer) falls
out of two bounded buffers and a window.  Both are easy to get subtly
wrong with timers in the way, so they live here where tests drive them
directly.
"""

from __future__ import annotations

from collections import deque

#: Default buffer sizes (bytes) and the largest segment the model sends.
SNDBUF = 64 * 1024
RCVBUF = 128 * 1024
MSS = 64 * 1024


class Segment:
    """Bytes (and maybe FIN) on the wire, numbered in sending order."""

    __slots__ = ("seq", "data", "fin")

    def __init__(self, seq: int, data: bytes, fin: bool) -> None:
        self.seq = seq
        self.data = data
        self.fin = fin

    def __repr__(self) -> str:
        return f"<Segment #{self.seq} {len(self.data)}B{' FIN' if self.fin else ''}>"


class Flow:
    """One direction of a TCP connection."""

    __slots__ = ("sndbuf", "rcvbuf", "mss", "unsent", "inflight", "inflight_bytes",
                 "unacked", "received", "received_bytes", "fin_wanted", "fin_sent",
                 "fin_arrived", "fin_read", "next_seq", "expected_seq",
                 "bytes_delivered")

    def __init__(self, sndbuf: int = SNDBUF, rcvbuf: int = RCVBUF,
                 mss: int = MSS) -> None:
        if sndbuf < 1 or rcvbuf < 1 or mss < 1:
            raise ValueError("TCP buffer sizes must be >= 1")
        self.sndbuf = sndbuf
        self.rcvbuf = rcvbuf
        self.mss = mss
        self.unsent = bytearray()
        self.inflight: deque[Segment] = deque()
        self.inflight_bytes = 0
        self.unacked = 0
        self.received: deque[bytes] = deque()
        self.received_bytes = 0
        self.fin_wanted = False
        self.fin_sent = False
        self.fin_arrived = False
        self.fin_read = False
        self.next_seq = 0
        self.expected_seq = 0
        self.bytes_delivered = 0

    def __repr__(self) -> str:
        return (f"<Flow unsent={len(self.unsent)} inflight={self.inflight_bytes} "
                f"unacked={self.unacked} received={self.received_bytes}"
                f"{' fin' if self.fin_wanted else ''}>")

    # -- sender ---------------------------------------------------------

    def send_space(self) -> int:
        """Bytes the sender's buffer accepts now (unsent, in-flight and
        unacknowledged bytes all occupy it)."""
        if self.fin_wanted:
            return 0
        used = len(self.unsent) + self.inflight_bytes + self.unacked
        return max(0, self.sndbuf - used)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Put as much of *data* as fits in the send buffer; how much did."""
        n = min(len(data), self.send_space())
        if n:
            self.unsent += data[:n]
        return n

    def shutdown(self) -> None:
        """Send FIN after everything written so far."""
        self.fin_wanted = True

    def window(self) -> int:
        """Bytes the receiver can take beyond what is in flight."""
        return max(0, self.rcvbuf - self.received_bytes - self.inflight_bytes)

    def next_segment(self) -> Segment | None:
        """The next segment to put on the wire, or None (nothing to send, or
        the receiver's window is closed)."""
        if self.fin_sent:
            return None
        n = min(len(self.unsent), self.mss, self.window())
        fin = self.fin_wanted and n == len(self.unsent)
        if not n and not fin:
            return None
        data = bytes(self.unsent[:n])
        del self.unsent[:n]
        seg = Segment(self.next_seq, data, fin)
        self.next_seq += 1
        if fin:
            self.fin_sent = True
        self.inflight.append(seg)
        self.inflight_bytes += n
        return seg

    @property
    def idle(self) -> bool:
        """Nothing unsent, in flight or unacknowledged."""
        return not (self.unsent or self.inflight or self.unacked)

    @property
    def done_sending(self) -> bool:
        """FIN sent and everything acknowledged."""
        return self.fin_sent and not self.inflight and not self.unacked

    # -- the wire ---------------------------------------------------------

    def arrived(self, seg: Segment, acked: bool) -> bool:
        """*seg* reached the receiver (*acked*: and its ACK got back at
        once).  False if it is stale (lost and re-sent since)."""
        if seg.seq != self.expected_seq or not self.inflight or self.inflight[0] is not seg:
            return False
        self.inflight.popleft()
        self.expected_seq += 1
        n = len(seg.data)
        self.inflight_bytes -= n
        if not acked:
            self.unacked += n
        if n:
            self.received.append(seg.data)
            self.received_bytes += n
        if seg.fin:
            self.fin_arrived = True
        return True

    def acked(self) -> None:
        """The ACKs that could not get back have (the reverse path healed)."""
        self.unacked = 0

    def lost(self, seg: Segment) -> bool:
        """*seg* was lost on the wire: it and every segment sent after it
        go back to the front of the send buffer (go-back-N), to be sent
        again.  False if it is stale."""
        if not self.inflight or self.inflight[0] is not seg:
            return False
        back = bytearray()
        fin = False
        for s in self.inflight:
            back += s.data
            fin = fin or s.fin
        self.inflight.clear()
        self.inflight_bytes = 0
        self.unsent[:0] = back
        if fin:
            self.fin_sent = False
        # Numbers of the lost segments are never reused: stale arrivals of
        # them are recognised and ignored.
        self.expected_seq = self.next_seq
        return True

    # -- receiver ---------------------------------------------------------

    def readable(self) -> bool:
        """Data, or an EOF not yet read."""
        return bool(self.received) or (self.fin_arrived and not self.fin_read)

    def read(self, limit: int) -> bytes:
        """Up to *limit* received bytes; b"" at EOF (once FIN arrived and
        everything before it was read).  Call only when ``readable()``."""
        if not self.received:
            if self.fin_arrived:
                self.fin_read = True
            return b""
        first = self.received[0]
        if len(first) <= limit:
            self.received.popleft()
            if self.received and len(first) < limit:
                parts = [first]
                got = len(first)
                while self.received and got + len(self.received[0]) <= limit:
                    chunk = self.received.popleft()
                    parts.append(chunk)
                    got += len(chunk)
                first = b"".join(parts)
        else:
            self.received[0] = first[limit:]
            first = first[:limit]
        self.received_bytes -= len(first)
        self.bytes_delivered += len(first)
        return first

    def discard(self) -> int:
        """Drop everything received and unread (a reset); how much."""
        n = self.received_bytes
        self.received.clear()
        self.received_bytes = 0
        return n
