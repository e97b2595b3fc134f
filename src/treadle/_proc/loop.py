"""The process layer of the loop: subprocesses and pipes.

Owns: ``subprocess_exec``/``subprocess_shell``, child watching and the pipe
transports; signals live in ``signals.py``.  The kernel never imports this.
"""

from __future__ import annotations

from .._kernel.loop import KernelLoop


class ProcessMixin(KernelLoop):
    """Adds asyncio's subprocess and pipe methods."""
