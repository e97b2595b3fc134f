"""Structured concurrency native to treadle's loop: cancel scopes with
level-triggered cancellation, deadlines and shields, and task groups with
``start_soon()``/``start()``.  Built on the kernel's task (``TaskCore._scope``)
and nothing else; see ``scope.py`` for the rules."""

from .scope import (CancelScope, current_effective_deadline, fail_after, fail_at,
                    move_on_after, move_on_at)
from .taskgroup import TaskGroup, TaskStatus

__all__ = ["CancelScope", "TaskGroup", "TaskStatus", "current_effective_deadline",
           "fail_after", "fail_at", "move_on_after", "move_on_at"]
