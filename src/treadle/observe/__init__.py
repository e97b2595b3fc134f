"""Observability: see what a live treadle program is doing.

* ``_watchdog``: the blocking detector (a thread; reports on the
  ``treadle.blocking`` logger).
* ``_server``: ``treadle ps``/``pstree``/``top`` served from a thread of
  the process over a Unix socket only its user can reach.
* ``_snapshot``: every task's state, stack, wait and links, read safely
  from another thread; ``_report`` turns that into the documents sent.
* ``_tracking``: per-task timing, attached only while wanted.
* ``_client``, ``_render``, ``_top``: the command-line side.
* ``_mixin``: how the loop hooks in (``treadle.EventLoop`` includes it).
* ``_observer``: the process-wide set of loops and the threads' lifetime.

The public API is ``treadle.metrics`` and the ``treadle`` command; the
kernel knows nothing of this package (it leaves a few fields and counters
behind, see ``_kernel/loop.py``, and this package reads them).
"""
