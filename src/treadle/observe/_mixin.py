"""How a treadle loop takes part in observation.

Owns: ``ObserveMixin``, the layer of ``treadle.EventLoop`` that gives each
loop its ``LoopObservation`` and the ``blocking_threshold`` setting, and
tells the observer when the loop starts and stops running and when it is
closed.
Never: adds work to a loop turn: everything here runs once per
``run_forever`` call or per ``close()``.
"""

from __future__ import annotations

from typing import Any

from .._kernel.loop import KernelLoop
from . import _config
from ._observer import observer
from ._state import LoopObservation


class ObserveMixin(KernelLoop):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._observation = LoopObservation(self, _config.threshold())
        self._observation.track_requested = _config.track_tasks()
        observer.loop_created(self)

    @property
    def blocking_threshold(self) -> float | None:
        """Seconds a callback or task step may hold the loop before the
        blocking detector reports it (None: the detector is off for this
        loop).  Default: ``TREADLE_BLOCKING_THRESHOLD`` or 0.1."""
        return self._observation.threshold

    @blocking_threshold.setter
    def blocking_threshold(self, value: float | None) -> None:
        self._observation.threshold = value
        observer.wake()

    def _run_forever_setup(self) -> None:
        super()._run_forever_setup()
        observer.loop_started(self)

    def _run_forever_cleanup(self) -> None:
        try:
            observer.loop_stopped(self)
        finally:
            super()._run_forever_cleanup()

    def close(self) -> None:
        super().close()
        observer.loop_closed(self)
