"""treadle.testing: deterministic tests for asyncio code.

Owns: the public testing API - virtual time (``VirtualClock``), waiting
until everything else is blocked (``wait_all_tasks_blocked``) and seeded
scheduling (``SeededOrder``, behind ``treadle.new_event_loop(seed=N)``).
Never: imports pytest.  The pytest plugin lives in ``treadle.testing.plugin``
and is loaded only by pytest (through the ``pytest11`` entry point), so
treadle's core keeps no test dependency.

    clock = treadle.testing.VirtualClock()          # autojump at once
    loop = treadle.new_event_loop(clock=clock, seed=1234)
"""

from .blocked import wait_all_tasks_blocked
from .clock import VirtualClock
from .order import SeededOrder

__all__ = ["SeededOrder", "VirtualClock", "wait_all_tasks_blocked"]
