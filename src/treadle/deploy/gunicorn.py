"""gunicorn worker classes that run an ASGI app with uvicorn on treadle.

Use: ``gunicorn -k treadle.deploy.gunicorn.UvicornWorker -w 4 app:app``.

Owns: choosing treadle's loop for uvicorn's gunicorn worker.
Never: changes anything else about the worker: the base class is the
``uvicorn-worker`` package's ``UvicornWorker`` (the one uvicorn recommends)
when it is installed, otherwise uvicorn's own ``uvicorn.workers.UvicornWorker``
(deprecated by uvicorn); configuration, signals, graceful shutdown,
``--max-requests`` and logging are theirs.

Why a subclass and not ``CONFIG_KWARGS = {"loop": "treadle:new_event_loop"}``:
uvicorn accepts a loop factory's import path only from 0.36 on; running the
worker's ``_serve()`` in a treadle runner works with every uvicorn version
(the worker's own ``run()`` does just that with the loop uvicorn picks).
"""

from __future__ import annotations

import asyncio
import importlib
import warnings
from typing import Any

from .._loop import new_event_loop


def _base() -> Any:
    try:
        module = importlib.import_module("uvicorn_worker")
    except ImportError:
        with warnings.catch_warnings():
            # "use the uvicorn-worker package instead": that is our first
            # choice; this one still works.
            warnings.simplefilter("ignore", DeprecationWarning)
            module = importlib.import_module("uvicorn.workers")
    return module.UvicornWorker


class UvicornWorker(_base()):  # type: ignore[misc]
    """uvicorn's gunicorn worker, on a treadle loop."""

    #: "none": uvicorn sets up no loop of its own (we run the worker).
    CONFIG_KWARGS: dict[str, Any] = {"loop": "none", "http": "auto"}

    def run(self) -> None:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(self._serve())


class UvicornH11Worker(UvicornWorker):
    """The same with the pure-Python h11 HTTP parser (uvicorn's
    ``UvicornH11Worker``: for PyPy, or without httptools)."""

    CONFIG_KWARGS: dict[str, Any] = {"loop": "none", "http": "h11"}
