"""How a treadle loop takes part in observation.

Owns: ``ObserveMixin``, the layer of ``treadle.EventLoop`` that gives each
loop its ``LoopObservation`` and the ``blocking_threshold`` setting, and
tells the observer when the loop starts and stops running and when it is
closed.
Never: adds work to a loop turn: everything here runs once per
``run_forever`` call or per ``close()``.  Never lets the loop reference its
``LoopObservation``: the watchdog thread changes it at every tick, and code
that walks the objects a loop references (the memory-leak checks of test
suites, which count them twice with nothing run in between) must find the
same objects each time, as on asyncio's loop.  The observation is found
through a weak mapping keyed by the loop instead.
"""

from __future__ import annotations

import weakref
from typing import Any

from .._kernel.layers import Layer
from . import _config
from ._observer import observer
from ._state import LoopObservation

#: loop -> its observation (see the module docstring).
_observations: weakref.WeakKeyDictionary[Any, LoopObservation] = weakref.WeakKeyDictionary()


class ObserveMixin(Layer):
    def _layers_init(self) -> None:
        super()._layers_init()
        observation = LoopObservation(self, _config.threshold())
        observation.track_requested = _config.track_tasks()
        _observations[self] = observation
        observer.loop_created(self)

    @property
    def _observation(self) -> LoopObservation:
        try:
            return _observations[self]
        except KeyError:        # (before __init__ made it)
            raise AttributeError("_observation") from None

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

    def _layers_run_started(self) -> None:
        super()._layers_run_started()
        observer.loop_started(self)

    def _layers_run_ending(self) -> None:
        try:
            observer.loop_stopped(self)
        finally:
            super()._layers_run_ending()

    def _layers_closed(self) -> None:
        super()._layers_closed()
        observer.loop_closed(self)
