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

Now treadle's own engine (``tls.py``).  To compare with asyncio's, point
this at ``asyncio.sslproto.SSLProtocol`` instead: it drives treadle's stream
transport just as well (that transport has the ``_force_close(exc)`` it
calls).
"""

from __future__ import annotations

from typing import Any

from .tls import TLSProtocol as _TLSProtocol

TLSProtocol: Any = _TLSProtocol

__all__ = ["TLSProtocol"]
