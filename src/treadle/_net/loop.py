"""The networking layer of the loop: sockets, transports, servers, TLS, DNS.

Owns: nothing of its own; it names the top of the networking stack, the
class ``treadle.EventLoop`` inherits (see ``_loop.py``).
Never: the kernel imports this package; everything here reaches the kernel
only through its typed contract (``_kernel/contract.py``; the transports'
loop type is ``base.NetLoop``).

The layer is a chain of classes, one per module, each adding one concern
to the one below (single inheritance, so that it compiles):

    KernelLoop
      DNSMixin       dns.py       getaddrinfo/getnameinfo, numeric fast path
      SocketMixin    sockets.py   sock_* methods, the fd -> transport registry
      SendfileMixin  sendfile.py  sock_sendfile, sendfile
      ConnectMixin   connect.py   create_connection, Unix, UDP, start_tls
      ServerMixin    server.py    create_server, create_unix_server, accept
      NetworkMixin   (here)

Transports live beside them: ``stream.py`` (TCP and Unix streams) and
``datagram.py`` (UDP), each a thin ``asyncio`` transport over its compiled
core in ``core.py``; how they write is ``_writeflow.py``'s rule.  TLS is
``tls.py`` over ``_tlsstate.py``.
"""

from __future__ import annotations

from .server import ServerMixin


class NetworkMixin(ServerMixin):
    """Adds asyncio's socket, transport, server and DNS methods."""
