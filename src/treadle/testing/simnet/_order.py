"""The ready order of a simulated run: seeded scheduling's rules, with every
pick asked of the run's recorded choices.

Owns: turning ``SeededOrder``'s "which available item next" into a
``Choices.pick`` (so that a schedule is part of the run's record and can be
replayed, explored with PCT or systematically, and shrunk).
Never: changes which orders are allowed; that is ``SeededOrder``'s job
(``treadle/testing/order.py``): no protocol sees its data reordered.
"""

from __future__ import annotations

from ..order import SeededOrder
from ._choices import Choices


class SimOrder(SeededOrder):
    """``SeededOrder`` whose picks are the run's choices.  Pick 0 is the
    canonical order: tasks in the order they were created, then callbacks
    in the order they became ready."""

    __slots__ = ("choices",)

    def __init__(self, choices: Choices) -> None:
        super().__init__(0)
        self.choices = choices

    def __repr__(self) -> str:
        return f"<SimOrder {type(self.choices.source).__name__}>"

    def _pick(self, available: list[int], keys: list[tuple[int, int]]) -> int:
        # PCT ranks tasks by identity: a task item's key is its serial, any
        # other item gets a key of its own (negative: never a serial).
        choices = self.choices
        if not choices.wants_keys:
            return choices.pick(len(available))
        identities = [keys[i][1] if keys[i][0] == 0 else -1 - i for i in available]
        return choices.pick(len(available), identities)
