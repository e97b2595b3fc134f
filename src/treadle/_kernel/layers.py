"""``Layer``: the base of each layer of ``treadle.EventLoop`` (a mixin that
adds networking, processes, signals or observation to the kernel loop).

At run time it is ``loop.LoopLayers``, the hooks through which a layer
extends the kernel (its docstring says why a layer is not a subclass of
``KernelLoop``).  To the type checker it is ``KernelLoop``: a layer only
ever runs as part of a loop whose kernel is ``KernelLoop``, and its code
uses the kernel's attributes and methods, which ``mypy --strict`` checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loop import KernelLoop as Layer
else:
    from .loop import LoopLayers as Layer

__all__ = ["Layer"]
