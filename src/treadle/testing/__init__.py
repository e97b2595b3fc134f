"""treadle.testing: deterministic tests for asyncio code.

Owns: the public testing API - virtual time (``VirtualClock``), waiting
until everything else is blocked (``wait_all_tasks_blocked``), seeded
scheduling (``SeededOrder``, behind ``treadle.new_event_loop(seed=N)``) and
the simulated network (``SimNetwork``, from ``treadle.testing.simnet``,
imported on first use: it is large, and seeded loops import this package).
Never: imports pytest.  The pytest plugin lives in ``treadle.testing.plugin``
and is loaded only by pytest (through the ``pytest11`` entry point), so
treadle's core keeps no test dependency.

    clock = treadle.testing.VirtualClock()          # autojump at once
    loop = treadle.new_event_loop(clock=clock, seed=1234)
"""

from .blocked import wait_all_tasks_blocked
from .clock import VirtualClock
from .order import SeededOrder

__all__ = ["SeededOrder", "SimNetwork", "VirtualClock", "wait_all_tasks_blocked"]


def __getattr__(name: str) -> object:
    if name == "SimNetwork":
        from .simnet import SimNetwork
        return SimNetwork
    raise AttributeError(f"module 'treadle.testing' has no attribute {name!r}")
