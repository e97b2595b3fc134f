"""Readiness backends: the only code that talks to epoll/kqueue/select.

The kernel sees them through the small interface in ``backend.py``.
"""

from .backend import READABLE, WRITABLE, IOBackend, default_backend

__all__ = ["READABLE", "WRITABLE", "IOBackend", "default_backend"]
