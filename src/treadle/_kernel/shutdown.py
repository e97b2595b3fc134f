"""The loop's two coroutine methods, ``shutdown_asyncgens`` and
``shutdown_default_executor``, kept out of the compiled kernel.

Why a module of their own: a coroutine compiled by mypyc passes an exception
on to what it awaits with the three-argument ``throw(type, value, tb)``,
which Python 3.12 deprecates, so cancelling a compiled ``shutdown_*`` warned
where asyncio's does not.  Neither is on a hot path; interpreted, they await
exactly as asyncio's do.
"""

from __future__ import annotations

import asyncio
import threading
import warnings
from typing import Any

from .layers import Layer


class ShutdownMixin(Layer):
    """``shutdown_asyncgens()`` and ``shutdown_default_executor()``."""

    async def shutdown_asyncgens(self) -> None:
        """Close every async generator still alive on this loop."""
        self._asyncgens_shutdown_called = True
        if not len(self._asyncgens):
            return
        closing = list(self._asyncgens)
        self._asyncgens.clear()
        results = await asyncio.gather(*[ag.aclose() for ag in closing],
                                       return_exceptions=True)
        for result, agen in zip(results, closing):
            if isinstance(result, Exception):
                self.call_exception_handler({
                    "message": f"an error occurred during closing of "
                               f"asynchronous generator {agen!r}",
                    "exception": result,
                    "asyncgen": agen,
                })

    async def shutdown_default_executor(self, timeout: Any = None) -> None:
        """Shut the default executor down, waiting up to *timeout* seconds
        for its threads (None: as long as they take)."""
        self._executor_shutdown_called = True
        if self._default_executor is None:
            return
        future = self.create_future()
        thread = threading.Thread(target=self._do_shutdown, args=(future,))
        thread.start()
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            warnings.warn("The executor did not finishing joining "
                          f"its threads within {timeout} seconds.",
                          RuntimeWarning, stacklevel=2)
            self._default_executor.shutdown(wait=False)
        else:
            thread.join()
