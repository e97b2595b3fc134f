"""The one place the networking layer gets its TLS protocol from.

Owns: the name ``TLSProtocol``: a buffered protocol that wraps an
application protocol in TLS, with the constructor of
``asyncio.sslproto.SSLProtocol(loop, app_protocol, sslcontext, waiter,
server_side=False, server_hostname=None, call_connection_made=True,
ssl_handshake_timeout=None, ssl_shutdown_timeout=None)`` and its
``_app_transport`` attribute.
Never: anything else.  ``connect.py`` and ``server.py`` import TLSProtocol
from here only, so moving to treadle's own engine (``tls.py``) is a
one-line change in this file.

Why asyncio's for now: treadle's TLS engine is being written separately;
asyncio's SSLProtocol drives any transport that has asyncio's transport
interface plus ``_force_close(exc)``, which treadle's stream transport has.
"""

from __future__ import annotations

from typing import Any

from asyncio.sslproto import SSLProtocol as _SSLProtocol

TLSProtocol: Any = _SSLProtocol

__all__ = ["TLSProtocol"]
