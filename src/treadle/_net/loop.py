"""The networking layer of the loop: sockets, transports, servers, TLS, DNS.

Owns: every loop method that deals with sockets.  Built on the kernel's
``_add_reader``/``_add_writer``, ``call_soon`` and ``_call_at_batch_end``;
the kernel never imports this module.
"""

from __future__ import annotations

from .._kernel.loop import KernelLoop


class NetworkMixin(KernelLoop):
    """Adds asyncio's socket, transport, server and DNS methods."""
