"""The kernel's contract with the layers above it, as types.

Owns: ``KernelServices``, everything ``_net``, ``_proc`` and the transports
may use of a loop, and ``ScopeHooks``, everything the kernel's tasks call
on a cancel scope (``_scopes``).  Each is written once, here, and checked
by ``mypy --strict``: the transports' ``_loop`` is annotated with
``KernelServices`` (``_net`` adds its own two attributes in
``_net/base.py``'s ``NetLoop``), ``treadle.EventLoop`` is checked to be one
(``_loop.py``), and ``TaskCore._scope`` is a ``ScopeHooks``.  Renaming
anything listed here in ``loop.py`` or ``scope.py`` fails type-checking
instead of silently turning a feature off.
Never: holds code.  These are ``typing.Protocol`` classes; nothing is
checked at run time.

The kernel's side of the contract, in words (``loop.py`` says why each
part is what it is):

* fds: ``_add_reader``/``_add_writer`` register a callback, level-
  triggered and persistent, that runs in the ready queue; ``_remove_*``
  undo it (the public ``add_reader`` etc. are the loop's API for users,
  with asyncio's transport-ownership check on top).
* callbacks: ``call_soon``, ``call_later``, ``create_future``,
  ``call_exception_handler``, as asyncio's.
* batches: the loop runs callbacks in batches (one turn), and
  ``_call_at_batch_end(fn)`` runs *fn* once after the current batch and
  before the loop can block (TLS orders a failed handshake's wake-up after
  its alert with it, through ``_writeflow.WriteRule``).
* ``_debug`` is debug mode (read on slow paths to decide whether to log).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Protocol

if TYPE_CHECKING:
    from .task import TaskCore


class KernelServices(Protocol):
    """What a layer above the kernel may use of the loop it runs on."""

    _debug: bool

    def _add_reader(self, fd: Any, callback: Callable[..., object], *args: Any,
                    context: Any = None) -> Any: ...

    def _remove_reader(self, fd: Any) -> bool: ...

    def _add_writer(self, fd: Any, callback: Callable[..., object], *args: Any,
                    context: Any = None) -> Any: ...

    def _remove_writer(self, fd: Any) -> bool: ...

    def _call_at_batch_end(self, fn: Callable[[], object]) -> None: ...

    def call_soon(self, callback: Callable[..., object], *args: Any,
                  context: Any = None) -> Any: ...

    def call_later(self, delay: Any, callback: Callable[..., object], *args: Any,
                   context: Any = None) -> Any: ...

    def call_exception_handler(self, context: dict[str, Any]) -> None: ...

    def create_future(self) -> Any: ...

    def time(self) -> float: ...

    def is_running(self) -> bool: ...

    def is_closed(self) -> bool: ...

    def get_debug(self) -> bool: ...


class ScopeHooks(Protocol):
    """What a task's kernel core calls on the innermost cancel scope it is
    in (``treadle._scopes.scope.CancelScope``)."""

    def _add_task(self, task: TaskCore) -> None:
        """A task was born inside this scope."""

    def _at_suspension(self, task: TaskCore) -> None:
        """*task* is about to suspend inside this scope: a cancelled scope
        interrupts it here."""

    def _task_done(self, task: TaskCore) -> None:
        """*task* finished inside this scope."""

    def _defer_cancel(self, task: TaskCore, msg: Any) -> bool:
        """``task.cancel(msg)`` was called: True if a shield holds it back
        until the shield ends."""
