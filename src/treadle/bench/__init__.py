"""``treadle bench``: the benchmark suite that compares treadle with asyncio
and uvloop side by side, shipped with treadle so anyone can run it.

Owns: the workloads, the load generator, running each workload on each
loop in fresh, interleaved child processes, and the report.
Never: imported by the runtime (nothing under ``treadle._kernel``, ``_net``
or ``_proc`` may import it), and never a dependency beyond the standard
library: uvloop is compared when it happens to be installed.

Layout: ``cli`` (options, the command), ``_plan`` (loops, interleaved
order), ``_runner`` (child processes), ``_child`` (one run), ``_workloads``
and ``_netloads`` (what is measured), ``_loadgen`` (the client process),
``_http`` (request framing of the HTTP server), ``_measure`` (clocks and
memory), ``_stats`` (medians, ratios) and ``_report`` (tables, JSON).
"""

from .cli import main

__all__ = ["main"]
