"""The kernel: ready queue, timers, clock, tasks and the run loop.

Knows nothing about sockets, transports or processes; see ``loop.py`` for
the shape of one turn and ``seams.py`` for what can be plugged in.
"""

from .handles import Handle, TimerHandle
from .loop import KernelLoop
from .taskclass import Task, c_task_factory, eager_task_factory, task_factory

__all__ = ["Handle", "KernelLoop", "Task", "TimerHandle", "c_task_factory",
           "eager_task_factory", "task_factory"]
