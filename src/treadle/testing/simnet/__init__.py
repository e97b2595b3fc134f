"""``treadle.testing.simnet``: a simulated network for deterministic
multi-host tests of unchanged networked asyncio code.

Owns: the public names of the simulation.  The pieces, one concern each:

    _choices.py     every decision of a run as a recorded list (seed, replay,
                    PCT, systematic search all answer through it)
    _order.py       the ready order: seeded scheduling's rules, picks recorded
    _link.py        links: latency, jitter, bandwidth, loss/dup/reorder, partition,
                    hold (pure)
    _tcp.py         one direction of a TCP connection (pure)
    _dns.py         the simulation's DNS and getaddrinfo/getnameinfo (pure)
    _faults.py      fault schedules as data, printed and parsed (pure)
    _events.py      the event log and its comparison (pure)
    _stack.py       hosts' network stacks: SimSocket, ports, handshakes, moving
                    segments and datagrams with the loop's timers
    _transports.py  asyncio transports over simulated sockets
    _host.py        hosts, incarnations (crash/restart), the simulated disk
    _loop.py        SimEventLoop: the seam routing a host's loop calls here
    _nondet.py      time/datetime/random/uuid follow the run; executors
    _network.py     SimNetwork: hosts, DNS, links, faults, run()
    _check.py       the determinism check
    _explore.py     exploration (random, PCT, systematic) and shrinking

Never: imported by treadle's runtime.  A program's loop never pays for the
simulation: only ``SimEventLoop`` routes anything.
"""

from ._check import NondeterminismError, check_determinism
from ._choices import format_deviations, parse_deviations
from ._explore import Exploration, explore, replay, shrink
from ._faults import Fault, FaultSchedule
from ._host import Disk, Host, current_host
from ._loop import SimEventLoop
from ._network import SimNetwork, current_network
from ._stack import SimSocket, SimulationError

__all__ = [
    "Disk", "Exploration", "Fault", "FaultSchedule", "Host", "NondeterminismError",
    "SimEventLoop", "SimNetwork", "SimSocket", "SimulationError", "check_determinism",
    "current_host", "current_network", "explore", "format_deviations",
    "parse_deviations", "replay", "shrink",
]
