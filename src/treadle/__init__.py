"""treadle: an asyncio event loop and runtime written in Python.

    import treadle
    treadle.run(main())
    # or: asyncio.run(main(), loop_factory=treadle.new_event_loop)

(This module holds no assertions, and ``treadle run -m pytest`` imports it
before pytest starts, so pytest is told not to expect to rewrite it:
PYTEST_DONT_REWRITE.  treadle is a pytest plugin, whose package pytest
otherwise warns it found already imported.)
"""

from . import _purity

if _purity.requested():
    _purity.prefer_source()

from ._kernel import (Handle, Task, TimerHandle, c_task_factory, eager_task_factory,
                      task_factory)
from ._loop import EventLoop, new_event_loop
from ._runner import run
from ._scopes import (CancelScope, TaskGroup, TaskStatus, current_effective_deadline,
                      fail_after, fail_at, move_on_after, move_on_at)
from ._version import __version__


def _is_compiled() -> bool:
    from ._kernel import loop
    return not loop.__file__.endswith(".py")


#: True when the runtime runs as compiled extension modules.
__compiled__: bool = _is_compiled()


def __getattr__(name: str) -> object:
    # treadle.EventLoopPolicy is built on first use (see _loop.py).
    if name == "EventLoopPolicy":
        from . import _loop
        return _loop.EventLoopPolicy
    raise AttributeError(f"module 'treadle' has no attribute {name!r}")

__all__ = [
    "CancelScope", "EventLoop", "EventLoopPolicy", "Handle", "Task", "TaskGroup",
    "TaskStatus", "TimerHandle", "__compiled__", "__version__", "c_task_factory",
    "current_effective_deadline", "eager_task_factory", "fail_after", "fail_at",
    "move_on_after", "move_on_at", "new_event_loop", "run", "task_factory",
]
